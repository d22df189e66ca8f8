//! The recipe timer's state machine: pure and deterministic. The caller passes
//! the server clock (`now_ms`) into every call; nothing here reads a clock or
//! sleeps. A running countdown is an absolute deadline, never a decremented
//! counter, so the timer shows the same remaining time however often (or
//! rarely) it is asked, and survives a restart by storing four numbers.

use serde::{Deserialize, Serialize};

use crate::timer::{TimerState, TimerStep, TimerView};

/// The longest time one `add_time` may add or remove, in seconds.
pub const MAX_ADD_TIME_S: i64 = 24 * 3600;

/// What the host asks the timer to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerAction {
    /// Start the current step (from idle).
    Start,
    /// Stop the countdown, keeping what is left.
    Pause,
    /// Carry on after a pause.
    Resume,
    /// Move to the next step; after the last one the timer is finished.
    Next,
    /// Move back one step.
    Previous,
    /// Move to a step (counted from 0).
    Goto { step: u32 },
    /// Add (or with a negative number, remove) seconds on the current step.
    AddTime { seconds: i64 },
    /// Back to the first step, idle.
    Reset,
}

/// The names of the timer's actions on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimerActionName {
    Start,
    Pause,
    Resume,
    Next,
    Previous,
    Goto,
    AddTime,
    Reset,
}

/// A host's timer action as sent over REST (`POST /sessions/{id}/timer`) and
/// the WebSocket (`timer.control`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimerControl {
    /// What to do.
    pub action: TimerActionName,
    /// For `goto`: the step to go to, counted from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// For `add_time`: seconds to add (negative to remove), non-zero, at most
    /// a day either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
}

impl TimerControl {
    /// The action, or what is missing for it.
    pub fn action(&self) -> Result<TimerAction, String> {
        Ok(match self.action {
            TimerActionName::Start => TimerAction::Start,
            TimerActionName::Pause => TimerAction::Pause,
            TimerActionName::Resume => TimerAction::Resume,
            TimerActionName::Next => TimerAction::Next,
            TimerActionName::Previous => TimerAction::Previous,
            TimerActionName::Reset => TimerAction::Reset,
            TimerActionName::Goto => TimerAction::Goto {
                step: self.step.ok_or("goto needs `step`")?,
            },
            TimerActionName::AddTime => TimerAction::AddTime {
                seconds: self.seconds.ok_or("add_time needs `seconds`")?,
            },
        })
    }
}

impl TimerAction {
    /// Checks what the action carries, whatever the timer's state:
    /// `add_time` needs non-zero seconds within ±[`MAX_ADD_TIME_S`]. The
    /// session handle checks before routing; [`TimerMachine::apply`]
    /// checks again.
    pub fn check(&self) -> Result<(), TimerRefusal> {
        match *self {
            TimerAction::AddTime { seconds }
                if seconds == 0 || seconds.unsigned_abs() > MAX_ADD_TIME_S.unsigned_abs() =>
            {
                Err(TimerRefusal::new(
                    RefusalCode::TimerBadSeconds,
                    format!("seconds must be non-zero and within ±{MAX_ADD_TIME_S}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The name of the action on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            TimerAction::Start => "start",
            TimerAction::Pause => "pause",
            TimerAction::Resume => "resume",
            TimerAction::Next => "next",
            TimerAction::Previous => "previous",
            TimerAction::Goto { .. } => "goto",
            TimerAction::AddTime { .. } => "add_time",
            TimerAction::Reset => "reset",
        }
    }
}

/// Why an action does not apply, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// `start` needs an idle timer.
    TimerNotIdle,
    /// `pause` needs a running timer.
    TimerNotRunning,
    /// `resume` needs a paused timer.
    TimerNotPaused,
    /// The timer is finished: reset it or go to a step.
    TimerFinished,
    /// `previous` on the first step.
    TimerFirstStep,
    /// `goto` a step the recipe does not have.
    TimerNoSuchStep,
    /// `add_time` on a step without a countdown.
    TimerManualStep,
    /// The recipe has no steps.
    TimerNoSteps,
    /// `add_time` with zero or too many seconds.
    TimerBadSeconds,
}

impl RefusalCode {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::TimerNotIdle => "timer_not_idle",
            RefusalCode::TimerNotRunning => "timer_not_running",
            RefusalCode::TimerNotPaused => "timer_not_paused",
            RefusalCode::TimerFinished => "timer_finished",
            RefusalCode::TimerFirstStep => "timer_first_step",
            RefusalCode::TimerNoSuchStep => "timer_no_such_step",
            RefusalCode::TimerManualStep => "timer_manual_step",
            RefusalCode::TimerNoSteps => "timer_no_steps",
            RefusalCode::TimerBadSeconds => "timer_bad_seconds",
        }
    }
}

/// Why an action does not apply to the timer as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRefusal {
    pub code: RefusalCode,
    /// What a person reads.
    pub message: String,
}

