//! What a caller can ask a live session, and how long it waits: every command
//! to a session's actors is a [`Call`], sent through [`super::Sessions::ask`]
//! (the one way in, wherever the session runs).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix::MailboxError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::chat_actor::{DeleteChat, GetHistory, MuteUser, PostChat};
use super::supervisor::Actors;
use super::timer_actor::{ControlTimer, GetTimer, GetWatchSnapshot};
use crate::media::room::{EndGuests, EndResource, GetMediaStats, Publish, Subscribe};

/// How long a caller waits for a session's answer: the one timeout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// A read of state the actor holds.
    Read,
    /// A change answered once it is durable (a database write in between).
    Write,
    /// A WebRTC offer answered (ICE gathering in between).
    Signal,
}

impl Patience {
    pub const fn limit(self) -> Duration {
        match self {
            Patience::Read => Duration::from_secs(2),
            Patience::Write => Duration::from_secs(10),
            Patience::Signal => Duration::from_secs(15),
        }
    }
}

/// The answer of an actor, or why its mailbox gave none.
pub type Answer<T> = Pin<Box<dyn Future<Output = Result<T, MailboxError>> + Send>>;

/// A command to a live session, handled by one of its actors. Each travels
/// as a [`Command`] to the node that runs the session, when that is not this
/// one, and its answer comes back as JSON.
pub trait Call: Clone + Send + 'static {
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// How long the caller waits.
    const PATIENCE: Patience;
    /// Sends it to the actor of `actors` that handles it.
    fn send_to(self, actors: &Actors) -> Answer<Self::Output>;
    /// As a command for another node.
    fn into_command(self) -> Command;
}

/// `Message => the actor that handles it, how long to wait`: implements
/// [`Call`] for each, and [`Command`] with a variant for each.
macro_rules! calls {
    ($($msg:ident => $actor:ident, $patience:ident;)*) => {
        /// Any [`Call`], as it travels between nodes.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub enum Command {
            $($msg($msg),)*
        }

        $(
            impl Call for $msg {
                type Output = <$msg as actix::Message>::Result;
                const PATIENCE: Patience = Patience::$patience;
                fn send_to(self, actors: &Actors) -> Answer<Self::Output> {
                    Box::pin(actors.$actor.send(self))
                }
                fn into_command(self) -> Command {
                    Command::$msg(self)
                }
            }
        )*

        impl Command {
            /// How long its caller waits.
            pub fn patience(&self) -> Patience {
                match self {
                    $(Command::$msg(_) => <$msg as Call>::PATIENCE,)*
                }
            }

            /// Runs it on the actors of a session of this node; the answer
            /// as JSON.
            pub(super) async fn run_here(
                self,
                sessions: &super::Sessions,
                id: uuid::Uuid,
            ) -> Result<serde_json::Value, super::SessionError> {
                let output = match self {
                    $(Command::$msg(call) => serde_json::to_value(sessions.ask_here(id, call).await?),)*
                };
                output.map_err(|_| super::SessionError::Unavailable)
            }
        }
    };
}

calls! {
    PostChat => chat, Write;
    GetHistory => chat, Read;
    DeleteChat => chat, Write;
    MuteUser => chat, Write;
    GetTimer => timer, Read;
    GetWatchSnapshot => timer, Read;
    ControlTimer => timer, Write;
    Publish => media, Signal;
    Subscribe => media, Signal;
    EndResource => media, Write;
    GetMediaStats => media, Read;
    EndGuests => media, Write;
}
