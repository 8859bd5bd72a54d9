//! A report accepted: the window moved on and its history item written in one transaction;
//! and the CA's previous SUCCESS report, for what is new since.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::{
    Claim, Ledger, LedgerError, PARTITION_KEY, PIN_ATTRIBUTES, ReportRecord, SORT_KEY,
    pin_attributes, s,
};
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::report::ReportStatus;
use crate::domain::time::Timestamp;

impl Ledger {
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
        // The last report's pin: set for a report found in the bucket, removed for a new one
        // (the follow-up sets it once the object is there).
        let pin = pin_attributes(report.pin.as_ref());
        let pinned: Vec<String> = pin
            .iter()
            .map(|(n, _)| format!("last_{n} = :{n}"))
            .collect();
        let unpinned: Vec<String> = PIN_ATTRIBUTES
            .iter()
            .filter(|n| !pin.iter().any(|(p, _)| p == *n))
            .map(|n| format!(", last_{n}"))
            .collect();
        let mut window = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(&claim.arn)))
            .update_expression(format!(
                "SET last_report_id = :id, last_s3_bucket = :bucket, last_s3_key = :key, \
                 last_format = :format, last_requested_at = :at, last_run_id = :run, \
                 next_eligible_at = :next, last_report_status = :status{} \
                 REMOVE lease_run_id, lease_claimed_at, lease_expires_at, last_error_code, \
                 last_error_message, last_error_at, orphan_since, last_report_size, \
                 last_verified_at{}",
                pinned.iter().map(|p| format!(", {p}")).collect::<String>(),
                unpinned.concat(),
            ))
            .condition_expression("lease_run_id = :run")
            .expression_attribute_values(":id", s(&report.report_id))
            .expression_attribute_values(":bucket", s(&report.s3_bucket))
            .expression_attribute_values(":key", s(&report.s3_key))
            .expression_attribute_values(":format", s(report.format.as_str()))
            .expression_attribute_values(":at", s(report.requested_at.to_string()))
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":next", s(report.next_eligible_at.to_string()))
            .expression_attribute_values(":status", s(report.status.as_str()));
        for (name, value) in pin {
            window = window.expression_attribute_values(format!(":{name}"), value);
        }
        let window = window.build().map_err(invalid)?;
        let history = self
            .history_item(claim, run_id, report)
            .build()
            .map_err(invalid)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(window).build())
            .transact_items(TransactWriteItem::builder().put(history).build())
            .send()
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    /// The history item of a report just recorded: never written twice.
    fn history_item(
        &self,
        claim: &Claim,
        run_id: &str,
        report: &ReportRecord,
    ) -> aws_sdk_dynamodb::types::builders::PutBuilder {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(history_item(
                &claim.arn,
                run_id,
                report,
                self.retention,
            )))
            .condition_expression("attribute_not_exists(#record)")
            .expression_attribute_names("#record", SORT_KEY)
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
}

/// A report's history item as `Ledger::record` writes it: the one place its attributes are
/// named (the integration tests and the benchmarks seed a history through it).
pub fn history_item(
    arn: &CaArn,
    run_id: &str,
    report: &ReportRecord,
    retention: Duration,
) -> HashMap<String, AttributeValue> {
    let expires_at = report.requested_at.plus(retention).epoch_seconds();
    let record = format!("report#{}#{}", report.requested_at, report.report_id);
    let mut item = HashMap::from([
        (PARTITION_KEY.to_owned(), s(arn.as_str())),
        (SORT_KEY.to_owned(), s(record)),
        ("report_id".to_owned(), s(&report.report_id)),
        ("s3_bucket".to_owned(), s(&report.s3_bucket)),
        ("s3_key".to_owned(), s(&report.s3_key)),
        ("format".to_owned(), s(report.format.as_str())),
        (
            "requested_at".to_owned(),
            s(report.requested_at.to_string()),
        ),
        ("run_id".to_owned(), s(run_id)),
        ("region".to_owned(), s(arn.region())),
        (
            super::TTL_ATTRIBUTE.to_owned(),
            AttributeValue::N(expires_at.to_string()),
        ),
        ("status".to_owned(), s(report.status.as_str())),
    ]);
    if let Some(size) = report.size_bytes {
        item.insert("size_bytes".into(), AttributeValue::N(size.to_string()));
    }
    if report.recovered {
        item.insert("recovered".into(), AttributeValue::Bool(true));
    }
    for (name, value) in pin_attributes(report.pin.as_ref()) {
        item.insert(name.to_owned(), value);
    }
    item
}

/// The window item a won claim leaves behind once released, with nothing recorded: the key,
/// and the account and region the `ca-windows` index is keyed by (for seeding a CA the
/// ledger knows but the listing no longer shows).
pub fn window_item(arn: &CaArn) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(arn.as_str())),
        (SORT_KEY.to_owned(), s(super::WINDOW_RECORD)),
        ("account_id".to_owned(), s(arn.account())),
        ("region".to_owned(), s(arn.region())),
    ])
}
