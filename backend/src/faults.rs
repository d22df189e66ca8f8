//! Ways for tests to break a supervised actor (feature `test-hooks`): the
//! live session's actors and the media room all answer [`InjectFault`].

use actix::prelude::*;
use uuid::Uuid;

/// A way for tests to break an actor.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Panic inside a handler: the actor's task dies without stopping, which
    /// `actix::Supervisor` does not see; the registry must.
    Panic,
    /// Fail with an unrecoverable error: the actor stops and its supervisor
    /// restarts it.
    Stop,
    /// Fall behind for this long without failing: the actor handles no
    /// message meanwhile; the media room's lanes instead hold their packets
    /// (a relay that cannot keep up), and the room goes on answering.
    Stall(std::time::Duration),
}

/// Breaks the actor (tests only).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectFault(pub Fault);

impl Fault {
    /// Breaks the actor whose context this is (`what` and `id` name it in
    /// the panic or the log).
    #[allow(clippy::panic)] // the point of this hook
    pub fn apply<A>(self, what: &str, id: Uuid, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        match self {
            Fault::Panic => panic!("injected fault in {what} {id}"),
            Fault::Stop => {
                tracing::error!(%id, what, "injected unrecoverable error; stopping");
                ctx.stop();
            }
            Fault::Stall(d) => {
                tracing::warn!(%id, what, ?d, "injected stall");
                ctx.wait(actix::fut::wrap_future(tokio::time::sleep(d)));
            }
        }
    }
}
