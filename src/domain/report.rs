//! An audit report: its format and status, what a follow-up found of it (`ReportCheck`), and
//! what the service's answer and the object in the bucket mean together. Pure: the calls are
//! in `aws`; the bucket's key scheme is in `bucket`.

use std::fmt;
use std::str::FromStr;

use aws_sdk_acmpca::types::AuditReportStatus;
use serde::{Deserialize, Serialize};

use crate::domain::arn::CaArn;
use crate::domain::window::PendingReport;

/// What an audit report says (READ_REPORTS), once read: `evidence::contents` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportContents {
    /// Certificates the report lists.
    pub certificates: u64,
    /// Issued since the CA's previous SUCCESS report (all, when there is none).
    pub issued_since: u64,
    /// Revoked since the CA's previous SUCCESS report (all, when there is none).
    pub revoked_since: u64,
    /// The first ARNs of each, in report order.
    pub first_issued: Vec<String>,
    pub first_revoked: Vec<String>,
}

/// A report read to its end (READ_REPORTS): what it says, and the SHA-256 of all the bytes of
/// the object (lowercase hex), which goes on its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport {
    pub contents: ReportContents,
    pub sha256: String,
}

/// What pins one version of a report object, as S3 answered for it when the follow-up (or a
/// recovery) found it: its version id (absent in a bucket without versioning), its ETag, and
/// the checksum S3 keeps for it (`ALGORITHM:base64`; S3 computes a full-object CRC64NVME for
/// an upload that names none, S3 user guide, "Checking object integrity"); and its SHA-256 in
/// lowercase hex where known: S3's own (`full_object_sha256`), or the function's, of the
/// bytes READ_REPORTS read of that version. An auditor, and `verifyObjects`, compare the
/// bucket with these; `sha256sum` prints what `sha256` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The object's SHA-256 in hex, when the checksum S3 keeps for it is one of the whole object:
/// `SHA256:<base64 of 32 bytes>`. A multipart upload's is a checksum of its parts' checksums,
/// written with a `-<parts>` suffix (S3 user guide, "Checking object integrity", composite
/// checksums): not the object's SHA-256, so none.
pub fn full_object_sha256(checksum: &str) -> Option<String> {
    let value = checksum.strip_prefix("SHA256:")?;
    if value.contains('-') {
        return None;
    }
    let digest = aws_smithy_types::base64::decode(value).ok()?;
    (digest.len() == 32).then(|| sha256_hex(&digest))
}

/// A digest as `sha256sum` prints it: lowercase hex.
pub fn sha256_hex(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// The checksum S3 answered for an object, as a pin keeps it (`ALGORITHM:base64`): the first
/// of the algorithms it gave, in this order. S3 keeps one per object.
pub fn checksum_text<'a>(
    answered: impl IntoIterator<Item = (&'static str, Option<&'a str>)>,
) -> Option<String> {
    answered
        .into_iter()
        .find_map(|(algorithm, value)| value.map(|v| format!("{algorithm}:{v}")))
}

/// A report object as HeadObject answered for it: its size and its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenObject {
    pub size_bytes: u64,
    pub pin: ObjectPin,
}

/// Audit report file format, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReportFormat {
    #[default]
    Json,
    Csv,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Csv => "CSV",
        }
    }
}

impl FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "JSON" => Ok(Self::Json),
            "CSV" => Ok(Self::Csv),
            _ => Err("must be JSON or CSV".into()),
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a requested audit report stands, as the service and the bucket say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReportStatus {
    /// Not written yet: checked again first thing next run.
    Creating,
    /// Written, and the object is in the bucket.
    Success,
    /// The service could not write it, or the object is missing or empty.
    Failed,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CREATING" => Some(Self::Creating),
            "SUCCESS" => Some(Self::Success),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The follow-up of one audit report: DescribeCertificateAuthorityAuditReport, then the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportCheck {
    pub report_id: String,
    pub status: ReportStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Prose for people (the summary, the log, the history item); never read by the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What the check could not do: the follow-up reads this, never `detail`.
    #[serde(skip)]
    pub limit: CheckLimit,
    /// What the report says (READ_REPORTS), once read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<ReportContents>,
    /// The version of the object a SUCCESS report was found at.
    #[serde(rename = "object", skip_serializing_if = "Option::is_none")]
    pub pin: Option<ObjectPin>,
}

/// What a follow-up could not do, for the code to act on (the prose is in `detail`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckLimit {
    /// The check saw what it looked for.
    #[default]
    None,
    /// The service or the bucket could not be asked: stop looking this run, the next run
    /// looks again.
    CouldNotLook,
    /// SUCCESS, but what the report says could not be read (READ_REPORTS).
    Unreadable,
}

/// A report the follow-up could not see end, to be looked at again next run.
pub fn still_creating(report: &PendingReport, detail: Option<String>) -> ReportCheck {
    ReportCheck {
        report_id: report.report_id.clone(),
        status: ReportStatus::Creating,
        size_bytes: None,
        limit: if detail.is_some() {
            CheckLimit::CouldNotLook
        } else {
            CheckLimit::None
        },
        detail,
        contents: None,
        pin: None,
    }
}

