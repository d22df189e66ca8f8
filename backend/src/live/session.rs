//! The state of one live session, without I/O: the actor feeds it and asks it
//! questions; tests drive it directly.

use uuid::Uuid;
use watch_sync::{TimerStep, TimerView};

use crate::store::sessions::RecipeCopy;

/// What a client sees of a live session right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSnapshot {
    pub viewer_count: u32,
    pub timer: TimerView,
}

/// One live session's in-memory state, rebuilt from the database whenever its
/// actor (re)starts.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub id: Uuid,
    pub host_id: Uuid,
    steps: Vec<TimerStep>,
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

impl LiveSession {
    pub fn new(id: Uuid, host_id: Uuid, recipe: &RecipeCopy) -> Self {
        Self {
            id,
            host_id,
            steps: timer_steps(recipe),
        }
    }

    /// The snapshot at server time `now_ms`. The timer stays idle until the
    /// recipe-timer actor drives it.
    pub fn snapshot(&self, now_ms: i64) -> LiveSnapshot {
        LiveSnapshot {
            // Presence lives in the registry (it survives actor restarts),
            // which fills this in.
            viewer_count: 0,
            timer: TimerView::idle(&self.steps, now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::recipes::StoredStep;

    #[test]
    fn a_new_live_session_has_no_viewers_and_an_idle_timer() {
        let recipe = RecipeCopy {
            id: None,
            title: "Soup".into(),
            description: None,
            servings: None,
            steps: vec![StoredStep {
                text: "Chop".into(),
                duration_s: Some(60),
                label: Some("chop".into()),
            }],
        };
        let live = LiveSession::new(Uuid::nil(), Uuid::nil(), &recipe);
        let snap = live.snapshot(42);
        assert_eq!(snap.viewer_count, 0);
        assert_eq!(snap.timer.step_count, 1);
        assert_eq!(snap.timer.remaining_ms, Some(60_000));
        assert_eq!(snap.timer.server_time_ms, 42);
    }
}
