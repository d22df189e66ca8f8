//! Sequence-number and timestamp rewriting for a relayed stream, and the
//! loss count of an incoming one, without I/O.
//!
//! A subscriber's track outlives publishers: when the host republishes (a new
//! connection, a new SSRC, new random sequence numbers and timestamps), the
//! subscriber must see one continuous stream, or it takes the jump for a
//! burst of loss (NACK storms) or a clock leap. So each publish epoch gets an
//! offset that makes its first packet follow the last one forwarded.

/// How far the timestamp moves across a publisher switch (one 30 fps video
/// frame at 90 kHz; a few ms of audio at 48 kHz is as harmless).
const SWITCH_TIMESTAMP_STEP: u32 = 3000;

/// Rewrites one kind (video or audio) of a room's outgoing stream.
#[derive(Debug, Default, Clone)]
pub struct Rewriter {
    /// The publish epoch the offsets belong to (the publisher's SSRC).
    epoch: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// The last sequence number and timestamp sent, if any.
    last: Option<(u16, u32)>,
}

impl Rewriter {
    /// The outgoing `(sequence, timestamp)` of a packet of `ssrc`.
    pub fn rewrite(&mut self, ssrc: u32, seq: u16, ts: u32) -> (u16, u32) {
        if self.epoch != Some(ssrc) {
            self.epoch = Some(ssrc);
            match self.last {
                // Continue right after what subscribers saw last.
                Some((last_seq, last_ts)) => {
                    self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
                    self.ts_offset = last_ts.wrapping_add(SWITCH_TIMESTAMP_STEP).wrapping_sub(ts);
                }
                // The first publisher passes through unchanged.
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
        }
        let out = (
            seq.wrapping_add(self.seq_offset),
            ts.wrapping_add(self.ts_offset),
        );
        // Keep the newest (retransmissions and reordering do not move it back).
        let newer = self
            .last
            .is_none_or(|(last, _)| out.0.wrapping_sub(last) < 0x8000 && out.0 != last);
        if newer {
            self.last = Some(out);
        }
        out
    }
}

/// `seq` as a number that keeps growing past 65535: the one nearest to
/// `newest` (an earlier number so extended). The first starts mid-range, so
/// that a packet older than it still has one and reordering cannot
/// underflow.
pub fn extend_seq(newest: Option<u64>, seq: u16) -> u64 {
    match newest {
        None => (1 << 32) + u64::from(seq),
        Some(newest) => {
            let delta = i64::from(seq.wrapping_sub(newest as u16) as i16);
            newest.saturating_add_signed(delta)
        }
    }
}

/// Loss of one incoming stream as RFC 3550 (A.3) counts it: packets expected
/// (from the first to the highest sequence number seen) minus packets
/// received. A retransmission that fills a gap takes it off again.
#[derive(Debug, Default, Clone)]
pub struct LossCounter {
    /// The first and the highest extended sequence number.
    first: u64,
    highest: u64,
    received: u64,
}

impl LossCounter {
    /// Counts a packet; returns the loss so far.
    pub fn packet(&mut self, seq: u16) -> u64 {
        let extended = extend_seq((self.received > 0).then_some(self.highest), seq);
        if self.received == 0 {
            self.first = extended;
            self.highest = extended;
        } else {
            self.highest = self.highest.max(extended);
            self.first = self.first.min(extended);
        }
        self.received += 1;
        self.lost()
    }

    pub fn lost(&self) -> u64 {
        if self.received == 0 {
            return 0;
        }
        (self.highest - self.first + 1).saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_gaps_not_yet_filled_across_a_wrap() {
        let mut l = LossCounter::default();
        assert_eq!(l.packet(65_534), 0);
        assert_eq!(l.packet(65_535), 0);
        // 0 and 1 missing, across the wrap.
        assert_eq!(l.packet(2), 2);
        // A retransmission of 0 arrives late.
        assert_eq!(l.packet(0), 1);
        assert_eq!(l.packet(3), 1);
        // A packet older than the first one widens what was expected.
        assert_eq!(l.packet(65_532), 2);
    }

    #[test]
    fn the_first_publisher_passes_through() {
        let mut r = Rewriter::default();
        assert_eq!(r.rewrite(7, 100, 5000), (100, 5000));
        assert_eq!(r.rewrite(7, 101, 8000), (101, 8000));
    }

    #[test]
    fn a_republish_continues_the_stream() {
        let mut r = Rewriter::default();
        r.rewrite(7, 65_534, 1_000);
        r.rewrite(7, 65_535, 4_000);
        // A new publisher starts anywhere; subscribers see the next number.
        assert_eq!(r.rewrite(9, 12, 777), (0, 7_000));
        assert_eq!(r.rewrite(9, 13, 3_777), (1, 10_000));
    }

    #[test]
    fn a_late_packet_does_not_move_the_stream_back() {
        let mut r = Rewriter::default();
        r.rewrite(7, 10, 0);
        r.rewrite(7, 12, 6_000);
        assert_eq!(r.rewrite(7, 11, 3_000), (11, 3_000));
        assert_eq!(r.rewrite(8, 500, 0), (13, 9_000));
    }
}
