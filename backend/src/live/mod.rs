//! The live side: one supervised set of actors per live session, behind one
//! handle.
//!
//! ```text
//! Sessions (one per node)           the handle: every command to a session
//! ├── LocalSessions                 supervision: session id -> its actors
//! │   ├── CookingSession            lifecycle
//! │   ├── ChatChannel               chat: sequence, group commit, fan-out
//! │   │   └── ChatWriter            its writes: on SQLite all sessions' grouped, own connection
//! │   ├── RecipeTimer               the recipe timer: deadlines, alerts
//! │   └── MediaRoom                 the video relay (`crate::media`)
//! ├── Presence                      who is connected to which session
//! └── frames                        what the live side publishes itself
//! ```
//! actix restarts a stopped actor; `LocalSessions` re-creates one that
//! panicked, each on the session's arbiter. Callers send [`Call`]s through
//! [`Sessions::ask`] and never hold an actor's address.

mod actor;
mod calls;
pub mod chat;
pub mod chat_actor;
pub mod chat_writer;
mod frames;
mod ownership;
mod presence;
pub mod rate;
mod session;
mod sessions;
mod supervisor;
pub mod timer_actor;

#[cfg(feature = "test-hooks")]
pub use crate::faults::{Fault, InjectFault};
pub use actor::CookingSession;
pub use calls::{Call, Patience};
pub use session::{timer_at_rest, timer_steps, LiveSnapshot};
pub use sessions::{SessionError, Sessions, PRESENCE_INTERVAL};
