//! What the follow-up of a report found, written on the window and the history item.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::{Ledger, LedgerError, PARTITION_KEY, SORT_KEY, pin_attributes, s};
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::ids::bounded;
use crate::domain::report::ReportCheck;
use crate::domain::time::Timestamp;
use crate::domain::window::PendingReport;

/// The pin's attributes as SET clauses, in the order of `ledger::PIN_ATTRIBUTES`: on the
/// window they are the CA's last report's (`last_…`), on the history item the report's own.
const PIN_SET_ON_WINDOW: [&str; 4] = [
    "last_version_id = :version_id",
    "last_etag = :etag",
    "last_checksum = :checksum",
    "last_sha256 = :sha256",
];
const PIN_SET_ON_HISTORY: [&str; 4] = [
    "version_id = :version_id",
    "etag = :etag",
    "checksum = :checksum",
    "sha256 = :sha256",
];

/// A follow-up's detail as the ledger keeps it: what it says fits a few lines; a value quoted
/// from outside is cut before an item nears DynamoDB's 400 KB item limit.
const DETAIL_MAX: usize = 2_000;

fn pin_index(name: &str) -> usize {
    super::PIN_ATTRIBUTES
        .iter()
        .position(|n| *n == name)
        .expect("a pin attribute")
}

impl Ledger {
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
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(window.clone()).build())
            .transact_items(TransactWriteItem::builder().update(history).build())
            .send()
            .await;
        let Err(e) = written else {
            return Ok(());
        };
        let Some(canceled) = e.as_service_error().and_then(|s| match s {
            TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        }) else {
            return Err(self.error(&e));
        };
        // The reasons come in the order of the items: the window, then the history item.
        let failed = |i: usize| {
            canceled
                .cancellation_reasons()
                .get(i)
                .and_then(|r| r.code())
                .is_some_and(|c| c == "ConditionalCheckFailed")
        };
        if failed(0) || !failed(1) {
            // A newer report became the CA's last meanwhile: nothing of this follow-up is
            // left to write.
            return Ok(());
        }
        // The history item is gone (TTL deletes an item some time after it expires: DynamoDB
        // developer guide, "Working with expired items") while the window still names the
        // report: the window is written alone, so that it does not stay CREATING and get
        // followed up again on every run.
        self.window_alone(&window).await
    }

    /// The window's part of a follow-up, written on its own (its condition still holds it to
    /// the report followed up).
    async fn window_alone(&self, window: &Update) -> Result<(), LedgerError> {
        let mut alone = self
            .client
            .update_item()
            .table_name(window.table_name())
            .set_key(Some(window.key().clone()))
            .update_expression(window.update_expression())
            .set_condition_expression(window.condition_expression().map(str::to_owned))
            .set_expression_attribute_values(window.expression_attribute_values().cloned());
        if let Some(names) = window.expression_attribute_names() {
            alone = alone.set_expression_attribute_names(Some(names.clone()));
        }
        match alone.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
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
        for (name, value) in pin_attributes(check.pin.as_ref()) {
            set.push(PIN_SET_ON_WINDOW[pin_index(name)]);
            window = window.expression_attribute_values(format!(":{name}"), value);
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
                    s(bounded(
                        check.detail.as_deref().unwrap_or_default(),
                        DETAIL_MAX,
                    )),
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
        for (name, value) in pin_attributes(check.pin.as_ref()) {
            set.push(PIN_SET_ON_HISTORY[pin_index(name)]);
            history = history.expression_attribute_values(format!(":{name}"), value);
        }
        if let Some(detail) = &check.detail {
            set.push("detail = :detail");
            history =
                history.expression_attribute_values(":detail", s(bounded(detail, DETAIL_MAX)));
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
