//! Bit rates over a recent window: the room's byte counters only grow (over
//! its whole life), so a rate is the growth between a sample taken a few
//! seconds ago and now. Samples are taken at most once per [`STEP`], while
//! packets flow and whenever the numbers are asked for; when the host stops,
//! the counters stop growing and the rates fall to zero within [`WINDOW`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far back a rate looks.
pub(super) const WINDOW: Duration = Duration::from_secs(5);
/// The closest two samples may be.
const STEP: Duration = Duration::from_secs(1);
/// Shorter than this, a rate says nothing yet.
const SHORTEST: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
}

/// Samples of the byte counters over the last [`WINDOW`].
#[derive(Debug, Default)]
pub(super) struct RateMeter {
    samples: Mutex<VecDeque<Sample>>,
}

impl RateMeter {
    /// Records the counters at `at`, unless the last sample is recent.
    pub(super) fn sample(&self, at: Instant, bytes_in: u64, bytes_out: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples
            .back()
            .is_some_and(|last| at.saturating_duration_since(last.at) < STEP)
        {
            return;
        }
        samples.push_back(Sample {
            at,
            bytes_in,
            bytes_out,
        });
        // Keep one sample at or beyond the window's start as its baseline.
        while samples.len() > 1 && at.saturating_duration_since(samples[1].at) >= WINDOW {
            samples.pop_front();
        }
    }

    /// Bits per second in and out between the oldest sample in the window
    /// and these counters at `now` (0 when there is no baseline yet).
    pub(super) fn rates(&self, now: Instant, bytes_in: u64, bytes_out: u64) -> (u64, u64) {
        self.sample(now, bytes_in, bytes_out);
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let Some(base) = samples
            .iter()
            .find(|s| now.saturating_duration_since(s.at) <= WINDOW)
            .or(samples.front())
        else {
            return (0, 0);
        };
        let secs = now.saturating_duration_since(base.at);
        if secs < SHORTEST {
            return (0, 0);
        }
        let rate = |now: u64, then: u64| {
            (now.saturating_sub(then) as f64 * 8.0 / secs.as_secs_f64()) as u64
        };
        (
            rate(bytes_in, base.bytes_in),
            rate(bytes_out, base.bytes_out),
        )
    }
}

/// A codec's MIME type as browsers' `getStats` spell it (`video/VP8`,
/// `audio/opus`), whatever case the peer's SDP used; unknown ones in lower
/// case.
pub(super) fn canonical_codec(mime: &str) -> String {
    const KNOWN: [&str; 9] = [
        "video/VP8",
        "video/VP9",
        "video/H264",
        "video/H265",
        "video/AV1",
        "audio/opus",
        "audio/G722",
        "audio/PCMU",
        "audio/PCMA",
    ];
    KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(mime))
        .map_or_else(|| mime.to_ascii_lowercase(), |known| (*known).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_growth_over_the_recent_window() {
        let meter = RateMeter::default();
        let t0 = Instant::now();
        // 1.5 Mbit/s in, to 3 viewers, for 10 s, sampled as packets flow.
        let per_s = 1_500_000 / 8;
        for s in 0..=10u64 {
            meter.sample(t0 + Duration::from_secs(s), s * per_s, 3 * s * per_s);
        }
        let now = t0 + Duration::from_millis(10_500);
        let (rate_in, rate_out) =
            meter.rates(now, 10 * per_s + per_s / 2, 3 * (10 * per_s + per_s / 2));
        assert!((1_450_000..=1_550_000).contains(&rate_in), "{rate_in}");
        assert!((4_350_000..=4_650_000).contains(&rate_out), "{rate_out}");
    }

    #[test]
    fn when_the_host_stops_the_rates_fall_to_zero() {
        let meter = RateMeter::default();
        let t0 = Instant::now();
        let per_s = 1_000_000 / 8;
        for s in 0..=4u64 {
            meter.sample(t0 + Duration::from_secs(s), s * per_s, s * per_s);
        }
        // Stopped at 4 s: the counters stay; asked at 7 s, then at 10 s.
        let total = 4 * per_s;
        let (mid, _) = meter.rates(t0 + Duration::from_secs(7), total, total);
        assert!(mid > 0 && mid < 1_000_000, "{mid}");
        let (after, out) = meter.rates(t0 + Duration::from_secs(10), total, total);
        assert_eq!((after, out), (0, 0));
    }

    #[test]
    fn no_rate_without_a_baseline() {
        let meter = RateMeter::default();
        assert_eq!(meter.rates(Instant::now(), 1_000, 1_000), (0, 0));
    }

    #[test]
    fn codec_names_are_spelled_as_browsers_spell_them() {
        assert_eq!(canonical_codec("audio/OPUS"), "audio/opus");
        assert_eq!(canonical_codec("video/vp8"), "video/VP8");
        assert_eq!(canonical_codec("video/h264"), "video/H264");
        assert_eq!(canonical_codec("Video/Weird"), "video/weird");
    }
}
