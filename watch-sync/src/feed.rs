//! The watch feed (`GET /watch/ws`, or server-sent events at
//! `/watch/events`): compact JSON frames, every one with `server_time_ms`, so a
//! watch can correct its clock and render the countdown itself between frames.
//! Every frame fits in [`MAX_FRAME_BYTES`]: step texts are shortened to fit.

use serde::{Deserialize, Serialize};

use crate::timer::{TimerState, TimerStep, TimerView};

/// The largest frame the feed sends, in bytes.
pub const MAX_FRAME_BYTES: usize = 199;

/// A step as watch frames carry it: absent fields are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WatchStep {
    /// The step's text, shortened (ending in "…") to keep the frame small:
    /// show `label` when there is one.
    pub text: String,
    /// The recipe's short name of the step, for small screens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The step's countdown in seconds; absent for a manual step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u32>,
}

impl From<TimerStep> for WatchStep {
    fn from(step: TimerStep) -> Self {
        Self {
            text: step.text,
            label: step.label,
            duration_s: step.duration_s,
        }
    }
}

/// The timer object's fields, as watch frames carry them; absent fields are
/// `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WatchTimer {
    pub state: TimerState,
    pub step_index: u32,
    pub step_count: u32,
    /// The current step; absent only for a recipe without steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<WatchStep>,
    /// When the countdown reaches zero, server time; absent unless running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// Left at `server_time_ms`; absent on a manual step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<i64>,
}

impl From<TimerView> for WatchTimer {
    fn from(view: TimerView) -> Self {
        Self {
            state: view.state,
            step_index: view.step_index,
            step_count: view.step_count,
            step: view.step.map(WatchStep::from),
            deadline_ms: view.deadline_ms,
            remaining_ms: view.remaining_ms,
        }
    }
}

/// A frame from the server to a watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchFrame {
    /// On connect, and whenever the watch is moved to another session: the
    /// whole timer of the session it follows.
    Snapshot {
        server_time_ms: i64,
        #[serde(flatten)]
        timer: WatchTimer,
    },
    /// The timer changed.
    Timer {
        server_time_ms: i64,
        #[serde(flatten)]
        timer: WatchTimer,
    },
    /// A whole second of remaining time, while a countdown runs (all watches
    /// of a session get it at the same instant).
    Tick {
        server_time_ms: i64,
        step_index: u32,
        deadline_ms: i64,
        remaining_ms: i64,
    },
    /// A step's countdown reached zero: buzz. Sent once per alert and watch,
    /// also across reconnects.
    Alert {
        server_time_ms: i64,
        step_index: u32,
        /// When it reached zero, server time.
        due_ms: i64,
        /// Counts the session's alerts.
        alert_seq: u64,
    },
    /// The answer to `ping`, for clock sync.
    Pong {
        server_time_ms: i64,
        client_time_ms: i64,
    },
    /// The server closes the feed: `revoked` (the user removed the watch),
    /// `replaced` (a newer feed of this watch took its place),
    /// `session_ended`, or `unavailable` (the node is draining: reconnect
    /// after `after_ms`, to any node).
    Bye {
        server_time_ms: i64,
        reason: String,
        /// With `unavailable`: wait this long (ms) before reconnecting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_ms: Option<u64>,
    },
}

/// A frame from a watch to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchClientFrame {
    /// Clock sync: answered by `pong` with the same `client_time_ms`.
    Ping { client_time_ms: i64 },
}

impl WatchFrame {
    /// The frame as JSON, at most [`MAX_FRAME_BYTES`]: a step text that does
    /// not fit is cut to what does (ending in "…"); if even that is too much,
    /// the label is cut too.
    pub fn encode(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        if json.len() <= MAX_FRAME_BYTES {
            return json;
        }
        let mut frame = self.clone();
        let Some(step) = frame.step_mut() else {
            return json;
        };
        let text = std::mem::take(&mut step.text);
        let label = step.label.take();
        let bare = serde_json::to_string(&frame).unwrap_or_default().len();
        let room = MAX_FRAME_BYTES.saturating_sub(bare);
        // `,"label":""` costs 11 bytes before any character of it.
        let label = label.map(|l| fitting(&l, room.saturating_sub(11)));
        let label_cost = label.as_ref().map_or(0, |l| 11 + escaped_len(l));
        if let Some(step) = frame.step_mut() {
            step.text = fitting(&text, room.saturating_sub(label_cost));
            step.label = label.filter(|l| !l.is_empty());
        }
        serde_json::to_string(&frame).unwrap_or_default()
    }

    fn step_mut(&mut self) -> Option<&mut WatchStep> {
        match self {
            WatchFrame::Snapshot { timer, .. } | WatchFrame::Timer { timer, .. } => {
                timer.step.as_mut()
            }
            _ => None,
        }
    }

    /// The frame type, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            WatchFrame::Snapshot { .. } => "snapshot",
            WatchFrame::Timer { .. } => "timer",
            WatchFrame::Tick { .. } => "tick",
            WatchFrame::Alert { .. } => "alert",
            WatchFrame::Pong { .. } => "pong",
            WatchFrame::Bye { .. } => "bye",
        }
    }
}

/// The JSON Schema of the watch feed's frames (`docs/watch.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::json!({
        "$comment": "Generated from watch-sync's types; do not edit.",
        "server_frame": schemars::schema_for!(WatchFrame),
        "client_frame": schemars::schema_for!(WatchClientFrame),
    })
}

