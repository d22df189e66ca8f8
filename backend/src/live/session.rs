//! The state of one live session, without I/O: the actor feeds it and asks it
//! questions; tests drive it directly.

use simmer_entity::session;
use watch_sync::{TimerMachine, TimerState, TimerStep, TimerView};

use crate::store::sessions::{self, RecipeCopy, SessionState};

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

/// The timer of a session that is not running on this node, from the
/// database: idle before the start, as it was left after the end (paused:
/// nothing counts down in a session that is over).
pub fn timer_at_rest(
    model: &session::Model,
    state: SessionState,
    recipe: &RecipeCopy,
    now_ms: i64,
) -> TimerView {
    let steps = timer_steps(recipe);
    let record = match state {
        SessionState::Scheduled => None,
        _ => sessions::timer_record(model),
    };
    let Some(record) = record else {
        return TimerView::idle(&steps, now_ms);
    };
    let mut view = TimerMachine::restore(steps, model.auto_advance, record).view(now_ms);
    if let Some(deadline) = view.deadline_ms.take() {
        view.remaining_ms = Some((deadline - now_ms).max(0));
        view.state = TimerState::Paused;
    }
    view
}
