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
//! - A SUCCESS report's object is pinned on both (`PIN_ATTRIBUTES`, `last_`-prefixed on the
//!   window): `version_id`, `etag`, `checksum`, and `sha256` where known.
//!
//! Instants are RFC 3339 UTC strings (see `time`), compared in condition expressions.

pub mod alerts;
pub mod quota;
pub mod report_item;
pub mod verified;
pub mod window_item;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::ServiceError;
use crate::domain::arn::CaArn;
use crate::domain::report::{ObjectPin, ReportFormat, ReportStatus};
use crate::domain::time::Timestamp;
use crate::domain::window::{Lease, Window};

pub mod history;

pub const PARTITION_KEY: &str = "certificate_authority_arn";
pub const SORT_KEY: &str = "record";
pub const WINDOW_RECORD: &str = "window";
/// The history item's expiry (epoch seconds), the table's TTL attribute (`template.yaml`).
pub const TTL_ATTRIBUTE: &str = "expires_at";

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
    /// The object's version, ETag, checksum and SHA-256, for a report found in the bucket.
    pub pin: Option<ObjectPin>,
}

/// The names a report's pin is kept under on its history item (and, `last_`-prefixed, on its
/// CA's window): what the coverage manifest lists and `verifyObjects` compares.
pub const PIN_ATTRIBUTES: [&str; 4] = ["version_id", "etag", "checksum", "sha256"];

/// The pin's attributes that are known, named as `PIN_ATTRIBUTES`.
fn pin_attributes(pin: Option<&ObjectPin>) -> Vec<(&'static str, AttributeValue)> {
    let Some(pin) = pin else {
        return Vec::new();
    };
    [&pin.version_id, &pin.etag, &pin.checksum, &pin.sha256]
        .into_iter()
        .zip(PIN_ATTRIBUTES)
        .filter_map(|(value, name)| Some((name, s(value.as_deref()?))))
        .collect()
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
        alert: alerts::raised(item),
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
}
