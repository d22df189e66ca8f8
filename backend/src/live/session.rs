//! The state of one live session, without I/O: the actor feeds it and asks it
//! questions; tests drive it directly.

use watch_sync::{TimerStep, TimerView};

use crate::store::sessions::RecipeCopy;

/// What a client sees of a live session right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSnapshot {
    pub viewer_count: u32,
    pub timer: TimerView,
}

/// The timer's view of a recipe's steps.
pub fn timer_steps(recipe: &RecipeCopy) -> Vec<TimerStep> {
    recipe
        .steps
        .iter()
        .map(|s| TimerStep {
            text: s.text.clone(),
            label: s.label.clone(),
            duration_s: s.duration_s,
        })
        .collect()
}
