//! What coverage reads of the ledger: a CA's history items over a stretch, and every CA the
//! ledger has a window for (through the sparse index `ca-windows`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType,
};
use serde::Serialize;

use super::{Ledger, LedgerError, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, s, text};
use crate::domain::arn::CaArn;
use crate::domain::report::{ObjectPin, ReportStatus};
use crate::domain::time::Timestamp;

/// The ledger's sparse index of window items: only they carry `account_id` (written by every
/// claim), so a Scan of it reads one small item per CA the ledger knows instead of every
/// history item (a Scan of the table at 1,000 CAs × a year reads 365,000 items to find 1,000).
pub const CA_INDEX: &str = "ca-windows";
/// The index's partition key (the window item's account).
pub const CA_INDEX_KEY: &str = "account_id";

/// The index as template.yaml declares it, for the tables tests and the benchmark make.
pub fn ca_index() -> (AttributeDefinition, GlobalSecondaryIndex) {
    let key = |name: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .expect("name and type are set")
    };
    (
        AttributeDefinition::builder()
            .attribute_name(CA_INDEX_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set"),
        GlobalSecondaryIndex::builder()
            .index_name(CA_INDEX)
            .key_schema(key(CA_INDEX_KEY, KeyType::Hash))
            .key_schema(key(PARTITION_KEY, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .expect("name and keys are set"),
    )
}

/// One history item, as the coverage manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryReport {
    pub requested_at: Timestamp,
    pub report_id: String,
    pub s3_key: String,
    pub format: String,
    /// Where the report stands; a status the item lacks or this build does not know reads
    /// as not ended (CREATING), so it covers nothing.
    pub status: ReportStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The object's version, ETag, checksum and SHA-256 as the follow-up found them.
    pub pin: ObjectPin,
}

/// Reads a history item; `None` for one without an instant or a report id.
fn history_report(item: &HashMap<String, AttributeValue>) -> Option<HistoryReport> {
    let owned = |n: &str| text(item, n).map(str::to_owned);
    Some(HistoryReport {
        requested_at: Timestamp::parse(text(item, "requested_at")?)?,
        report_id: owned("report_id")?,
        s3_key: owned("s3_key").unwrap_or_default(),
        format: owned("format").unwrap_or_default(),
        status: text(item, "status")
            .and_then(ReportStatus::parse)
            .unwrap_or(ReportStatus::Creating),
        size_bytes: item
            .get("size_bytes")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
        pin: ObjectPin {
            version_id: owned(super::PIN_ATTRIBUTES[0]),
            etag: owned(super::PIN_ATTRIBUTES[1]),
            checksum: owned(super::PIN_ATTRIBUTES[2]),
            sha256: owned(super::PIN_ATTRIBUTES[3]),
        },
    })
}

impl Ledger {
    /// A CA's history items from `since` to `until`, oldest first: one Query, all pages,
    /// strongly consistent so a report recorded a moment ago is counted. Items past their
    /// TTL at `now` are left out: DynamoDB deletes them at a time of its own, and until then
    /// "they'll continue to show in read and write operations" (DynamoDB developer guide,
    /// "Working with expired items"), so counting them would make one period's answer change
    /// from one day to the next.
    pub async fn history(
        &self,
        arn: &CaArn,
        (since, until): (Timestamp, Timestamp),
        now: Timestamp,
    ) -> Result<Vec<HistoryReport>, LedgerError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :arn AND #record BETWEEN :lo AND :hi")
            .filter_expression("attribute_not_exists(#ttl) OR #ttl > :now")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#record", SORT_KEY)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(now.epoch_seconds().to_string()))
            .expression_attribute_values(":arn", s(arn.as_str()))
            .expression_attribute_values(":lo", s(format!("report#{since}")))
            // `$` sorts after `#`, so every report id of the last second is in.
            .expression_attribute_values(":hi", s(format!("report#{until}$")))
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.error(&e))?;
            found.extend(history_report(&item));
        }
        Ok(found)
    }

    /// Every CA the ledger has a window for: a Scan of the sparse index, all pages.
    pub async fn windowed_cas(&self) -> Result<Vec<CaArn>, LedgerError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .index_name(CA_INDEX)
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| self.error(&e))?;
            if let Some(arn) = text(&item, PARTITION_KEY) {
                found.extend(CaArn::parse(arn).ok());
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_item_is_read_and_one_without_its_instant_or_id_is_not() {
        let mut item = HashMap::from([
            ("requested_at".to_owned(), s("2026-07-01T00:00:00Z")),
            ("report_id".to_owned(), s("r-1")),
            ("status".to_owned(), s("SUCCESS")),
            ("size_bytes".to_owned(), AttributeValue::N("10".into())),
            ("version_id".to_owned(), s("v-1")),
            ("etag".to_owned(), s("\"e\"")),
            ("sha256".to_owned(), s("2cf2")),
        ]);
        let r = history_report(&item).expect("read");
        assert_eq!(
            (
                r.pin.version_id.as_deref(),
                r.pin.etag.as_deref(),
                r.pin.checksum,
                r.pin.sha256.as_deref()
            ),
            (Some("v-1"), Some("\"e\""), None, Some("2cf2"))
        );
        assert_eq!(r.requested_at.to_string(), "2026-07-01T00:00:00Z");
        assert_eq!((r.status.as_str(), r.size_bytes), ("SUCCESS", Some(10)));
        assert_eq!((r.s3_key.as_str(), r.format.as_str()), ("", ""));
        item.remove("report_id");
        assert_eq!(history_report(&item), None);
    }
}
