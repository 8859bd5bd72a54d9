//! Whose clock the shared create slots are read on: this host's, corrected by what the
//! ledger's service says the time is.
//!
//! The slots in the ledger are instants written by many hosts and waited for by others. A
//! host whose clock is ahead by two seconds waits two seconds too little for every slot, so
//! its creates land among other hosts' (measured: RELIABILITY.md, "Clocks that disagree"). So
//! every host reads the slots on one clock they share: the service that keeps the ledger. Its
//! answers carry the HTTP `Date` header (whole seconds), the service's time as the AWS SDKs
//! read it to correct a client's clock skew (aws-runtime's clock-skew test cases); an answer
//! without one changes nothing. One answer says where the service's clock stood within a
//! second, and answers that happen to straddle the service's turn of a second say it to within
//! the round trip. `ServerOffset` keeps what all answers together say; the shared pacer sends a
//! few cheap reads timed to straddle that turn (`probe_at`), so a host learns the offset to
//! about a round trip within seconds: before its first slot, when the first answer already
//! shows it to be off.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::aws::ServiceError;
use crate::aws::ledger::quota::{Dated, QuotaItem};
use crate::pacing::{PROBED_WIDTH, PROBES};

/// This host's wall clock, in epoch milliseconds: the machine's, or moved by a skew, for
/// tests of a host whose clock disagrees with the others'.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostClock {
    skew_ms: i64,
}

impl HostClock {
    /// A clock `skew_ms` ahead of the machine's (behind, when negative).
    pub fn skewed(skew_ms: i64) -> Self {
        Self { skew_ms }
    }

    pub fn now_ms(&self) -> u64 {
        let machine = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (machine + self.skew_ms).max(0) as u64
    }
}

/// What the service's answers say about its clock minus this host's, in milliseconds: a range
/// that holds the true offset, narrowed by every answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerOffset {
    bounds: Option<(i64, i64)>,
    /// The quickest round trip seen, ms: a probe is sent half of it before the instant it
    /// aims at.
    quickest: Option<u64>,
}

/// Answers that disagree by more than this (ms) mean this host's clock was stepped: what was
/// known is dropped. Less is the grain of the service's own front ends.
const STEPPED: i64 = 50;

impl ServerOffset {
    /// An answer whose `Date` says `server_second` (epoch seconds), to a call sent at `sent`
    /// and answered at `received` (this host's epoch milliseconds). The service stamped it
    /// somewhere between the two, at an instant of its clock within that second.
    pub fn observe(&mut self, sent: u64, received: u64, server_second: u64) {
        let second = server_second as i64 * 1000;
        let lo = second - received as i64;
        let hi = second + 1000 - sent as i64;
        let trip = received.saturating_sub(sent);
        self.quickest = Some(self.quickest.map_or(trip, |q| q.min(trip)));
        self.bounds = Some(match self.bounds {
            Some((a, b)) if lo.max(a) <= hi.min(b) => (lo.max(a), hi.min(b)),
            // The answers disagree by a little: another front end of the service keeps a
            // slightly different time. Move as little as both allow: the gap between them.
            Some((_, b)) if lo > b && lo - b <= STEPPED => (b, lo),
            Some((a, _)) if hi < a && a - hi <= STEPPED => (hi, a),
            // First answer, or this host's clock was stepped: start again from this answer.
            _ => (lo, hi),
        });
    }

    /// How much to add to this host's clock: the least correction every answer agrees with.
    /// None at all while the host's own clock is consistent with them (so a host in step with
    /// the service keeps its own clock, whatever the answers' one-second grain), and never more
    /// than the true offset: the corrected clock is never further from the service's than the
    /// host's own.
    pub fn correction(&self) -> i64 {
        self.bounds.map_or(0, |(lo, hi)| 0.clamp(lo, hi))
    }

    /// How wide the range still is, in milliseconds; `None` before the first answer.
    pub fn width(&self) -> Option<u64> {
        self.bounds.map(|(lo, hi)| (hi - lo) as u64)
    }