impl TimerRefusal {
    fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for TimerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for TimerRefusal {}

/// Something that happened to the timer, for the caller to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerEvent {
    /// The timer changed; announce the new view.
    Changed,
    /// The countdown of `step_index` reached zero (once per countdown).
    Alert {
        step_index: u32,
        /// When it reached zero (the deadline), server time.
        due_ms: i64,
        /// Counts every alert of this timer, so a watch can tell a new one
        /// from one it has already buzzed for.
        alert_seq: u64,
    },
}

/// What is stored to bring a timer back after a restart: the steps come from
/// the recipe, everything else is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRecord {
    pub state: TimerState,
    pub step_index: u32,
    /// Set while running a timed step.
    pub deadline_ms: Option<i64>,
    /// Set while idle or paused on a timed step.
    pub remaining_ms: Option<i64>,
    /// The current countdown has already alerted.
    pub alerted: bool,
    /// How many alerts this timer has raised.
    pub alert_seq: u64,
    /// Bumped on every change.
    pub version: u64,
}

/// One session's recipe timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerMachine {
    steps: Vec<TimerStep>,
    auto_advance: bool,
    record: TimerRecord,
}

impl TimerMachine {
    /// A timer on the first step, idle.
    pub fn new(steps: Vec<TimerStep>, auto_advance: bool) -> Self {
        let remaining_ms = steps.first().and_then(step_ms);
        Self {
            steps,
            auto_advance,
            record: TimerRecord {
                state: TimerState::Idle,
                step_index: 0,
                deadline_ms: None,
                remaining_ms,
                alerted: false,
                alert_seq: 0,
                version: 0,
            },
        }
    }

    /// A timer brought back from its record. A record that does not fit the
    /// steps (a step index out of range, fields of another state) is repaired
    /// to the nearest consistent timer rather than refused.
    pub fn restore(steps: Vec<TimerStep>, auto_advance: bool, record: TimerRecord) -> Self {
        let mut timer = Self::new(steps, auto_advance);
        if timer.steps.is_empty() {
            return timer;
        }
        let last = timer.last_index();
        let step_index = record.step_index.min(last);
        let timed = timer.steps.get(step_index as usize).and_then(step_ms);
        let (deadline_ms, remaining_ms) = match (record.state, timed) {
            (_, None) => (None, None),
            (TimerState::Running, Some(_)) => (record.deadline_ms, None),
            (TimerState::Finished, Some(_)) => (None, Some(0)),
            (_, Some(full)) => (None, Some(record.remaining_ms.unwrap_or(full).max(0))),
        };
        // A running timed step without a deadline cannot be trusted: pause it
        // with its full duration.
        let (state, deadline_ms, remaining_ms) =
            if record.state == TimerState::Running && timed.is_some() && deadline_ms.is_none() {
                (TimerState::Paused, None, timed)
            } else {
                (record.state, deadline_ms, remaining_ms)
            };
        let step_index = if state == TimerState::Finished {
            last
        } else {
            step_index
        };
        timer.record = TimerRecord {
            state,
            step_index,
            deadline_ms,
            remaining_ms,
            alerted: record.alerted,
            alert_seq: record.alert_seq,
            version: record.version,
        };
        timer
    }

    /// What to store.
    pub fn record(&self) -> &TimerRecord {
        &self.record
    }

    pub fn state(&self) -> TimerState {
        self.record.state
    }