/// What DescribeCertificateAuthorityAuditReport's `status` and the object in the bucket mean
/// together. `object_size` is the size of the object under exactly the report's key, `None`
/// when there is none; it is only looked at for SUCCESS (`None` for the other statuses).
/// SUCCESS counts only with the object there: the evidence is the object, not the status (an
/// empty object is an empty report, said so in its detail).
pub fn check_of(
    arn: &CaArn,
    report: &PendingReport,
    status: Option<&AuditReportStatus>,
    object_size: Option<u64>,
) -> ReportCheck {
    let result = |status, size_bytes, detail: Option<String>| ReportCheck {
        report_id: report.report_id.clone(),
        status,
        size_bytes,
        detail,
        limit: CheckLimit::None,
        contents: None,
        pin: None,
    };
    let (bucket, key) = (&report.s3_bucket, &report.s3_key);
    match (status, object_size) {
        (Some(AuditReportStatus::Success), Some(size)) if size > 0 => {
            result(ReportStatus::Success, Some(size), None)
        }
        // AWS does not document what a CA that signed nothing gets; the service says SUCCESS
        // and the object is there: a report, empty, said so (and covering its window).
        (Some(AuditReportStatus::Success), Some(_)) => result(
            ReportStatus::Success,
            Some(0),
            Some(format!(
                "the report s3://{bucket}/{key} is empty (0 bytes): the service wrote no row"
            )),
        ),
        (Some(AuditReportStatus::Success), None) => result(
            ReportStatus::Failed,
            None,
            Some(format!(
                "the service says SUCCESS but s3://{bucket}/{key} is not in the bucket \
                 (deleted since, or a lifecycle rule removed it)"
            )),
        ),
        (Some(AuditReportStatus::Failed), _) => {
            result(ReportStatus::Failed, None, Some(failed_cause(arn, bucket)))
        }
        // CREATING, or a status this build does not know: look again later.
        _ => result(ReportStatus::Creating, None, None),
    }
}

/// What usually makes the service fail to write a report: it says no more than FAILED.
fn failed_cause(arn: &CaArn, bucket: &str) -> String {
    format!(
        "ACM Private CA could not write the audit report to bucket {bucket}. Likely causes: the \
         bucket policy does not let acm-pca.amazonaws.com s3:PutObject under audit-report/ for \
         CAs of account {} (aws:SourceAccount, aws:SourceArn or aws:SourceOrgID); or the bucket \
         uses SSE-KMS with a key whose policy does not let acm-pca.amazonaws.com \
         kms:GenerateDataKey, or with the aws/s3 key, which ACM Private CA cannot use",
        arn.account()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::Timestamp;

    const CA: &str = "arn:aws:acm-pca:eu-west-1:111111111111:certificate-authority/11111111-2222-3333-4444-555555555555";
    const ID: &str = "0b8e0c5a-3c6e-4a39-9f4e-7d1f2a3b4c5d";

    fn arn() -> CaArn {
        CaArn::parse(CA).unwrap()
    }

    fn pending() -> PendingReport {
        PendingReport {
            report_id: ID.into(),
            s3_bucket: "b".into(),
            s3_key: format!("audit-report/11111111-2222-3333-4444-555555555555/{ID}.json"),
            requested_at: Timestamp::from_epoch_seconds(1_000),
        }
    }

    #[test]
    fn only_a_full_object_sha256_checksum_gives_the_objects_sha256() {
        // `printf 'hello' | sha256sum`, and the same 32 bytes in base64 as S3 writes them.
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let base64 = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
        assert_eq!(
            full_object_sha256(&format!("SHA256:{base64}")).as_deref(),
            Some(hello)
        );
        for not_the_objects in [
            format!("SHA256:{base64}-3"),
            "SHA256:AAAAAAAAAAA=".to_owned(),
            "SHA256:not base64!".to_owned(),
            format!("CRC64NVME:{base64}"),
            "CRC64NVME:AAAAAAAAAAA=".to_owned(),
            base64.to_owned(),
        ] {
            assert_eq!(
                full_object_sha256(&not_the_objects),
                None,
                "{not_the_objects}"
            );
        }
        assert_eq!(sha256_hex(&[0, 0xab, 0x0f]), "00ab0f");
    }

    #[test]
    fn a_report_is_success_only_with_its_object_there() {
        let (a, p) = (arn(), pending());
        let success = Some(&AuditReportStatus::Success);
        let ok = check_of(&a, &p, success, Some(42));
        assert_eq!(
            (ok.status, ok.size_bytes, ok.detail),
            (ReportStatus::Success, Some(42), None)
        );
        let empty = check_of(&a, &p, success, Some(0));
        assert_eq!(
            (empty.status, empty.size_bytes),
            (ReportStatus::Success, Some(0)),
            "an empty report is a report"
        );
        assert!(empty.detail.unwrap().contains("is empty"));
        let gone = check_of(&a, &p, success, None);
        assert_eq!(gone.status, ReportStatus::Failed);
        assert!(gone.detail.unwrap().contains("not in the bucket"));
        let failed = check_of(&a, &p, Some(&AuditReportStatus::Failed), None);
        assert_eq!(failed.status, ReportStatus::Failed);
        assert!(failed.detail.unwrap().contains("acm-pca.amazonaws.com"));
        for creating in [Some(&AuditReportStatus::Creating), None] {
            let c = check_of(&a, &p, creating, None);
            assert_eq!(
                (c.status, c.limit),
                (ReportStatus::Creating, CheckLimit::None)
            );
        }
    }
}