    /// When (this host's epoch milliseconds, not before `after`) to send a call so that it
    /// reaches the service as its clock turns a second, if the offset is the middle of the
    /// range: the answer's `Date` then says on which side the truth lies, halving the range.
    pub fn probe_at(&self, after: u64) -> Option<u64> {
        let (lo, hi) = self.bounds?;
        let middle = (lo + hi).div_euclid(2);
        let lead = self.quickest.unwrap_or(0) as i64 / 2;
        let server = after as i64 + lead + middle;
        let turn = (server.div_euclid(1000) + 1) * 1000;
        Some((turn - middle - lead).max(after as i64) as u64)
    }
}

/// The ledger service's clock as this host reads it: its own, corrected by what the service's
/// answers say (every call through `observed`, and reads sent only for that).
#[derive(Clone, Debug)]
pub struct ServiceClock {
    host: HostClock,
    offset: Arc<Mutex<ServerOffset>>,
    /// Reads timed to learn the offset are under way in the background.
    learning: Arc<AtomicBool>,
    /// Reads this container may still send only to learn the offset.
    probes_left: Arc<AtomicU32>,
    /// The first slot was reserved: learning no longer holds a reservation back.
    calibrated: Arc<AtomicBool>,
    item: QuotaItem,
}

impl ServiceClock {
    pub fn new(host: HostClock, item: QuotaItem) -> Self {
        Self {
            host,
            offset: Arc::default(),
            learning: Arc::default(),
            probes_left: Arc::new(AtomicU32::new(PROBES)),
            calibrated: Arc::default(),
            item,
        }
    }

    fn offset(&self) -> ServerOffset {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Now, in epoch milliseconds, on the service's clock as far as its answers tell it.
    pub fn now_ms(&self) -> u64 {
        (self.host.now_ms() as i64 + self.offset().correction()).max(0) as u64
    }

    /// Awaits a call to the service and notes its answer's `Date` against this host's clock.
    pub async fn observed<T>(
        &self,
        call: impl Future<Output = Dated<T>>,
    ) -> Result<T, ServiceError> {
        let sent = self.host.now_ms();
        let answer = call.await;
        if let Some(second) = answer.server_second {
            let received = self.host.now_ms();
            let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
            offset.observe(sent, received, second);
        }
        answer.result
    }

    /// The answers show this host to be off, by an amount known only roughly, and probing may
    /// still narrow it. A host they agree with spends no reads on it: its creates are on time
    /// as far as anything can tell, and every reservation's answer keeps checking.
    fn still_learning(&self) -> bool {
        let offset = self.offset();
        offset.correction() != 0
            && offset.width().is_some_and(|w| w > PROBED_WIDTH)
            && self.probes_left.load(Ordering::Relaxed) > 0
    }

    /// One read timed to halve what is known of the offset.
    async fn probe_on_time(&self) {
        let Some(at) = self.offset().probe_at(self.host.now_ms()) else {
            return;
        };
        self.probes_left.fetch_sub(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(self.host.now_ms()))).await;
        // A read that fails teaches nothing and costs nothing: the slots go on either way.
        let _ = self.observed(self.item.probe()).await;
    }

    /// Before this host's first slot. One read (one round trip) says the service's time to
    /// within a second. A host that it shows to be off learns by how much, to about a round
    /// trip, before it reserves (a few seconds, once a container, and only for such a host),
    /// rather than land its first creates among the others'. A host in step goes on.
    pub async fn calibrate(&self, cutoff: Instant) {
        if self.calibrated.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.offset().width().is_none() {
            let _ = self.observed(self.item.probe()).await;
        }
        while self.still_learning() && Instant::now() + Duration::from_secs(2) < cutoff {
            self.probe_on_time().await;
        }
    }

