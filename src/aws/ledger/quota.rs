//! The ledger's quota items: one per account-region, holding the next free create slot
//! (`next_slot`, epoch milliseconds) and the spacing of slots (`step_ms`), reserved with one
//! atomic write (see `pacing::shared` for the queue these writes make).
//!
//! Every answer also says what time the service's clock gave it (`Dated`): the shared pacer
//! reads its slots on that clock, not on its host's (see `pacing::clock`).
//!
//! Item: partition key `quota#CreateCertificateAuthorityAuditReport#<account>#<region>`, sort
//! key `quota` (a CA's items are keyed by its ARN, which starts `arn:`, so they never collide).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::aws::ServiceError;
use crate::aws::ledger::{PARTITION_KEY, SORT_KEY};

const QUOTA_RECORD: &str = "quota";

fn number(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> Option<u64> {
    item?.get(name)?.as_n().ok()?.parse().ok()
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// An answer of the service, with the second its clock said when it answered (the HTTP
/// `Date` header; `None` if it had none, or no answer came).
pub struct Dated<T> {
    pub result: Result<T, ServiceError>,
    pub server_second: Option<u64>,
}

/// Reads the `Date` of one call's answer (of its last attempt, when the SDK retried).
#[derive(Clone, Debug, Default)]
struct ServerDate(Arc<Mutex<Option<u64>>>);

impl ServerDate {
    fn with<T>(&self, result: Result<T, ServiceError>) -> Dated<T> {
        let server_second = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        Dated {
            result,
            server_second,
        }
    }
}

impl Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "ServerDate"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let second = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| DateTime::from_str(d, DateTimeFormat::HttpDate).ok())
            .and_then(|d| u64::try_from(d.secs()).ok());
        if second.is_some() {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = second;
        }
        Ok(())
    }
}

/// What one reservation attempt came to.
pub enum Attempt {
    /// This caller's slot, and the step as it stood.
    Slot(u64, u64),
    /// The queue is past the caller's cutoff: no slot for it.
    PastCutoff,
    /// The queue had fallen behind now, or was never started; its step if it has one.
    Behind(Option<u64>),
    /// Another caller restarted the queue first: ask again.
    Raced,
}

/// The quota item of one account-region's creates.
#[derive(Clone, Debug)]
pub struct QuotaItem {
    client: Client,
    table: String,
    key: HashMap<String, AttributeValue>,
}

impl QuotaItem {
    pub fn new(client: Client, table: &str, account: &str, region: &str) -> Self {
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
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Widens the step by `widen` ms while it is under `widest` (one write; a step already at
    /// its widest is no error).
    pub async fn widen(&self, widen: u64, widest: u64) -> Dated<()> {
        let date = ServerDate::default();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            .update_expression("SET step_ms = step_ms + :widen")
            .condition_expression("step_ms < :widest")
            .expression_attribute_values(":widen", n(widen))
            .expression_attribute_values(":widest", n(widest))
            .customize()
            .interceptor(date.clone())
            .send()
            .await;
        date.with(match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(ServiceError::from_sdk(&e)),
        })
    }

    /// Asks the service the time, and nothing else: one eventually consistent read of the
    /// item's key (the smallest read there is), for its answer's `Date`.
    pub async fn probe(&self) -> Dated<()> {
        let date = ServerDate::default();
        let result = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            .projection_expression("#k")
            .expression_attribute_names("#k", PARTITION_KEY)
            .customize()
            .interceptor(date.clone())
            .send()
            .await;
        date.with(result.map(|_| ()).map_err(|e| ServiceError::from_sdk(&e)))
    }

    /// The slot at the head of the queue, when the queue is ahead of `now` and the slot is
    /// within `latest`: one atomic write moves the queue on by one step (narrowed by `narrow`).
    pub async fn take_next(&self, now: u64, latest: u64, narrow: i64) -> Dated<Attempt> {
        let date = ServerDate::default();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            // Both right-hand sides read the item as it was: the slot moves on by the old step.
            .update_expression("SET next_slot = next_slot + step_ms, step_ms = step_ms - :narrow")
            .condition_expression("next_slot BETWEEN :now AND :latest")
            .expression_attribute_values(":narrow", n(narrow))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":latest", n(latest))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .interceptor(date.clone())
            .send()
            .await;
        date.with(match result {
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
        })
    }

    /// Starts the queue again at `slot` (the caller's) with `step`, unless another caller did
    /// so first or the queue is not behind `now`.
    pub async fn restart(&self, now: u64, slot: u64, step: u64) -> Dated<Attempt> {
        let date = ServerDate::default();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key.clone()))
            .update_expression("SET next_slot = :next, step_ms = if_not_exists(step_ms, :step)")
            .condition_expression("attribute_not_exists(next_slot) OR next_slot < :now")
            .expression_attribute_values(":next", n(slot + step))
            .expression_attribute_values(":step", n(step))
            .expression_attribute_values(":now", n(now))
            .customize()
            .interceptor(date.clone())
            .send()
            .await;
        date.with(match result {
            Ok(_) => Ok(Attempt::Slot(slot, step)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Attempt::Raced)
            }
            Err(e) => Err(ServiceError::from_sdk(&e)),
        })
    }
}
