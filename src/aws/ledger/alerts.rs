//! The alert a CA's window remembers (`alert_kind`, `alert_raised_at`, `overdue_alerted_at`),
//! so that an overdue CA is announced once per episode and its next SUCCESS report is
//! announced as "audited again" once, whichever of several overlapping runs sees it: each is
//! one conditional write, and only the run whose write wins sends the event. And the CA's last
//! SUCCESS report from its history, for a window whose last report is not one.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{Ledger, LedgerError, PARTITION_KEY, SORT_KEY, s, text};
use crate::domain::alerts::{AlertKind, LastSuccess, RaisedAlert};
use crate::domain::arn::CaArn;
use crate::domain::report::ReportStatus;
use crate::domain::time::Timestamp;

/// The alert a window item remembers, if any.
pub fn raised(item: &HashMap<String, AttributeValue>) -> Option<RaisedAlert> {
    Some(RaisedAlert {
        kind: AlertKind::parse(text(item, "alert_kind")?)?,
        raised_at: Timestamp::parse(text(item, "alert_raised_at")?)?,
    })
}

fn conditional_failed<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    aws_sdk_dynamodb::error::ProvideErrorMetadata::code(e)
        == Some("ConditionalCheckFailedException")
}

impl Ledger {
    /// Remembers that `kind` was raised about the CA at `now`. For `Overdue`, only once until
    /// the CA is audited again: `Ok(false)` when an earlier run already raised it (no event
    /// then). An `AuditFailed` is raised for each failure, and always answers `Ok(true)`.
    pub async fn raise_alert(
        &self,
        arn: &CaArn,
        kind: AlertKind,
        now: Timestamp,
    ) -> Result<bool, LedgerError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(arn)))
            .expression_attribute_values(":kind", s(kind.as_str()))
            .expression_attribute_values(":now", s(now.to_string()));
        request = if kind == AlertKind::Overdue {
            request
                .update_expression(
                    "SET alert_kind = :kind, alert_raised_at = :now, overdue_alerted_at = :now",
                )
                .condition_expression("attribute_not_exists(overdue_alerted_at)")
        } else {
            request.update_expression("SET alert_kind = :kind, alert_raised_at = :now")
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// Forgets the CA's alert after a SUCCESS report, and gives back the alert forgotten:
    /// `None` when there was none, or another run forgot it first (it sent the event).
    pub async fn close_alert(&self, arn: &CaArn) -> Result<Option<RaisedAlert>, LedgerError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::window_key(arn)))
            .update_expression("REMOVE alert_kind, alert_raised_at, overdue_alerted_at")
            .condition_expression("attribute_exists(alert_kind)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes.as_ref().and_then(raised)),
            Err(e) if conditional_failed(&e) => Ok(None),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// The CA's newest SUCCESS report in its history, `None` when it has none.
    pub async fn last_success(&self, arn: &CaArn) -> Result<Option<LastSuccess>, LedgerError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :arn AND begins_with(#record, :report)")
            .filter_expression("#status = :success")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#record", SORT_KEY)
            // `status` is a DynamoDB reserved word.
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":arn", s(arn.as_str()))
            .expression_attribute_values(":report", s("report#"))
            .expression_attribute_values(":success", s(ReportStatus::Success.as_str()))
            .projection_expression("requested_at, report_id, s3_key")
            .scan_index_forward(false)
            .into_paginator()
            .page_size(8)
            .items()
            .send();
        let Some(item) = items.next().await else {
            return Ok(None);
        };
        let item = item.map_err(|e| self.error(&e))?;
        Ok(text(&item, "requested_at")
            .and_then(Timestamp::parse)
            .map(|requested_at| LastSuccess {
                report_id: text(&item, "report_id").map(str::to_owned),
                s3_key: text(&item, "s3_key").map(str::to_owned),
                requested_at,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_without_a_whole_alert_remembers_none() {
        let at = "2026-01-02T03:04:05Z";
        let item = |pairs: &[(&str, &str)]| -> HashMap<String, AttributeValue> {
            pairs.iter().map(|(k, v)| (k.to_string(), s(*v))).collect()
        };
        assert_eq!(
            raised(&item(&[("alert_kind", "overdue"), ("alert_raised_at", at)])),
            Some(RaisedAlert {
                kind: AlertKind::Overdue,
                raised_at: Timestamp::parse(at).unwrap()
            })
        );
        assert_eq!(raised(&item(&[("alert_kind", "overdue")])), None);
        assert_eq!(
            raised(&item(&[("alert_kind", "x"), ("alert_raised_at", at)])),
            None
        );
    }
}
