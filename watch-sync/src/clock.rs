//! What a watch computes on its own: its clock's offset from the server's
//! (NTP-style, from `ping`/`pong`), and the countdown it displays between
//! frames. Pure: the caller passes its local clock readings in.

use crate::feed::{WatchFrame, WatchTimer};
use crate::timer::TimerState;

/// One `ping`/`pong` exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// Round trip, local clock, milliseconds.
    pub rtt_ms: i64,
    /// Server clock minus local clock, assuming the two legs took as long.
    pub offset_ms: i64,
}

/// The watch's estimate of server time. Keeps the sample with the lowest
/// round trip: the one least disturbed by queueing, so its offset error
/// (at most half the round-trip asymmetry) is smallest.
#[derive(Debug, Clone, Default)]
pub struct ClockSync {
    best: Option<ClockSample>,
    /// Until a `pong`, the offset of the latest frame's `server_time_ms` (an
    /// upper bound off by the one-way delay).
    rough_offset_ms: Option<i64>,
}

impl ClockSync {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `pong` came back: `sent_ms` and `received_ms` are local readings
    /// around the exchange, `server_time_ms` the server's stamp.
    pub fn on_pong(&mut self, sent_ms: i64, server_time_ms: i64, received_ms: i64) -> ClockSample {
        let rtt_ms = (received_ms - sent_ms).max(0);
        let sample = ClockSample {
            rtt_ms,
            offset_ms: server_time_ms - (sent_ms + rtt_ms / 2),
        };
        if self.best.is_none_or(|best| sample.rtt_ms <= best.rtt_ms) {
            self.best = Some(sample);
        }
        sample
    }

    /// Any frame's `server_time_ms`, received at local `received_ms`: a rough
    /// estimate until the first `pong`.
    pub fn on_frame(&mut self, server_time_ms: i64, received_ms: i64) {
        self.rough_offset_ms = Some(server_time_ms - received_ms);
    }

    /// Server clock minus local clock, best estimate so far.
    pub fn offset_ms(&self) -> i64 {
        self.best
            .map(|s| s.offset_ms)
            .or(self.rough_offset_ms)
            .unwrap_or(0)
    }

    /// The kept sample, if any.
    pub fn best(&self) -> Option<ClockSample> {
        self.best
    }

    /// The server's clock at local time `local_ms`.
    pub fn server_now(&self, local_ms: i64) -> i64 {
        local_ms + self.offset_ms()
    }
}

/// What a watch shows: the latest timer it was told, counted down locally.
#[derive(Debug, Clone, Default)]
pub struct WatchDisplay {
    timer: Option<WatchTimer>,
    /// Server time of the frame `timer` came in.
    as_of_ms: i64,
}

impl WatchDisplay {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in a feed frame; returns whether the display changed.
    pub fn apply(&mut self, frame: &WatchFrame) -> bool {
        match frame {
            WatchFrame::Snapshot {
                server_time_ms,
                timer,
            }
            | WatchFrame::Timer {
                server_time_ms,
                timer,
            } => {
                self.timer = Some(timer.clone());
                self.as_of_ms = *server_time_ms;
                true
            }
            WatchFrame::Tick {
                server_time_ms,
                step_index,
                deadline_ms,
                remaining_ms,
            } => match self.timer.as_mut() {
                Some(timer) if timer.step_index == *step_index => {
                    timer.deadline_ms = Some(*deadline_ms);
                    timer.remaining_ms = Some(*remaining_ms);
                    self.as_of_ms = *server_time_ms;
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// The timer shown, if any.
    pub fn timer(&self) -> Option<&WatchTimer> {
        self.timer.as_ref()
    }

    /// Milliseconds to show at server time `server_now_ms` (a watch passes
    /// [`ClockSync::server_now`] of its local clock): counted from the
    /// absolute deadline while running, as told otherwise; `None` on a manual
    /// step.
    pub fn remaining_ms(&self, server_now_ms: i64) -> Option<i64> {
        let timer = self.timer.as_ref()?;
        match (timer.state, timer.deadline_ms) {
            (TimerState::Running, Some(deadline)) => Some((deadline - server_now_ms).max(0)),
            _ => timer.remaining_ms,
        }
    }

    /// Server time of the frame shown.
    pub fn as_of_ms(&self) -> i64 {
        self.as_of_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::WatchStep;

    #[test]
    fn the_lowest_round_trip_sample_wins() {
        let mut sync = ClockSync::new();
        // The watch's clock is 5 s behind; the link takes 40 ms each way.
        let skew = -5_000;
        let local = |real: i64| real + skew;
        sync.on_pong(local(1_000), 1_040, local(1_080));
        assert_eq!(sync.offset_ms(), 5_000);
        // A queued exchange (slow return leg) is not kept.
        let slow = sync.on_pong(local(2_000), 2_040, local(2_400));
        assert_eq!(slow.rtt_ms, 400);
        assert_eq!(sync.offset_ms(), 5_000);
        assert_eq!(sync.server_now(local(10_000)), 10_000);
    }

    #[test]
    fn a_running_countdown_is_rendered_from_its_deadline() {
        let mut display = WatchDisplay::new();
        let timer = WatchTimer {
            state: TimerState::Running,
            step_index: 0,
            step_count: 1,
            step: Some(WatchStep {
                text: "Boil".into(),
                label: None,
                duration_s: Some(60),
            }),
            deadline_ms: Some(70_000),
            remaining_ms: Some(60_000),
        };
        display.apply(&WatchFrame::Timer {
            server_time_ms: 10_000,
            timer,
        });
        assert_eq!(display.remaining_ms(10_000), Some(60_000));
        assert_eq!(display.remaining_ms(40_500), Some(29_500));
        assert_eq!(display.remaining_ms(90_000), Some(0));
        assert!(display.apply(&WatchFrame::Tick {
            server_time_ms: 11_000,
            step_index: 0,
            deadline_ms: 75_000,
            remaining_ms: 64_000,
        }));
        assert_eq!(display.remaining_ms(11_000), Some(64_000));
    }
}
