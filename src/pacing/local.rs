//! One invocation's pacing of one operation in one account-region.

use tokio::sync::Mutex;
use tokio::time::Instant;

use std::time::Duration;

use crate::pacing::{MAX_EXTRA, NARROW, WIDEN};

/// Spaces calls of one operation in one account and region at the service's quota (creates:
/// one a second). Slots are handed out in the order they are asked for, so the CAs that
/// waited longest (asked first) are requested first.
///
/// The quota is counted where the service receives the calls, so calls spaced exactly here
/// can arrive closer there when one is delayed on the way. A throttled call widens the
/// spacing a little (`throttled`), and accepted calls narrow it back (`accepted`), so a
/// path with jitter costs a few milliseconds a call rather than a whole slot per throttle.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    state: Mutex<PacerState>,
}

#[derive(Debug, Default)]
struct PacerState {
    next_slot: Option<Instant>,
    /// Added to `period` after throttling; shrinks again as calls are accepted.
    extra: Duration,
}

impl Pacer {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            state: Mutex::new(PacerState::default()),
        }
    }

    /// Waits for the next slot. Returns `false` at once, taking no slot, if that slot would
    /// come after `cutoff`.
    pub async fn wait_turn(&self, cutoff: Instant) -> bool {
        let slot = {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            let slot = state.next_slot.map_or(now, |n| n.max(now));
            if slot > cutoff {
                return false;
            }
            state.next_slot = Some(slot + self.period + state.extra);
            slot
        };
        tokio::time::sleep_until(slot).await;
        true
    }

    /// The service throttled a call made in a slot of this pacer: space the next ones wider.
    pub async fn throttled(&self) {
        let mut state = self.state.lock().await;
        state.extra = (state.extra + WIDEN).min(MAX_EXTRA);
    }

    /// The service accepted a call: narrow the spacing back towards `period`.
    pub async fn accepted(&self) {
        let mut state = self.state.lock().await;
        state.extra = state.extra.saturating_sub(NARROW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_slots_and_refuses_past_the_cutoff() {
        let pacer = Pacer::new(Duration::from_secs(1));
        let start = Instant::now();
        let cutoff = start + Duration::from_millis(2500);
        assert!(pacer.wait_turn(cutoff).await);
        assert!(pacer.wait_turn(cutoff).await);
        assert!(pacer.wait_turn(cutoff).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        assert!(
            !pacer.wait_turn(cutoff).await,
            "the fourth slot is at 3 s, past the cutoff"
        );
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(2),
            "a refused turn does not wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_widens_the_spacing_and_acceptance_narrows_it_back() {
        let pacer = Pacer::new(Duration::from_secs(1));
        let far = Instant::now() + Duration::from_secs(60);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert!(pacer.wait_turn(far).await);
        pacer.throttled().await;
        pacer.throttled().await;
        // The slot handed out before the throttling keeps its place; the ones after widen.
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(1000));
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(2040));
        for _ in 0..100 {
            pacer.accepted().await;
        }
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(3080));
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(4080), "back to the period");
        for _ in 0..100 {
            pacer.throttled().await;
        }
        assert_eq!(pacer.state.lock().await.extra, MAX_EXTRA);
    }
}
