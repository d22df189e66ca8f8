//! Simmer's tables as sea-orm entities. Entities only: queries and rules live
//! in `backend`'s store and domain modules.

pub mod chat_message;
pub mod chat_mute;
pub mod recipe;
pub mod refresh_token;
pub mod session;
pub mod user;
pub mod watch_device;
pub mod watch_pairing;
