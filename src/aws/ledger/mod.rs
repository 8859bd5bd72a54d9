//! The ledger: each CA's window and report history in one DynamoDB table.
//!
//! Items (partition key `certificate_authority_arn`, sort key `record`):
//! - `record = "window"`: the CA's window: `next_eligible_at`, the last report
//!   (`last_report_id`, `last_s3_bucket`, `last_s3_key`, `last_format`, `last_requested_at`,
//!   `last_run_id`) and where it stands (`last_report_status`: CREATING until a run has
//!   followed it up, then SUCCESS or FAILED; `last_report_size`, `last_verified_at`), the claim
//!   of a run in progress (`lease_run_id`, `lease_claimed_at`, `lease_expires_at`), the last
//!   error (`last_error_code`, `last_error_message`, `last_error_at`), and `orphan_since` while
//!   a dead run's report may still turn up in the bucket.
//! - `record = "report#<requested_at>#<report id>"`: one per report ever requested, so a query
//!   on the CA with `ScanIndexForward = false` lists them newest first; `status`, `size_bytes`
//!   and `verified_at` once followed up, `recovered` when found in the bucket rather than
//!   recorded by the run that requested it; `expires_at` (epoch seconds) is the table's TTL
//!   attribute. With READ_REPORTS, a SUCCESS report's item also gets what it says:
//!   `certificates`, `certificates_issued` and `certificates_revoked` (since the CA's previous
//!   SUCCESS report), `first_issued` and `first_revoked` (lists of the first ARNs).
//!
//! Instants are RFC 3339 UTC strings (see `time`), compared in condition expressions.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use crate::aws::ServiceError;
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::report::ReportFormat;
use crate::domain::report::{ReportCheck, ReportStatus};
use crate::domain::time::Timestamp;
use crate::domain::window::{self, Lease, PendingReport, Window};

pub mod history;

pub const PARTITION_KEY: &str = "certificate_authority_arn";
pub const SORT_KEY: &str = "record";
pub const WINDOW_RECORD: &str = "window";

/// BatchGetItem's limit on keys per request.
const BATCH_GET_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger table {table}: {code}: {message}")]
pub struct LedgerError {
    pub table: String,
    pub code: String,
    pub message: String,
}

/// A won claim: the run may request this CA's report until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub arn: CaArn,
    pub run_id: String,
    pub expires_at: Timestamp,
    /// The window as it was when the claim was won: a dead run's claim taken over shows here.
    pub previous: Window,
}

#[derive(Debug)]
pub enum ClaimResult {
    Won(Claim),
    /// The condition failed: the CA's window as it stood, to say why.
    Lost(Window),
}

/// A report the service accepted, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    pub report_id: String,
    pub s3_bucket: String,
    pub s3_key: String,
    pub format: ReportFormat,
    pub requested_at: Timestamp,
    pub next_eligible_at: Timestamp,
    /// CREATING for a report just requested; SUCCESS with its size for one found in the bucket.
    pub status: ReportStatus,
    pub size_bytes: Option<u64>,
    /// Found in the bucket, not recorded by the run that requested it.
    pub recovered: bool,
}

#[derive(Clone, Debug)]
pub struct Ledger {
    client: Client,
    table: String,
    retention: Duration,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn instant(item: &HashMap<String, AttributeValue>, name: &str) -> Option<Timestamp> {
    text(item, name).and_then(Timestamp::parse)
}

/// Reads a window item; attributes it does not know are ignored.
pub fn window_from_item(item: &HashMap<String, AttributeValue>) -> Window {
    let lease = match (
        text(item, "lease_run_id"),
        instant(item, "lease_expires_at"),
    ) {
        (Some(run_id), Some(expires_at)) => Some(Lease {
            run_id: run_id.to_owned(),
            expires_at,
            claimed_at: instant(item, "lease_claimed_at"),
        }),
        _ => None,
    };
    let owned = |name| text(item, name).map(str::to_owned);
    Window {
        last_requested_at: instant(item, "last_requested_at"),
        last_report_id: owned("last_report_id"),
        last_s3_bucket: owned("last_s3_bucket"),
        last_s3_key: owned("last_s3_key"),
        last_status: text(item, "last_report_status").and_then(ReportStatus::parse),
        next_eligible_at: instant(item, "next_eligible_at"),
        lease,
        orphan_since: instant(item, "orphan_since"),
    }
}

impl Ledger {
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The DynamoDB client, for the other items this table keeps (`quota`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        e: &SdkError<E>,
    ) -> LedgerError {
        let e = ServiceError::from_sdk(e);
        LedgerError {
            table: self.table.clone(),
            code: e.code,
            message: e.message,
        }
    }

