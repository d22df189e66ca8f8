//! The live side: one supervised actor per live session, under a node-wide
//! registry.
//!
//! ```text
//! SessionRegistry (one per node)    session id -> Addr<CookingSession>
//! └── CookingSession (supervised)   lifecycle, roles, presence, timer view
//! ```
//! Chat, the recipe timer and the media room join as children of
//! `CookingSession` in later issues.

mod actor;
pub mod bus;
pub mod chat;
pub mod chat_actor;
pub mod rate;
mod registry;
mod session;

pub use actor::{CookingSession, GetSnapshot};
#[cfg(feature = "test-hooks")]
pub use actor::{Fault, InjectFault};
pub use registry::{SessionError, SessionRegistry, PRESENCE_INTERVAL};
pub use session::{timer_steps, LiveSession, LiveSnapshot};