/// Bytes `text` takes inside a JSON string.
fn escaped_len(text: &str) -> usize {
    serde_json::to_string(text)
        .map(|json| json.len().saturating_sub(2))
        .unwrap_or(usize::MAX)
}

/// `text` whole if it takes at most `budget` bytes in JSON, else its longest
/// prefix that fits with a closing "…" (3 bytes).
fn fitting(text: &str, budget: usize) -> String {
    if escaped_len(text) <= budget {
        return text.to_owned();
    }
    let mut used = 3;
    let mut out = String::new();
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let cost = escaped_len(c.encode_utf8(&mut buf));
        if used + cost > budget {
            break;
        }
        used += cost;
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    if out.is_empty() {
        return out;
    }
    out.push('…');
    out
}

/// The instants at which ticks fire for a countdown with `deadline_ms`: whole
/// seconds of remaining time. Returns the first one after `now_ms` (with the
/// remaining seconds then), none when less than a second is left.
pub fn next_tick(deadline_ms: i64, now_ms: i64) -> Option<(i64, i64)> {
    let left = deadline_ms - now_ms;
    if left <= 1000 {
        return None;
    }
    // The largest whole second strictly below what is left.
    let seconds = (left - 1) / 1000;
    Some((deadline_ms - seconds * 1000, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(text: &str, label: Option<&str>) -> WatchTimer {
        WatchTimer {
            state: TimerState::Running,
            step_index: 199,
            step_count: 200,
            step: Some(WatchStep {
                text: text.into(),
                label: label.map(Into::into),
                duration_s: Some(86_400),
            }),
            deadline_ms: Some(9_999_999_999_999),
            remaining_ms: Some(172_800_000),
        }
    }

    /// A timer as most frames carry it.
    fn usual(text: &str, label: Option<&str>) -> WatchTimer {
        WatchTimer {
            state: TimerState::Running,
            step_index: 3,
            step_count: 12,
            step: Some(WatchStep {
                text: text.into(),
                label: label.map(Into::into),
                duration_s: Some(600),
            }),
            deadline_ms: Some(1_764_180_600_000),
            remaining_ms: Some(600_000),
        }
    }

    #[test]
    fn every_frame_fits_even_with_the_longest_values() {
        let long =
            "Stir the risotto gently, adding the warm stock one ladle at a time, ".repeat(10);
        let frames = [
            WatchFrame::Snapshot {
                server_time_ms: 9_999_999_999_999,
                timer: timer(&long, Some(&"label ".repeat(30))),
            },
            WatchFrame::Timer {
                server_time_ms: 9_999_999_999_999,
                timer: timer(&long, None),
            },
            WatchFrame::Tick {
                server_time_ms: 9_999_999_999_999,
                step_index: 199,
                deadline_ms: 9_999_999_999_999,
                remaining_ms: 172_800_000,
            },
            WatchFrame::Alert {
                server_time_ms: 9_999_999_999_999,
                step_index: 199,
                due_ms: 9_999_999_999_999,
                alert_seq: 99_999_999,
            },
            WatchFrame::Pong {
                server_time_ms: 9_999_999_999_999,
                client_time_ms: -9_999_999_999_999,
            },
            WatchFrame::Bye {
                server_time_ms: 9_999_999_999_999,
                reason: "session_ended".into(),
                after_ms: Some(99_999),
            },
        ];
        for frame in frames {
            let json = frame.encode();
            assert!(
                json.len() <= MAX_FRAME_BYTES,
                "{} bytes: {json}",
                json.len()
            );
            let back: WatchFrame = serde_json::from_str(&json).unwrap();
            assert_eq!(back.kind(), frame.kind());
        }
    }

    #[test]
    fn a_short_step_is_sent_whole() {
        let frame = WatchFrame::Timer {
            server_time_ms: 1_764_180_000_000,
            timer: usual("Boil", None),
        };
        let json = frame.encode();
        assert_eq!(serde_json::from_str::<WatchFrame>(&json).unwrap(), frame);
        assert!(json.contains("\"type\":\"timer\""));
        assert!(json.contains("\"server_time_ms\":1764180000000"));
    }

    #[test]
    fn a_long_text_is_cut_at_a_character_with_an_ellipsis() {
        let frame = WatchFrame::Timer {
            server_time_ms: 1_764_180_000_000,
            timer: usual(&"é".repeat(300), None),
        };
        let back: WatchFrame = serde_json::from_str(&frame.encode()).unwrap();
        let WatchFrame::Timer { timer, .. } = back else {
            panic!("not a timer frame")
        };
        let text = timer.step.unwrap().text;
        assert!(text.ends_with('…'));
        assert!(text.chars().count() > 5, "kept what fits: {text}");
    }

    #[test]
    fn ticks_fall_on_whole_seconds_of_remaining_time() {
        assert_eq!(next_tick(10_000, 0), Some((1_000, 9)));
        assert_eq!(next_tick(10_000, 1_000), Some((2_000, 8)));
        assert_eq!(next_tick(10_500, 0), Some((500, 10)));
        assert_eq!(next_tick(10_000, 8_999), Some((9_000, 1)));
        assert_eq!(next_tick(10_000, 9_000), None);
    }
}
