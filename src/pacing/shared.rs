//! The create quota of one account-region, shared by every invocation wherever it runs.
//!
//! The service allows one CreateCertificateAuthorityAuditReport a second per account and
//! region, counted for all callers together. Overlapping invocations (the schedule and a
//! person, Lambda's retry, a work item delivered twice, two stacks on one account) must
//! share that second, not each take it: so the next free create slot is kept in the ledger
//! table, one small item per account-region, and reserved with one atomic write.
//!
//! Item: partition key `quota#CreateCertificateAuthorityAuditReport#<account>#<region>`, sort
//! key `quota` (a CA's items are keyed by its ARN, which starts `arn:`, so they never collide),
//! attributes `next_slot` (the epoch millisecond of the next free slot) and `step_ms` (the
//! spacing of slots: the period, widened after throttling).
//!
//! Reserving costs one write a create while the queue is ahead of now (`next_slot` moved on by
//! `step_ms`, the old value being this caller's slot), and two when it had fallen behind (the
//! first fails its condition, the second starts the queue again at now). A throttled create
//! costs one more write, widening `step_ms` for every caller; the narrowing back rides on the
//! reservations. A slot reserved by an invocation that then dies is simply not used: one
//! second lost, nothing held.
//!
//! The slots are instants of the wall clock, so invocations on different hosts agree on them
//! only as far as their clocks do. How closely Lambda's hosts agree is not documented
//! (**assumed**: synchronised, as EC2 hosts are by the Amazon Time Sync Service); a throttle
//! that skew causes widens the shared step and is retried in a later slot, so skew costs time,
//! never a CA.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::aws::ServiceError;
use crate::aws::ledger::{PARTITION_KEY, SORT_KEY};
use crate::pacing::{MAX_EXTRA, NARROW, Pacer, RESTART_LEAD, WIDEN};

const QUOTA_RECORD: &str = "quota";

// The shared queue's numbers are the local pacer's (`pacing`), in the milliseconds the
// ledger's item keeps.
const WIDEN_MS: u64 = WIDEN.as_millis() as u64;
const MAX_EXTRA_MS: u64 = MAX_EXTRA.as_millis() as u64;
const NARROW_MS: i64 = NARROW.as_millis() as i64;
const RESTART_LEAD_MS: u64 = RESTART_LEAD.as_millis() as u64;

/// The shared create slots of one account-region, as this container reserves them.
#[derive(Debug)]
pub struct SharedPacer {
    client: Client,
    table: String,
    key: HashMap<String, AttributeValue>,
    period: Duration,
    /// The shared step as last seen; its lock also orders this container's callers:
    /// reservations go out one at a time, so its CAs get slots in the order they asked.
    seen_step: Mutex<Option<u64>>,
    /// Used only when the ledger cannot be reached for a slot: the invocation goes on at the
    /// quota's pace on its own rather than stopping (the claim already needed the ledger).
    fallback: Pacer,
}

/// Milliseconds since the epoch, now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn number(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> Option<u64> {
    item?.get(name)?.as_n().ok()?.parse().ok()
}

/// What one reservation attempt came to.
enum Attempt {
    /// This caller's slot, and the step as it stood.
    Slot(u64, u64),
    /// The queue is past the caller's cutoff: no slot for it.
    PastCutoff,
    /// The queue had fallen behind now, or was never started; its step if it has one.
    Behind(Option<u64>),
    /// Another caller restarted the queue first: ask again.
    Raced,
}

impl SharedPacer {
    pub fn new(client: Client, table: &str, account: &str, region: &str, period: Duration) -> Self {
        let key = HashMap::from([
            (
                PARTITION_KEY.to_owned(),
                AttributeValue::S(format!(
                    "quota#CreateCertificateAuthorityAuditReport#{account}#{region}"
                )),
            ),
            (
                SORT_KEY.to_owned(),
                AttributeValue::S(QUOTA_RECORD.to_owned()),
            ),
        ]);
        Self {
            client,
            table: table.to_owned(),
            key,
            period,
            seen_step: Mutex::new(None),
            fallback: Pacer::new(period),
        }
    }

