//! How a lane numbers what it sends once it has dropped packets. Its
//! viewers must see no gap where the lane dropped (they would ask again for
//! packets that will never come), so a packet moves back by the number of
//! packets dropped before *it*. A packet that comes late (the host's
//! retransmission of one lost on its way in, or one reordered) moves by
//! what was dropped before its own number, not by everything dropped since:
//! that would give it the number of a packet the viewers already have, and
//! put it in the lane's NACK history in that packet's place.

use std::collections::VecDeque;

use crate::media::rewrite::extend_seq;

/// Runs of dropped packets remembered per lane and kind. A late packet from
/// before the oldest is dropped too: its number can no longer be told.
const RUNS: usize = 64;

/// A run of consecutive dropped sequence numbers (extended past wraps).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    /// One past the run's last number.
    end: u64,
    /// Packets dropped up to the run's end, older runs included.
    total: u64,
}

/// One lane's numbering of one kind's packets.
#[derive(Debug, Default)]
pub(super) struct Renumber {
    /// The newest sequence number sent or dropped, extended past wraps.
    newest: Option<u64>,
    /// Drop runs, oldest first, at most [`RUNS`].
    runs: VecDeque<Run>,
    /// Packets before this number are older than every run kept.
    forgotten: u64,
}

impl Renumber {
    /// The number to send packet `seq` as; `None` for a packet to drop
    /// again (it was dropped before, or is older than what is remembered).
    pub(super) fn number(&mut self, seq: u16) -> Option<u16> {
        let at = self.extend(seq);
        if self.newest.is_none_or(|newest| at > newest) {
            self.newest = Some(at);
            let moved = self.runs.back().map_or(0, |run| run.total);
            return Some(shift(at, moved));
        }
        // Late: what was dropped before its own number.
        match self.runs.iter().rev().find(|run| run.start <= at) {
            Some(run) if at < run.end => None,
            Some(run) => Some(shift(at, run.total)),
            None if at < self.forgotten => None,
            None => {
                let moved = self.runs.front().map_or(0, |run| {
                    run.total - (run.end - run.start) // dropped before it
                });
                Some(shift(at, moved))
            }
        }
    }

    /// Packet `seq` was dropped. Only a packet newer than everything sent
    /// moves the ones after it: an older one dropped late leaves a gap that
    /// was already there.
    pub(super) fn dropped(&mut self, seq: u16) {
        let at = self.extend(seq);
        if self.newest.is_some_and(|newest| at <= newest) {
            return;
        }
        self.newest = Some(at);
        self.drop_run(at, at + 1);
    }

    /// The `count` packets queued before packet `seq` were lost (the lane's
    /// queue was full): taken as the numbers right before it, those not
    /// already sent.
    pub(super) fn missed(&mut self, seq: u16, count: u16) {
        let at = self.extend(seq);
        let start = at.saturating_sub(u64::from(count));
        let start = self.newest.map_or(start, |newest| start.max(newest + 1));
        if start < at {
            self.newest = Some(at - 1);
            self.drop_run(start, at);
        }
    }

    fn drop_run(&mut self, start: u64, end: u64) {
        let dropped = end - start;
        match self.runs.back_mut() {
            Some(run) if run.end == start => {
                run.end = end;
                run.total += dropped;
            }
            last => {
                let total = last.map_or(0, |run| run.total) + dropped;
                self.runs.push_back(Run { start, end, total });
            }
        }
        if self.runs.len() > RUNS {
            if let Some(oldest) = self.runs.pop_front() {
                self.forgotten = oldest.end;
            }
        }
    }

    /// `seq` extended past wraps, next to the newest seen.
    fn extend(&self, seq: u16) -> u64 {
        extend_seq(self.newest, seq)
    }
}

/// `at` moved back by `moved`, as a sequence number.
fn shift(at: u64, moved: u64) -> u16 {
    at.wrapping_sub(moved) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(renumber: &mut Renumber, seqs: impl IntoIterator<Item = u16>) -> Vec<Option<u16>> {
        seqs.into_iter().map(|s| renumber.number(s)).collect()
    }

    #[test]
    fn without_drops_numbers_pass_through() {
        let mut r = Renumber::default();
        assert_eq!(
            send(&mut r, [7, 8, 10, 9]),
            [Some(7), Some(8), Some(10), Some(9)]
        );
    }

    #[test]
    fn packets_after_a_drop_close_the_gap() {
        let mut r = Renumber::default();
        send(&mut r, 1..=10);
        (11..=13).for_each(|s| r.dropped(s));
        assert_eq!(send(&mut r, [14, 15]), [Some(11), Some(12)]);
        r.dropped(16);
        assert_eq!(r.number(17), Some(13));
    }

    #[test]
    fn a_late_packet_keeps_the_number_of_its_place() {
        let mut r = Renumber::default();
        // 5 is lost on the host's way in; 11..=13 are dropped late.
        send(&mut r, (1..=10).filter(|s| *s != 5));
        (11..=13).for_each(|s| r.dropped(s));
        assert_eq!(
            send(&mut r, 14..=20),
            (11..=17).map(Some).collect::<Vec<_>>()
        );
        // The host's retransmission of 5 fills the viewers' gap at 5, not
        // the place of 2, which they already have.
        assert_eq!(r.number(5), Some(5));
        // Between two drop runs: moved by the first only.
        r.dropped(21);
        r.dropped(22);
        assert_eq!(r.number(23), Some(18));
        assert_eq!(r.number(16), Some(13));
    }

    #[test]
    fn a_dropped_packet_that_comes_again_is_dropped() {
        let mut r = Renumber::default();
        send(&mut r, 1..=10);
        (11..=13).for_each(|s| r.dropped(s));
        r.number(14);
        assert_eq!(r.number(12), None);
    }

    #[test]
    fn a_late_packet_dropped_moves_nothing() {
        let mut r = Renumber::default();
        send(&mut r, (1..=10).filter(|s| *s != 5));
        r.dropped(5);
        assert_eq!(r.number(11), Some(11));
    }

    #[test]
    fn packets_missed_before_one_close_the_gap() {
        let mut r = Renumber::default();
        send(&mut r, 1..=10);
        r.missed(14, 3);
        assert_eq!(r.number(14), Some(11));
        assert_eq!(r.number(12), None);
        // Missed numbers already sent are not counted again.
        r.missed(15, 5);
        assert_eq!(r.number(15), Some(12));
    }

    #[test]
    fn numbers_wrap() {
        let mut r = Renumber::default();
        send(&mut r, 65530..=65535);
        (0..=2).for_each(|s| r.dropped(s));
        assert_eq!(send(&mut r, [3, 4]), [Some(0), Some(1)]);
        assert_eq!(r.number(65534), Some(65534));
    }

    #[test]
    fn drop_runs_are_bounded() {
        let mut r = Renumber::default();
        r.number(1);
        for i in 0..(RUNS as u16 + 10) {
            r.dropped(2 + 2 * i);
            r.number(3 + 2 * i);
        }
        assert_eq!(r.runs.len(), RUNS);
        // From before every run kept: its place cannot be told.
        assert_eq!(r.number(5), None);
        let last = 3 + 2 * (RUNS as u16 + 9);
        assert_eq!(r.number(last + 1), Some(last + 1 - (RUNS as u16 + 10)));
        // From after the oldest run kept.
        let kept = 2 * 10 + 3;
        assert_eq!(r.number(kept), Some(kept - 11));
    }
}
