//! Simmer's recipe timer and its smartwatch feed, without I/O.
//!
//! The timer keeps absolute deadlines in server time (`deadline_ms`), never a
//! decremented "seconds left": every client, whatever its clock or its link,
//! can render the same countdown from one frame. This crate depends on nothing
//! server-side, so watch and phone clients can use its types directly.

mod clock;
mod feed;
mod machine;
mod timer;

pub use clock::{ClockSample, ClockSync, WatchDisplay};
pub use feed::{
    json_schema, next_tick, WatchClientFrame, WatchFrame, WatchStep, WatchTimer, MAX_FRAME_BYTES,
};
pub use machine::{
    RefusalCode, TimerAction, TimerActionName, TimerControl, TimerEvent, TimerMachine, TimerRecord,
    TimerRefusal, MAX_ADD_TIME_S,
};
pub use timer::{TimerState, TimerStep, TimerView};
