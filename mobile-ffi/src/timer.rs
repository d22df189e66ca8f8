//! The recipe timer as it crosses the boundary: from `/ws` timer events, join
//! snapshots and watch frames alike. Conversions take every field by name,
//! as in `types.rs`.

/// Where a recipe timer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
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

impl From<watch_sync::TimerState> for TimerState {
    fn from(state: watch_sync::TimerState) -> Self {
        match state {
            watch_sync::TimerState::Idle => TimerState::Idle,
            watch_sync::TimerState::Running => TimerState::Running,
            watch_sync::TimerState::Paused => TimerState::Paused,
            watch_sync::TimerState::Finished => TimerState::Finished,
        }
    }
}

/// One recipe step, as the timer shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecipeStep {
    /// What to do (on a watch, shortened to fit its frames: prefer `label`).
    pub text: String,
    /// A short name for small screens, if the recipe gives one.
    pub label: Option<String>,
    /// The step's countdown in seconds; `None` for a manual step that ends
    /// when the host moves on.
    pub duration_s: Option<u32>,
}

impl From<watch_sync::TimerStep> for RecipeStep {
    fn from(step: watch_sync::TimerStep) -> Self {
        let watch_sync::TimerStep {
            text,
            label,
            duration_s,
        } = step;
        Self {
            text,
            label,
            duration_s,
        }
    }
}

impl From<watch_sync::WatchStep> for RecipeStep {
    fn from(step: watch_sync::WatchStep) -> Self {
        let watch_sync::WatchStep {
            text,
            label,
            duration_s,
        } = step;
        Self {
            text,
            label,
            duration_s,
        }
    }
}

/// A session's recipe timer: a whole snapshot, renderable without any
/// earlier one. Render a running countdown from `deadline_ms` (server time),
/// not by counting `remaining_ms` down.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecipeTimer {
    /// Where the timer is in its life.
    pub state: TimerState,
    /// The current step, counted from 0.
    pub step_index: u32,
    /// How many steps the recipe has.
    pub step_count: u32,
    /// The current step; `None` only for a recipe without steps.
    pub step: Option<RecipeStep>,
    /// When the current step's countdown reaches zero, server time (ms since
    /// the Unix epoch); `None` unless running.
    pub deadline_ms: Option<i64>,
    /// Milliseconds left at `server_time_ms`; `None` on a manual step.
    pub remaining_ms: Option<i64>,
    /// The server's clock when this snapshot was taken (ms since the Unix
    /// epoch).
    pub server_time_ms: i64,
}

impl From<watch_sync::TimerView> for RecipeTimer {
    fn from(view: watch_sync::TimerView) -> Self {
        let watch_sync::TimerView {
            state,
            step_index,
            step_count,
            step,
            deadline_ms,
            remaining_ms,
            server_time_ms,
        } = view;
        Self {
            state: state.into(),
            step_index,
            step_count,
            step: step.map(Into::into),
            deadline_ms,
            remaining_ms,
            server_time_ms,
        }
    }
}

impl RecipeTimer {
    /// A watch frame's timer, stamped with the frame's `server_time_ms`.
    pub(crate) fn from_watch(timer: watch_sync::WatchTimer, server_time_ms: i64) -> Self {
        let watch_sync::WatchTimer {
            state,
            step_index,
            step_count,
            step,
            deadline_ms,
            remaining_ms,
        } = timer;
        Self {
            state: state.into(),
            step_index,
            step_count,
            step: step.map(Into::into),
            deadline_ms,
            remaining_ms,
            server_time_ms,
        }
    }
}