    /// Waits for the next shared slot. Returns `false` at once, reserving nothing, if that slot
    /// would come after `cutoff`.
    pub async fn wait_turn(&self, cutoff: Instant) -> bool {
        let slot = {
            let mut seen = self.seen_step.lock().await;
            match self.reserve(*seen, cutoff).await {
                Ok(Some((slot, step))) => {
                    *seen = Some(step);
                    slot
                }
                Ok(None) => return false,
                Err(e) => {
                    drop(seen);
                    tracing::warn!(
                        table = %self.table,
                        "could not reserve a shared create slot ({e}); pacing this invocation alone"
                    );
                    return self.fallback.wait_turn(cutoff).await;
                }
            }
        };
        let wait = Duration::from_millis(slot.saturating_sub(now_ms()));
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
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            .update_expression("SET step_ms = step_ms + :widen")
            .condition_expression("step_ms < :widest")
            .expression_attribute_values(":widen", AttributeValue::N(WIDEN_MS.to_string()))
            .expression_attribute_values(":widest", AttributeValue::N(widest.to_string()))
            .send()
            .await;
        if let Err(e) = result
            && !e
                .as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception())
        {
            let e = ServiceError::from_sdk(&e);
            tracing::warn!(table = %self.table, "could not widen the shared create step: {e}");
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
            let now = now_ms();
            let latest = now + cutoff.saturating_duration_since(Instant::now()).as_millis() as u64;
            // Narrow the step back towards the period by at most a millisecond a reservation;
            // below the period (two callers narrowed at once), widen it back.
            let narrow = seen.map_or(0, |step| {
                (step as i64 - self.period_ms() as i64).min(NARROW_MS)
            });
            match self.take_next(now, latest, narrow).await? {
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

    /// The slot at the head of the queue, when the queue is ahead of now and the slot is
    /// within the cutoff: one atomic write moves the queue on by one step.
    async fn take_next(&self, now: u64, latest: u64, narrow: i64) -> Result<Attempt, ServiceError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            // Both right-hand sides read the item as it was: the slot moves on by the old step.
            .update_expression("SET next_slot = next_slot + step_ms, step_ms = step_ms - :narrow")
            .condition_expression("next_slot BETWEEN :now AND :latest")
            .expression_attribute_values(":narrow", AttributeValue::N(narrow.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":latest", AttributeValue::N(latest.to_string()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let old = out.attributes.as_ref();
                Ok(match (number(old, "next_slot"), number(old, "step_ms")) {
                    (Some(slot), Some(step)) => Attempt::Slot(slot, step),
                    _ => Attempt::Raced,
                })
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    let old = c.item.as_ref();
                    Ok(match number(old, "next_slot") {
                        Some(next) if next > latest => Attempt::PastCutoff,
                        _ => Attempt::Behind(number(old, "step_ms")),
                    })
                }
                _ => Err(ServiceError::from_sdk(&e)),
            },
        }
    }

    /// The queue had fallen behind (or never started): start it again just ahead of now,
    /// unless another caller did so first. The first slot is `RESTART_LEAD` ahead so that this
    /// write's own round trip cannot make its create go out late, and so closer to the next
    /// slot than a step.
    async fn restart(&self, step: u64) -> Result<Attempt, ServiceError> {
        let now = now_ms();
        let slot = now + RESTART_LEAD_MS;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            .update_expression("SET next_slot = :next, step_ms = if_not_exists(step_ms, :step)")
            .condition_expression("attribute_not_exists(next_slot) OR next_slot < :now")
            .expression_attribute_values(":next", AttributeValue::N((slot + step).to_string()))
            .expression_attribute_values(":step", AttributeValue::N(step.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Attempt::Slot(slot, step)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Attempt::Raced)
            }
            Err(e) => Err(ServiceError::from_sdk(&e)),
        }
    }
}