    pub fn step_index(&self) -> u32 {
        self.record.step_index
    }

    pub fn steps(&self) -> &[TimerStep] {
        &self.steps
    }

    pub fn auto_advance(&self) -> bool {
        self.auto_advance
    }

    /// Bumped on every change.
    pub fn version(&self) -> u64 {
        self.record.version
    }

    /// When the current countdown reaches zero, while running a timed step.
    pub fn deadline_ms(&self) -> Option<i64> {
        self.record.deadline_ms
    }

    /// Milliseconds left at `now_ms`; `None` on a manual step (or without
    /// steps). Never negative: an overdue step shows zero.
    pub fn remaining_ms(&self, now_ms: i64) -> Option<i64> {
        match self.record.deadline_ms {
            Some(deadline) => Some(deadline.saturating_sub(now_ms).max(0)),
            None => self.record.remaining_ms,
        }
    }

    /// The timer object of the client contract at `now_ms`.
    pub fn view(&self, now_ms: i64) -> TimerView {
        TimerView {
            state: self.record.state,
            step_index: self.record.step_index,
            step_count: u32::try_from(self.steps.len()).unwrap_or(u32::MAX),
            step: self.steps.get(self.record.step_index as usize).cloned(),
            deadline_ms: self.record.deadline_ms,
            remaining_ms: self.remaining_ms(now_ms),
            server_time_ms: now_ms,
        }
    }

    /// The alert of a countdown that reached zero and is still waiting for
    /// the host to move on (without auto-advance): `(step_index, due_ms,
    /// alert_seq)`. A watch that connects late buzzes for it once.
    pub fn pending_alert(&self, now_ms: i64) -> Option<(u32, i64, u64)> {
        match (self.record.state, self.record.deadline_ms) {
            (TimerState::Running, Some(deadline)) if self.record.alerted && deadline <= now_ms => {
                Some((self.record.step_index, deadline, self.record.alert_seq))
            }
            _ => None,
        }
    }

    /// When the caller should next call [`TimerMachine::advance`]: the
    /// deadline of a countdown that has not alerted yet.
    pub fn next_wake_ms(&self) -> Option<i64> {
        match (self.record.state, self.record.deadline_ms) {
            (TimerState::Running, Some(deadline)) if !self.record.alerted => Some(deadline),
            _ => None,
        }
    }

    /// Lets time pass up to `now_ms`: raises the alert of a countdown that
    /// reached zero and, with auto-advance, moves on (several steps when a
    /// long time passed, e.g. while the server was down), each next deadline
    /// counted from the previous one so that no time is lost or gained.
    pub fn advance(&mut self, now_ms: i64) -> Vec<TimerEvent> {
        let mut events = Vec::new();
        // Every pass moves to a later step or stops, so this ends.
        while let Some(due_ms) = self.next_wake_ms().filter(|due| *due <= now_ms) {
            self.record.alerted = true;
            self.record.alert_seq = self.record.alert_seq.saturating_add(1);
            events.push(TimerEvent::Alert {
                step_index: self.record.step_index,
                due_ms,
                alert_seq: self.record.alert_seq,
            });
            if self.auto_advance {
                if self.record.step_index >= self.last_index() {
                    self.finish();
                } else {
                    self.enter_step(self.record.step_index + 1, TimerState::Running, due_ms);
                }
            }
            self.touch(&mut events);
        }
        events
    }