    fn window_key(arn: &CaArn) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PARTITION_KEY.to_owned(), s(arn.as_str())),
            (SORT_KEY.to_owned(), s(WINDOW_RECORD)),
        ])
    }

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
            .update_expression(
                "SET lease_run_id = :run, lease_claimed_at = :now, lease_expires_at = :lease, \
                 #region = :region, account_id = :account",
            )
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
                    Ok(ClaimResult::Lost(old.unwrap_or_default()))
                }
                _ => Err(self.error(&e)),
            },
        }
    }

    /// Records the accepted report and moves the window on, in one transaction: the window item
    /// (only while this run still holds the claim) and the history item.
    pub async fn record(
        &self,
        claim: &Claim,
        run_id: &str,
        report: &ReportRecord,
    ) -> Result<(), LedgerError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| LedgerError {
            table: self.table.clone(),
            code: Code::InvalidRequest.into(),
            message: e.to_string(),
        };
        let window = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(&claim.arn)))
            .update_expression(
                "SET last_report_id = :id, last_s3_bucket = :bucket, last_s3_key = :key, \
                 last_format = :format, last_requested_at = :at, last_run_id = :run, \
                 next_eligible_at = :next, last_report_status = :status \
                 REMOVE lease_run_id, lease_claimed_at, lease_expires_at, last_error_code, \
                 last_error_message, last_error_at, orphan_since, last_report_size, last_verified_at",
            )
            .condition_expression("lease_run_id = :run")
            .expression_attribute_values(":id", s(&report.report_id))
            .expression_attribute_values(":bucket", s(&report.s3_bucket))
            .expression_attribute_values(":key", s(&report.s3_key))
            .expression_attribute_values(":format", s(report.format.as_str()))
            .expression_attribute_values(":at", s(report.requested_at.to_string()))
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":next", s(report.next_eligible_at.to_string()))
            .expression_attribute_values(":status", s(report.status.as_str()))
            .build()
            .map_err(invalid)?;
        let expires_at = report.requested_at.plus(self.retention).epoch_seconds();
        let mut history = Put::builder()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(claim.arn.as_str()))
            .item(
                SORT_KEY,
                s(format!(
                    "report#{}#{}",
                    report.requested_at, report.report_id
                )),
            )
            .item("report_id", s(&report.report_id))
            .item("s3_bucket", s(&report.s3_bucket))
            .item("s3_key", s(&report.s3_key))
            .item("format", s(report.format.as_str()))
            .item("requested_at", s(report.requested_at.to_string()))
            .item("run_id", s(run_id))
            .item("region", s(claim.arn.region()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()))
            .item("status", s(report.status.as_str()))
            .condition_expression("attribute_not_exists(#record)")
            .expression_attribute_names("#record", SORT_KEY);
        if let Some(size) = report.size_bytes {
            history = history.item("size_bytes", AttributeValue::N(size.to_string()));
        }
        if report.recovered {
            history = history.item("recovered", AttributeValue::Bool(true));
        }
        let history = history.build().map_err(invalid)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(window).build())
            .transact_items(TransactWriteItem::builder().put(history).build())
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
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

    /// When the CA's newest SUCCESS report before the one requested at `before` was
    /// requested (READ_REPORTS counts what is new since then): its history item, newest first
    /// under `report#`. `None` when there is none: everything in the report is new.
    pub async fn previous_report_at(
        &self,
        arn: &CaArn,
        before: Timestamp,
    ) -> Result<Option<Timestamp>, LedgerError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            // Sort keys `report#<requested_at>#<id>` of earlier instants sort below
            // `report#<before>`; the report itself (`report#<before>#…`) sorts above it.
            .key_condition_expression("#pk = :arn AND #record BETWEEN :first AND :before")
            .filter_expression("#status = :success")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#record", SORT_KEY)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":arn", s(arn.as_str()))
            .expression_attribute_values(":first", s("report#"))
            .expression_attribute_values(":before", s(format!("report#{before}")))
            .expression_attribute_values(":success", s(ReportStatus::Success.as_str()))
            .projection_expression("#record")
            .scan_index_forward(false)
            // The previous report is almost always the newest item below this one: small
            // pages read a few items, not up to 1 MB of the CA's history, for the one wanted.
            .into_paginator()
            .page_size(4)
            .items()
            .send();
        let Some(item) = items.next().await else {
            return Ok(None);
        };
        let item = item.map_err(|e| self.error(&e))?;
        let record = item.get(SORT_KEY).and_then(|v| v.as_s().ok());
        Ok(record
            .and_then(|r| r.strip_prefix("report#")?.split('#').next())
            .and_then(Timestamp::parse))
    }

    /// Writes what the follow-up of a report found, on the window (while that report is still
    /// the CA's last) and on its history item. A FAILED report reopens the window at
    /// `reopen_at`, so the CA is requested again once the service allows it.
    pub async fn verified(
        &self,
        arn: &CaArn,
        report: &PendingReport,
        check: &ReportCheck,
        reopen_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| LedgerError {
            table: self.table.clone(),
            code: Code::InvalidRequest.into(),
            message: e.to_string(),
        };
        let window = self
            .verified_window(arn, report, check, reopen_at, now)
            .build()
            .map_err(invalid)?;
        let history = self
            .verified_history(arn, report, check, now)
            .build()
            .map_err(invalid)?;
        match self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(window).build())
            .transact_items(TransactWriteItem::builder().update(history).build())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A newer report became the CA's last meanwhile, or the history item is gone:
            // nothing of this follow-up is left to write.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error(&e)),
        }
    }

    /// The window's part of a follow-up: only while `report` is still the CA's last.
    fn verified_window(
        &self,
        arn: &CaArn,
        report: &PendingReport,
        check: &ReportCheck,
        reopen_at: Option<Timestamp>,
        now: Timestamp,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        let mut set = vec!["last_report_status = :status", "last_verified_at = :now"];
        let mut window = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(arn)))
            .condition_expression("last_report_id = :id")
            .expression_attribute_values(":id", s(&report.report_id))
            .expression_attribute_values(":status", s(check.status.as_str()))
            .expression_attribute_values(":now", s(now.to_string()));
        if let Some(size) = check.size_bytes {
            set.push("last_report_size = :size");
            window =
                window.expression_attribute_values(":size", AttributeValue::N(size.to_string()));
        }
        if let Some(reopen) = reopen_at {
            set.push(
                "next_eligible_at = :reopen, last_error_code = :code, last_error_message = :detail, last_error_at = :now",
            );
            window = window
                .expression_attribute_values(":reopen", s(reopen.to_string()))
                .expression_attribute_values(":code", s(Code::AuditReportFailed.as_str()))
                .expression_attribute_values(
                    ":detail",
                    s(check.detail.clone().unwrap_or_default()),
                );
        }
        window.update_expression(format!("SET {}", set.join(", ")))
    }

    /// The history item's part of a follow-up: never made out of nothing (say, one TTL
    /// already removed).
    fn verified_history(
        &self,
        arn: &CaArn,
        report: &PendingReport,
        check: &ReportCheck,
        now: Timestamp,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        let mut set = vec!["#status = :status", "verified_at = :now"];
        let record = format!("report#{}#{}", report.requested_at, report.report_id);
        let mut history = Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(arn.as_str()))
            .key(SORT_KEY, s(record))
            .condition_expression("attribute_exists(#record)")
            .expression_attribute_names("#record", SORT_KEY)
            // `status` is a DynamoDB reserved word.
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(check.status.as_str()))
            .expression_attribute_values(":now", s(now.to_string()));
        if let Some(size) = check.size_bytes {
            set.push("size_bytes = :size");
            history =
                history.expression_attribute_values(":size", AttributeValue::N(size.to_string()));
        }
        if let Some(detail) = &check.detail {
            set.push("detail = :detail");
            history = history.expression_attribute_values(":detail", s(detail));
        }
        if let Some(c) = &check.contents {
            set.push(
                "certificates = :certs, certificates_issued = :issued, \
                 certificates_revoked = :revoked, first_issued = :first_issued, \
                 first_revoked = :first_revoked",
            );
            let n = |v: u64| AttributeValue::N(v.to_string());
            let arns = |v: &[String]| AttributeValue::L(v.iter().map(|a| s(a.as_str())).collect());
            history = history
                .expression_attribute_values(":certs", n(c.certificates))
                .expression_attribute_values(":issued", n(c.issued_since))
                .expression_attribute_values(":revoked", n(c.revoked_since))
                .expression_attribute_values(":first_issued", arns(&c.first_issued))
                .expression_attribute_values(":first_revoked", arns(&c.first_revoked));
        }
        history.update_expression(format!("SET {}", set.join(", ")))
    }
}
