//! The create quota of one account-region, shared by every invocation wherever it runs.
//!
//! The service allows one CreateCertificateAuthorityAuditReport a second per account and
//! region, counted for all callers together. Overlapping invocations (the schedule and a
//! person, Lambda's retry, a work item delivered twice, two stacks on one account) must
//! share that second, not each take it: so the next free create slot is kept in the ledger
//! table, one small item per account-region, and reserved with one atomic write.
//!
//! The item (`aws::ledger::quota`) keeps `next_slot` (the epoch millisecond of the next free
//! slot) and `step_ms` (the spacing of slots: the period, widened after throttling).
//!
//! Reserving costs one write a create while the queue is ahead of now (`next_slot` moved on by
//! `step_ms`, the old value being this caller's slot), and two when it had fallen behind (the
//! first fails its condition, the second starts the queue again at now). A throttled create
//! costs one more write, widening `step_ms` for every caller; the narrowing back rides on the
//! reservations. A slot reserved by an invocation that then dies is simply not used: one
//! second lost, nothing held.
//!
//! The slots are instants of the wall clock, written by one host and waited for by another, so
//! every host reads them on one clock they share: the service's that keeps the ledger, as its
//! answers tell it (`pacing::clock`). A host's own clock is used as it is while it agrees with
//! those answers. One seconds off learns by how much before its first slot, so it neither
//! lands its creates among the others' (ahead) nor waits past its slots into the next ones
//! (behind). One off by less than a round trip to the ledger cannot be told from the network's
//! delay until a quicker answer comes; until then the widening step absorbs it, a few
//! throttles, never a CA (measured: RELIABILITY.md, "Clocks that disagree").

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::aws::ServiceError;
use crate::aws::ledger::quota::{Attempt, QuotaItem};
use crate::pacing::clock::{HostClock, ServiceClock};
use crate::pacing::{MAX_EXTRA, NARROW, Pacer, RESTART_LEAD, WIDEN};

// The shared queue's numbers are the local pacer's (`pacing`), in the milliseconds the
// ledger's item keeps.
const WIDEN_MS: u64 = WIDEN.as_millis() as u64;
const MAX_EXTRA_MS: u64 = MAX_EXTRA.as_millis() as u64;
const NARROW_MS: i64 = NARROW.as_millis() as i64;
const RESTART_LEAD_MS: u64 = RESTART_LEAD.as_millis() as u64;

/// The shared create slots of one account-region, as this container reserves them.
#[derive(Debug)]
pub struct SharedPacer {
    item: QuotaItem,
    period: Duration,
    /// The shared step as last seen; its lock also orders this container's callers:
    /// reservations go out one at a time, so its CAs get slots in the order they asked.
    seen_step: Mutex<Option<u64>>,
    /// Used only when the ledger cannot be reached for a slot: the invocation goes on at the
    /// quota's pace on its own rather than stopping (the claim already needed the ledger).
    fallback: Pacer,
    /// The clock the slots are read on.
    clock: ServiceClock,
}

impl SharedPacer {
    pub fn new(client: Client, table: &str, account: &str, region: &str, period: Duration) -> Self {
        let item = QuotaItem::new(client, table, account, region);
        Self {
            clock: ServiceClock::new(HostClock::default(), item.clone()),
            item,
            period,
            seen_step: Mutex::new(None),
            fallback: Pacer::new(period),
        }
    }

    /// Reads this host's time on `host` (a skewed clock, for tests of hosts that disagree).
    pub fn with_clock(mut self, host: HostClock) -> Self {
        self.clock = ServiceClock::new(host, self.item.clone());
        self
    }

    /// Waits for the next shared slot. Returns `false` at once, reserving nothing, if that slot
    /// would come after `cutoff`.
    pub async fn wait_turn(&self, cutoff: Instant) -> bool {
        let slot = {
            let mut seen = self.seen_step.lock().await;
            self.clock.calibrate(cutoff).await;
            match self.reserve(*seen, cutoff).await {
                Ok(Some((slot, step))) => {
                    *seen = Some(step);
                    slot
                }
                Ok(None) => return false,
                Err(e) => {
                    drop(seen);
                    tracing::warn!(
                        table = %self.item.table(),
                        "could not reserve a shared create slot ({e}); pacing this invocation alone"
                    );
                    return self.fallback.wait_turn(cutoff).await;
                }
            }
        };
        self.clock.learn_in_background();
        let wait = Duration::from_millis(slot.saturating_sub(self.clock.now_ms()));
        tokio::time::sleep(wait).await;
        true
    }

    fn period_ms(&self) -> u64 {
        self.period.as_millis() as u64
    }

    /// The service throttled a create made in a slot of this pacer: widen the shared step
    /// (one write; none once it is at its widest).
    pub async fn throttled(&self) {
        let widest = self.period_ms() + MAX_EXTRA_MS;
        if let Err(e) = self.clock.observed(self.item.widen(WIDEN_MS, widest)).await {
            let table = self.item.table();
            tracing::warn!(%table, "could not widen the shared create step: {e}");
        }
        self.fallback.throttled().await;
    }

    /// The service accepted a create. The shared step narrows back as slots are reserved.
    pub async fn accepted(&self) {
        self.fallback.accepted().await;
    }

    async fn reserve(
        &self,
        seen: Option<u64>,
        cutoff: Instant,
    ) -> Result<Option<(u64, u64)>, ServiceError> {
        loop {
            if cutoff <= Instant::now() {
                return Ok(None);
            }
            let now = self.clock.now_ms();
            let latest = now + cutoff.saturating_duration_since(Instant::now()).as_millis() as u64;
            // Narrow the step back towards the period by at most a millisecond a reservation;
            // below the period (two callers narrowed at once), widen it back.
            let narrow = seen.map_or(0, |step| {
                (step as i64 - self.period_ms() as i64).min(NARROW_MS)
            });
            match self
                .clock
                .observed(self.item.take_next(now, latest, narrow))
                .await?
            {
                Attempt::Slot(slot, step) => return Ok(Some((slot, step))),
                Attempt::PastCutoff => return Ok(None),
                Attempt::Raced => continue,
                Attempt::Behind(step) => {
                    let step = step.unwrap_or_else(|| self.period_ms());
                    match self.restart(step).await? {
                        Attempt::Slot(slot, step) => return Ok(Some((slot, step))),
                        _ => continue,
                    }
                }
            }
        }
    }

    /// The queue had fallen behind (or never started): start it again just ahead of now,
    /// unless another caller did so first. The first slot is `RESTART_LEAD` ahead so that this
    /// write's own round trip cannot make its create go out late, and so closer to the next
    /// slot than a step.
    async fn restart(&self, step: u64) -> Result<Attempt, ServiceError> {
        let now = self.clock.now_ms();
        self.clock
            .observed(self.item.restart(now, now + RESTART_LEAD_MS, step))
            .await
    }
}