    /// Applies a host action at `now_ms`. Time is advanced first, so an
    /// action always applies to the timer as it is at `now_ms`.
    pub fn apply(
        &mut self,
        action: TimerAction,
        now_ms: i64,
    ) -> Result<Vec<TimerEvent>, TimerRefusal> {
        let mut events = self.advance(now_ms);
        if self.steps.is_empty() {
            return Err(TimerRefusal::new(
                RefusalCode::TimerNoSteps,
                "the recipe has no steps to time",
            ));
        }
        action.check()?;
        let state = self.record.state;
        let last = self.last_index();
        match action {
            TimerAction::Start => {
                if state != TimerState::Idle {
                    return Err(TimerRefusal::new(
                        RefusalCode::TimerNotIdle,
                        format!(
                            "start applies to an idle timer; it is {}",
                            state_name(state)
                        ),
                    ));
                }
                self.run_from_rest(now_ms);
            }
            TimerAction::Pause => {
                if state != TimerState::Running {
                    return Err(TimerRefusal::new(
                        RefusalCode::TimerNotRunning,
                        format!(
                            "pause applies to a running timer; it is {}",
                            state_name(state)
                        ),
                    ));
                }
                self.record.remaining_ms = self.remaining_ms(now_ms);
                self.record.deadline_ms = None;
                self.record.state = TimerState::Paused;
            }
            TimerAction::Resume => {
                if state != TimerState::Paused {
                    return Err(TimerRefusal::new(
                        RefusalCode::TimerNotPaused,
                        format!(
                            "resume applies to a paused timer; it is {}",
                            state_name(state)
                        ),
                    ));
                }
                self.run_from_rest(now_ms);
            }
            TimerAction::Next => {
                if state == TimerState::Finished {
                    return Err(TimerRefusal::new(
                        RefusalCode::TimerFinished,
                        "the timer is finished; reset it or go to a step",
                    ));
                }
                if self.record.step_index >= last {
                    self.finish();
                } else {
                    self.enter_step(self.record.step_index + 1, state, now_ms);
                }
            }
            TimerAction::Previous => {
                if state == TimerState::Finished {
                    self.enter_step(last, TimerState::Paused, now_ms);
                } else if self.record.step_index == 0 {
                    return Err(TimerRefusal::new(
                        RefusalCode::TimerFirstStep,
                        "already on the first step",
                    ));
                } else {
                    self.enter_step(self.record.step_index - 1, state, now_ms);
                }
            }
            TimerAction::Goto { step } => {
                if step > last {
                    return Err(TimerRefusal::new(
                        RefusalCode::TimerNoSuchStep,
                        format!("step {step} does not exist; steps are 0 to {last}"),
                    ));
                }
                let state = if state == TimerState::Finished {
                    TimerState::Paused
                } else {
                    state
                };
                self.enter_step(step, state, now_ms);
            }
            TimerAction::AddTime { seconds } => {
                if state == TimerState::Finished {
                    return Err(TimerRefusal::new(
                        RefusalCode::TimerFinished,
                        "the timer is finished; reset it or go to a step",
                    ));
                }
                // Checked above to be within a day; saturating all the same,
                // as is every sum of times here (a stored record is input).
                let delta = seconds.saturating_mul(1000);
                match (self.record.deadline_ms, self.record.remaining_ms) {
                    (Some(deadline), _) => {
                        let new_deadline = if delta > 0 {
                            // An overdue step gets its extra time from now.
                            deadline.max(now_ms).saturating_add(delta)
                        } else {
                            // Removing time ends the countdown now at most,
                            // never in the past.
                            deadline.saturating_add(delta).max(now_ms)
                        };
                        self.record.deadline_ms = Some(new_deadline);
                        if new_deadline > now_ms {
                            self.record.alerted = false;
                        }
                    }
                    (None, Some(remaining)) => {
                        self.record.remaining_ms = Some(remaining.saturating_add(delta).max(0));
                    }
                    (None, None) => {
                        return Err(TimerRefusal::new(
                            RefusalCode::TimerManualStep,
                            "this step has no countdown; the host moves on",
                        ));
                    }
                }
            }
            TimerAction::Reset => {
                self.enter_step(0, TimerState::Idle, now_ms);
                self.record.alerted = false;
            }
        }
        self.touch(&mut events);
        // A countdown that an action ended (add_time down to zero) alerts now.
        events.extend(self.advance(now_ms));
        Ok(events)
    }

