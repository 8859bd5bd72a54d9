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
//! attribute `next_slot`: the epoch millisecond of the next free slot.
//!
//! Reserving costs one write a create while the queue is ahead of now (`next_slot` moved on by
//! one step, the old value being this caller's slot), and two when it had fallen behind (the
//! first fails its condition, the second starts the queue again at now). A slot reserved by an
//! invocation that then dies is simply not used: one second lost, nothing held.
//!
//! The slots are instants of the wall clock, so invocations on different hosts agree on them
//! only as far as their clocks do: Lambda's hosts keep theirs by the Amazon Time Sync Service
//! (well under a millisecond apart), and a throttle caused by skew is retried in a later slot.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::authorities::{Pacer, ServiceError};
use crate::ledger::{PARTITION_KEY, SORT_KEY};

const QUOTA_RECORD: &str = "quota";

/// How much a throttled create widens the step this caller reserves, how far it can widen,
/// and how much each accepted create narrows it back. The widening is local (each caller
/// widens what follows its own slots), so it costs no extra write.
const WIDEN: Duration = Duration::from_millis(20);
const MAX_EXTRA: Duration = Duration::from_millis(200);
const NARROW: Duration = Duration::from_millis(1);

/// The shared create slots of one account-region, as this container reserves them.
#[derive(Debug)]
pub struct SharedPacer {
    client: Client,
    table: String,
    key: HashMap<String, AttributeValue>,
    period: Duration,
    /// Widening after throttles, and the order of this container's callers: reservations of
    /// one container go out one at a time, so its CAs get slots in the order they asked.
    extra: Mutex<Duration>,
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
    Slot(u64),
    /// The queue is past the caller's cutoff: no slot for it.
    PastCutoff,
    /// The queue had fallen behind now, or was never started.
    Behind,
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
            extra: Mutex::new(Duration::ZERO),
            fallback: Pacer::new(period),
        }
    }

    /// Waits for the next shared slot. Returns `false` at once, reserving nothing, if that slot
    /// would come after `cutoff`.
    pub async fn wait_turn(&self, cutoff: Instant) -> bool {
        let slot = {
            let extra = self.extra.lock().await;
            let step = (self.period + *extra).as_millis() as u64;
            match self.reserve(step, cutoff).await {
                Ok(Some(slot)) => slot,
                Ok(None) => return false,
                Err(e) => {
                    drop(extra);
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

    /// The service throttled a create made in a slot of this pacer: reserve wider steps.
    pub async fn throttled(&self) {
        let mut extra = self.extra.lock().await;
        *extra = (*extra + WIDEN).min(MAX_EXTRA);
    }

    /// The service accepted a create: narrow the steps back towards the period.
    pub async fn accepted(&self) {
        let mut extra = self.extra.lock().await;
        *extra = extra.saturating_sub(NARROW);
    }

    async fn reserve(&self, step: u64, cutoff: Instant) -> Result<Option<u64>, ServiceError> {
        loop {
            let now = now_ms();
            let latest = now + cutoff.saturating_duration_since(Instant::now()).as_millis() as u64;
            if cutoff <= Instant::now() {
                return Ok(None);
            }
            match self.take_next(step, now, latest).await? {
                Attempt::Slot(slot) => return Ok(Some(slot)),
                Attempt::PastCutoff => return Ok(None),
                Attempt::Raced => continue,
                Attempt::Behind => match self.restart(step, now).await? {
                    Attempt::Slot(slot) => return Ok(Some(slot)),
                    _ => continue,
                },
            }
        }
    }

    /// The slot at the head of the queue, when the queue is ahead of now and the slot is
    /// within the cutoff: one atomic write moves the queue on by one step.
    async fn take_next(&self, step: u64, now: u64, latest: u64) -> Result<Attempt, ServiceError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            .update_expression("SET next_slot = next_slot + :step")
            .condition_expression("next_slot BETWEEN :now AND :latest")
            .expression_attribute_values(":step", AttributeValue::N(step.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":latest", AttributeValue::N(latest.to_string()))
            .return_values(ReturnValue::UpdatedOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                Ok(number(out.attributes.as_ref(), "next_slot")
                    .map_or(Attempt::Raced, Attempt::Slot))
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(match number(c.item.as_ref(), "next_slot") {
                        Some(next) if next > latest => Attempt::PastCutoff,
                        _ => Attempt::Behind,
                    })
                }
                _ => Err(ServiceError::from_sdk(&e)),
            },
        }
    }

    /// The queue had fallen behind (or never started): start it again at now, unless another
    /// caller did so first.
    async fn restart(&self, step: u64, now: u64) -> Result<Attempt, ServiceError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            .update_expression("SET next_slot = :next")
            .condition_expression("attribute_not_exists(next_slot) OR next_slot < :now")
            .expression_attribute_values(":next", AttributeValue::N((now + step).to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Attempt::Slot(now)),
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
