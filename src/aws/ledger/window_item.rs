//! The window item of each CA: read in batches, claimed with one conditional write, released.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure,
};

use super::{
    BATCH_GET_LIMIT, Claim, ClaimResult, Ledger, LedgerError, PARTITION_KEY, s, text,
    window_from_item,
};
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::time::Timestamp;
use crate::domain::window;
use crate::domain::window::Window;

/// What a won claim writes: the lease, and the CA's region and account, which key the
/// `ca-windows` index a coverage request finds the ledger's CAs by.
pub const CLAIM_WRITES: &str = "SET lease_run_id = :run, lease_claimed_at = :now, \
     lease_expires_at = :lease, #region = :region, account_id = :account";

impl Ledger {
    /// The windows of many CAs, 100 keys per BatchGetItem, strongly consistent so that a run
    /// right after another sees its records. CAs without an item are absent from the map.
    pub async fn windows(&self, arns: &[CaArn]) -> Result<HashMap<String, Window>, LedgerError> {
        let mut found = HashMap::with_capacity(arns.len());
        for chunk in arns.chunks(BATCH_GET_LIMIT) {
            let mut keys = KeysAndAttributes::builder().consistent_read(true);
            for arn in chunk {
                keys = keys.keys(Self::window_key(arn));
            }
            let mut pending = Some(keys.build().map_err(|e| LedgerError {
                table: self.table.clone(),
                code: Code::InvalidRequest.into(),
                message: e.to_string(),
            })?);
            let mut attempt = 0u32;
            while let Some(request) = pending.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| self.error(&e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(arn) = text(&item, PARTITION_KEY) {
                        found.insert(arn.to_owned(), window_from_item(&item));
                    }
                }
                // Keys DynamoDB did not get to (throughput) come back to be asked again, with backoff.
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys.is_empty());
                if pending.is_some() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(LedgerError {
                            table: self.table.clone(),
                            code: Code::UnprocessedKeys.into(),
                            message: "BatchGetItem left keys unprocessed after 8 attempts".into(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
            }
        }
        Ok(found)
    }

    /// Claims the CA's window with one conditional write: it wins only if the window has
    /// opened and no other run holds a live lease. A crashed run's lease simply expires, so
    /// the CA is free again at `expires_at` without anyone cleaning up.
    pub async fn claim(
        &self,
        arn: &CaArn,
        run_id: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<ClaimResult, LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(arn)))
            .update_expression(CLAIM_WRITES)
            .condition_expression(window::CLAIM_CONDITION)
            // `region` is a DynamoDB reserved word.
            .expression_attribute_names("#region", "region")
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":lease", s(expires_at.to_string()))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":region", s(arn.region()))
            .expression_attribute_values(":account", s(arn.account()))
            // Why the claim lost comes back with the failure, and what it took over with the
            // success (a dead run's claim), without a second read.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(ClaimResult::Won(Claim {
                arn: arn.clone(),
                run_id: run_id.to_owned(),
                expires_at,
                previous: out
                    .attributes
                    .as_ref()
                    .map(window_from_item)
                    .unwrap_or_default(),
            })),
            Err(e) => match e.as_service_error() {
                Some(service) if service.is_conditional_check_failed_exception() => {
                    let old = match service {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                            c.item.as_ref().map(window_from_item)
                        }
                        _ => None,
                    };
                    let old = old.unwrap_or_default();
                    // The SDK's retry of a claim whose answer was lost finds this very claim.
                    match old.own_claim_answer_lost(run_id, now, expires_at) {
                        Some(previous) => Ok(ClaimResult::Won(Claim {
                            arn: arn.clone(),
                            run_id: run_id.to_owned(),
                            expires_at,
                            previous,
                        })),
                        None => Ok(ClaimResult::Lost(old)),
                    }
                }
                _ => Err(self.error(&e)),
            },
        }
    }

    /// Gives the claim back without moving the window forward, keeping the error (if any) on
    /// the CA's item; `next_eligible_at` is set only when the service told us when to return.
    pub async fn release(
        &self,
        claim: &Claim,
        error: Option<(&str, &str)>,
        next_eligible_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        // A dead run's claim that this one took over may still have a report on its way to
        // the bucket: keep the instant so the next claim looks for it again.
        let orphan_since = claim.previous.unrecorded_since(now);
        let mut set = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(&claim.arn)))
            .condition_expression("lease_run_id = :run")
            .expression_attribute_values(":run", s(&claim.run_id));
        if let Some((code, message)) = error {
            set.push(
                "last_error_code = :code, last_error_message = :message, last_error_at = :now",
            );
            request = request
                .expression_attribute_values(":code", s(code))
                .expression_attribute_values(":message", s(message))
                .expression_attribute_values(":now", s(now.to_string()));
        }
        if let Some(next) = next_eligible_at {
            set.push("next_eligible_at = :next");
            request = request.expression_attribute_values(":next", s(next.to_string()));
        }
        if let Some(since) = orphan_since {
            set.push("orphan_since = :orphan");
            request = request.expression_attribute_values(":orphan", s(since.to_string()));
        }
        let mut expression =
            String::from("REMOVE lease_run_id, lease_claimed_at, lease_expires_at");
        if !set.is_empty() {
            expression = format!("SET {} {expression}", set.join(", "));
        }
        match request.update_expression(expression).send().await {
            Ok(_) => Ok(()),
            // The lease already ran out and another run took the CA: nothing of ours to release.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(&e)),
        }
    }
}