    fn last_index(&self) -> u32 {
        u32::try_from(self.steps.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    fn touch(&mut self, events: &mut Vec<TimerEvent>) {
        self.record.version = self.record.version.saturating_add(1);
        events.push(TimerEvent::Changed);
    }

    /// Starts counting from an idle or paused step.
    fn run_from_rest(&mut self, now_ms: i64) {
        self.record.state = TimerState::Running;
        self.record.deadline_ms = self
            .record
            .remaining_ms
            .map(|left| now_ms.saturating_add(left));
        self.record.remaining_ms = None;
    }

    fn finish(&mut self) {
        let last = self.last_index();
        let timed = self.steps.get(last as usize).and_then(step_ms).is_some();
        self.record.state = TimerState::Finished;
        self.record.step_index = last;
        self.record.deadline_ms = None;
        self.record.remaining_ms = timed.then_some(0);
    }

    /// Moves to `index` in `state` (idle, running or paused); a running
    /// step's countdown starts at `start_ms`.
    fn enter_step(&mut self, index: u32, state: TimerState, start_ms: i64) {
        let full = self.steps.get(index as usize).and_then(step_ms);
        self.record.step_index = index;
        self.record.state = state;
        self.record.alerted = false;
        if state == TimerState::Running {
            self.record.deadline_ms = full.map(|ms| start_ms.saturating_add(ms));
            self.record.remaining_ms = None;
        } else {
            self.record.deadline_ms = None;
            self.record.remaining_ms = full;
        }
    }
}

fn step_ms(step: &TimerStep) -> Option<i64> {
    step.duration_s.map(|s| i64::from(s) * 1000)
}

fn state_name(state: TimerState) -> &'static str {
    match state {
        TimerState::Idle => "idle",
        TimerState::Running => "running",
        TimerState::Paused => "paused",
        TimerState::Finished => "finished",
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

    fn recipe() -> Vec<TimerStep> {
        vec![
            step("boil", Some(60)),
            step("taste", None),
            step("simmer", Some(120)),
        ]
    }

    #[test]
    fn a_started_step_counts_down_from_an_absolute_deadline() {
        let mut t = TimerMachine::new(recipe(), false);
        assert_eq!(t.view(0).remaining_ms, Some(60_000));
        t.apply(TimerAction::Start, 1_000).unwrap();
        assert_eq!(t.deadline_ms(), Some(61_000));
        assert_eq!(t.view(31_000).remaining_ms, Some(30_000));
        assert_eq!(t.view(99_000).remaining_ms, Some(0));
    }

    #[test]
    fn pause_and_resume_keep_exactly_what_was_left() {
        let mut t = TimerMachine::new(recipe(), false);
        t.apply(TimerAction::Start, 0).unwrap();
        t.apply(TimerAction::Pause, 10_250).unwrap();
        assert_eq!(t.view(50_000).remaining_ms, Some(49_750));
        t.apply(TimerAction::Resume, 100_000).unwrap();
        assert_eq!(t.deadline_ms(), Some(149_750));
    }

    #[test]
    fn an_expired_countdown_alerts_once_and_waits_for_the_host() {
        let mut t = TimerMachine::new(recipe(), false);
        t.apply(TimerAction::Start, 0).unwrap();
        assert!(t.advance(59_999).is_empty());
        let events = t.advance(60_000);
        assert!(events.contains(&TimerEvent::Alert {
            step_index: 0,
            due_ms: 60_000,
            alert_seq: 1
        }));
        assert!(t.advance(70_000).is_empty());
        assert_eq!(t.pending_alert(70_000), Some((0, 60_000, 1)));
        assert_eq!(t.state(), TimerState::Running);
        assert_eq!(t.step_index(), 0);
        t.apply(TimerAction::Next, 80_000).unwrap();
        assert_eq!(t.step_index(), 1);
        assert_eq!(t.view(80_000).remaining_ms, None, "manual step");
    }

    #[test]
    fn auto_advance_chains_deadlines_without_drift() {
        let mut t = TimerMachine::new(
            vec![step("a", Some(10)), step("b", Some(20)), step("c", Some(5))],
            true,
        );
        t.apply(TimerAction::Start, 0).unwrap();
        // The server was away for a while: it catches up in one call.
        let events = t.advance(31_000);
        let alerts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                TimerEvent::Alert {
                    step_index, due_ms, ..
                } => Some((*step_index, *due_ms)),
                TimerEvent::Changed => None,
            })
            .collect();
        assert_eq!(alerts, vec![(0, 10_000), (1, 30_000)]);
        assert_eq!(t.step_index(), 2);
        assert_eq!(t.deadline_ms(), Some(35_000));
        t.advance(35_000);
        assert_eq!(t.state(), TimerState::Finished);
    }

