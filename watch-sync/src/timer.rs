use serde::{Deserialize, Serialize};

/// Where a session's recipe timer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimerState {
    /// Not started yet (or reset).
    Idle,
    /// Counting down towards `deadline_ms`.
    Running,
    /// Stopped with `remaining_ms` left.
    Paused,
    /// The last step is done.
    Finished,
}

/// One recipe step, as the timer shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimerStep {
    /// What to do.
    pub text: String,
    /// A short name for small screens (a watch face), if the recipe gives one.
    pub label: Option<String>,
    /// The countdown of this step in seconds; `null` for a manual step that
    /// ends when the host moves on.
    pub duration_s: Option<u32>,
}

/// The timer object of the client contract: a full snapshot that a client can
/// render without any earlier frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimerView {
    /// Where the timer is in its life.
    pub state: TimerState,
    /// The current step, counted from 0.
    pub step_index: u32,
    /// How many steps the recipe has.
    pub step_count: u32,
    /// The current step; `null` only for a recipe without steps.
    pub step: Option<TimerStep>,
    /// When the current step's countdown reaches zero, in server time
    /// (milliseconds since the Unix epoch); `null` unless running.
    pub deadline_ms: Option<i64>,
    /// Milliseconds left on the current step at `server_time_ms`; `null` for a
    /// manual step.
    pub remaining_ms: Option<i64>,
    /// The server's clock when this snapshot was taken (milliseconds since the
    /// Unix epoch), so a client can correct for its own clock's offset.
    pub server_time_ms: i64,
}

impl TimerView {
    /// The timer of a recipe that has not been started: on the first step, with
    /// that step's whole duration left.
    pub fn idle(steps: &[TimerStep], server_time_ms: i64) -> Self {
        let step = steps.first().cloned();
        let remaining_ms = step
            .as_ref()
            .and_then(|s| s.duration_s)
            .map(|d| i64::from(d) * 1000);
        Self {
            state: TimerState::Idle,
            step_index: 0,
            step_count: u32::try_from(steps.len()).unwrap_or(u32::MAX),
            step,
            deadline_ms: None,
            remaining_ms,
            server_time_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(text: &str, duration_s: Option<u32>) -> TimerStep {
        TimerStep {
            text: text.into(),
            label: None,
            duration_s,
        }
    }

    #[test]
    fn idle_timer_shows_the_first_step_in_full() {
        let view = TimerView::idle(&[step("boil", Some(90)), step("serve", None)], 1_000);
        assert_eq!(view.state, TimerState::Idle);
        assert_eq!(view.step_index, 0);
        assert_eq!(view.step_count, 2);
        assert_eq!(view.remaining_ms, Some(90_000));
        assert_eq!(view.deadline_ms, None);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["state"], "idle");
        assert_eq!(json["step"]["text"], "boil");
        assert_eq!(json["server_time_ms"], 1_000);
    }

    #[test]
    fn manual_first_step_has_no_remaining_time() {
        let view = TimerView::idle(&[step("taste", None)], 5);
        assert_eq!(view.remaining_ms, None);
    }
}
