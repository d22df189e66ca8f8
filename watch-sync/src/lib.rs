//! Simmer's recipe timer as clients see it, and (as it grows) the timer state
//! machine and the smartwatch feed.
//!
//! The timer keeps absolute deadlines in server time (`deadline_ms`), never a
//! decremented "seconds left": every client, whatever its clock or its link,
//! can render the same countdown from one frame. This crate depends on nothing
//! server-side, so watch and phone clients can use its types directly.

mod timer;

pub use timer::{TimerState, TimerStep, TimerView};