    #[test]
    fn actions_that_do_not_apply_are_refused_with_a_code() {
        let mut t = TimerMachine::new(recipe(), false);
        assert_eq!(
            t.apply(TimerAction::Pause, 0).unwrap_err().code,
            RefusalCode::TimerNotRunning
        );
        assert_eq!(
            t.apply(TimerAction::Resume, 0).unwrap_err().code,
            RefusalCode::TimerNotPaused
        );
        assert_eq!(
            t.apply(TimerAction::Previous, 0).unwrap_err().code,
            RefusalCode::TimerFirstStep
        );
        assert_eq!(
            t.apply(TimerAction::Goto { step: 3 }, 0).unwrap_err().code,
            RefusalCode::TimerNoSuchStep
        );
        t.apply(TimerAction::Goto { step: 1 }, 0).unwrap();
        assert_eq!(
            t.apply(TimerAction::AddTime { seconds: 30 }, 0)
                .unwrap_err()
                .code,
            RefusalCode::TimerManualStep
        );
        t.apply(TimerAction::Start, 0).unwrap();
        assert_eq!(
            t.apply(TimerAction::Start, 0).unwrap_err().code,
            RefusalCode::TimerNotIdle
        );
        let mut empty = TimerMachine::new(Vec::new(), false);
        assert_eq!(
            empty.apply(TimerAction::Start, 0).unwrap_err().code,
            RefusalCode::TimerNoSteps
        );
    }

    #[test]
    fn add_time_moves_the_deadline_and_rearms_an_expired_alert() {
        let mut t = TimerMachine::new(recipe(), false);
        t.apply(TimerAction::Start, 0).unwrap();
        t.advance(60_000);
        t.apply(TimerAction::AddTime { seconds: 30 }, 65_000)
            .unwrap();
        assert_eq!(t.deadline_ms(), Some(95_000));
        assert_eq!(t.next_wake_ms(), Some(95_000));
        t.apply(TimerAction::AddTime { seconds: -600 }, 70_000)
            .unwrap();
        assert_eq!(t.view(70_000).remaining_ms, Some(0));
    }

    #[test]
    fn add_time_out_of_range_is_refused_without_overflow() {
        let mut t = TimerMachine::new(recipe(), false);
        t.apply(TimerAction::Start, 0).unwrap();
        for seconds in [0, i64::MIN, i64::MIN + 1, i64::MAX, -86_401, 86_401] {
            let action = TimerAction::AddTime { seconds };
            assert_eq!(
                action.check().unwrap_err().code,
                RefusalCode::TimerBadSeconds,
                "{seconds}"
            );
            assert_eq!(
                t.apply(action, 1_000).unwrap_err().code,
                RefusalCode::TimerBadSeconds,
                "{seconds}"
            );
        }
        assert_eq!(t.deadline_ms(), Some(60_000));
        for seconds in [-86_400, 86_400] {
            t.apply(TimerAction::AddTime { seconds }, 1_000).unwrap();
        }
        assert_eq!(t.deadline_ms(), Some(86_401_000));
    }

    #[test]
    fn a_record_restores_the_same_timer() {
        let mut t = TimerMachine::new(recipe(), true);
        t.apply(TimerAction::Start, 0).unwrap();
        t.apply(TimerAction::AddTime { seconds: 5 }, 1_000).unwrap();
        let json = serde_json::to_string(t.record()).unwrap();
        let back = TimerMachine::restore(recipe(), true, serde_json::from_str(&json).unwrap());
        assert_eq!(back, t);
    }

    #[test]
    fn a_record_that_does_not_fit_the_recipe_is_repaired() {
        let record = TimerRecord {
            state: TimerState::Running,
            step_index: 9,
            deadline_ms: None,
            remaining_ms: None,
            alerted: false,
            alert_seq: 0,
            version: 3,
        };
        let t = TimerMachine::restore(recipe(), false, record);
        assert_eq!(t.step_index(), 2);
        assert_eq!(t.state(), TimerState::Paused);
        assert_eq!(t.view(0).remaining_ms, Some(120_000));
    }
}