    /// While this host is off by an amount known only roughly (found so by a reservation's
    /// answer, say), reads in the background, each timed to halve what is known
    /// (`ServerOffset::probe_at`), one at a time. They never delay a create.
    pub fn learn_in_background(&self) {
        if !self.still_learning() || self.learning.swap(true, Ordering::AcqRel) {
            return;
        }
        let clock = self.clone();
        tokio::spawn(async move {
            while clock.still_learning() {
                clock.probe_on_time().await;
            }
            clock.learning.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service whose clock is `offset` ms ahead of the host's, answering a call sent at
    /// host time `sent` after `rtt` ms, stamped half-way.
    fn answer(offset: i64, sent: u64, rtt: u64) -> (u64, u64, u64) {
        let stamped = sent as i64 + rtt as i64 / 2 + offset;
        (sent, sent + rtt, stamped.div_euclid(1000) as u64)
    }

    fn observe(o: &mut ServerOffset, (sent, received, second): (u64, u64, u64)) {
        o.observe(sent, received, second);
    }

    #[test]
    fn a_host_in_step_with_the_service_is_never_corrected() {
        let mut o = ServerOffset::default();
        assert_eq!(o.correction(), 0, "no answer yet");
        for i in 0..200u64 {
            observe(&mut o, answer(0, 1_700_000_000_000 + i * 137, 4));
            assert_eq!(o.correction(), 0);
        }
        assert!(o.width().unwrap() <= 20, "{:?}", o.width());
    }

    #[test]
    fn one_answer_corrects_a_clock_two_seconds_off_to_within_a_second_and_never_past_it() {
        for offset in [2000i64, -2000, 1300, -1300] {
            for phase in (0..1000).step_by(50) {
                let mut o = ServerOffset::default();
                observe(&mut o, answer(offset, 1_700_000_000_000 + phase, 6));
                let c = o.correction();
                assert!(
                    (c - offset).abs() <= 1006,
                    "offset {offset}, phase {phase}: {c}"
                );
                assert!(c.signum() == offset.signum() && c.abs() <= offset.abs() + 6);
            }
        }
    }

    #[test]
    fn probes_timed_at_the_middle_find_the_offset_to_the_round_trip() {
        for offset in [2000i64, -2000, 50, -50, 7, 0, 123_456] {
            let mut o = ServerOffset::default();
            let mut now = 1_700_000_000_321;
            observe(&mut o, answer(offset, now, 6));
            for _ in 0..12 {
                now = o.probe_at(now + 1000).unwrap();
                observe(&mut o, answer(offset, now, 6));
            }
            assert!(o.width().unwrap() <= 16, "offset {offset}: {:?}", o.width());
            let c = o.correction();
            assert!((c - offset).abs() <= 16, "offset {offset}: {c}");
        }
    }

    #[test]
    fn a_probe_is_never_due_before_now_and_lands_on_a_turn_of_the_second() {
        let mut o = ServerOffset::default();
        o.observe(10_000, 10_004, 12); // offset between 1996 and 3000
        let at = o.probe_at(10_100).unwrap();
        assert!(at >= 10_100);
        let (lo, hi) = o.bounds.unwrap();
        let arrives = at as i64 + 2 + (lo + hi).div_euclid(2);
        assert_eq!(
            arrives.rem_euclid(1000),
            0,
            "half the round trip after it is sent"
        );
    }

    #[test]
    fn a_stepped_clock_is_learnt_again_from_the_answers_after_the_step() {
        let mut o = ServerOffset::default();
        let mut now = 1_700_000_000_000;
        observe(&mut o, answer(0, now, 4));
        for _ in 0..12 {
            now = o.probe_at(now + 1000).unwrap();
            observe(&mut o, answer(0, now, 4));
        }
        // The host's clock is stepped back 2.7 s: every answer now says the service is ahead.
        for _ in 0..14 {
            now = o.probe_at(now + 1000).unwrap();
            observe(&mut o, answer(2700, now, 4));
        }
        assert!((o.correction() - 2700).abs() <= 10, "{o:?}");
    }

    #[test]
    fn front_ends_a_few_milliseconds_apart_move_the_range_only_that_far() {
        let mut o = ServerOffset::default();
        let mut now = 1_700_000_000_000;
        observe(&mut o, answer(-2000, now, 4));
        for _ in 0..12 {
            now = o.probe_at(now + 1000).unwrap();
            observe(&mut o, answer(-2000, now, 4));
        }
        for skew in [-2012, -1990, -2000] {
            now = o.probe_at(now + 1000).unwrap();
            observe(&mut o, answer(skew, now, 4));
            assert!((o.correction() + 2000).abs() <= 20, "{skew}: {o:?}");
        }
        assert!(o.width().unwrap() <= 40, "never started afresh: {o:?}");
    }
}
