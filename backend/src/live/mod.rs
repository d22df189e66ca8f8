//! The live side: one supervised actor per live session, under a node-wide
//! registry.
//!
//! ```text
//! SessionRegistry (one per node)    session id -> the session's actors
//! ├── CookingSession (supervised)   lifecycle
//! ├── ChatChannel (supervised)      chat: sequence, group commit, fan-out
//! ├── RecipeTimer (supervised)      the recipe timer: deadlines, alerts
//! └── MediaRoom (supervised)        the video relay (`crate::media`)
//! ```
//! The registry supervises the four together (actix restarts a stopped
//! actor; the registry re-creates one that panicked), each on the session's
//! arbiter. Who is connected to each session is counted in `presence`.

mod actor;
pub mod bus;
pub mod chat;
pub mod chat_actor;
mod presence;
pub mod rate;
mod registry;
mod session;
pub mod timer_actor;

pub use actor::CookingSession;
#[cfg(feature = "test-hooks")]
pub use actor::{Fault, InjectFault};
pub use registry::{SessionError, SessionRegistry, PRESENCE_INTERVAL};
pub use session::{timer_at_rest, timer_steps, LiveSnapshot};
