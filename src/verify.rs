//! The follow-up of every audit report: what the service says of it, and whether the object is
//! in the bucket; and the report of a run that died before recording it, found in the bucket.
//!
//! The bucket is read with ListObjectsV2 only (the `s3:ListBucket` permission), never
//! HeadObject or GetObject: the function learns that a report exists and its size without
//! being able to read what it says.

use aws_sdk_acmpca::types::AuditReportStatus;

use crate::arn::CaArn;
use crate::format::ReportFormat;
use crate::report_contents;
use crate::service_error::ServiceError;
use crate::summary::{ReportCheck, ReportStatus};
use crate::time::Timestamp;
use crate::window::PendingReport;

/// Where one report stands: CREATING, or SUCCESS with the object there and not empty, or
/// FAILED with the likely cause.
pub async fn check(
    acm_pca: &aws_sdk_acmpca::Client,
    s3: &aws_sdk_s3::Client,
    arn: &CaArn,
    report: &PendingReport,
) -> Result<ReportCheck, ServiceError> {
    let described = acm_pca
        .describe_certificate_authority_audit_report()
        .certificate_authority_arn(arn.as_str())
        .audit_report_id(&report.report_id)
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    let result = |status, size_bytes, detail: Option<String>| ReportCheck {
        report_id: report.report_id.clone(),
        status,
        size_bytes,
        detail,
        contents: None,
    };
    match described.audit_report_status() {
        Some(AuditReportStatus::Success) => {}
        Some(AuditReportStatus::Failed) => {
            return Ok(result(
                ReportStatus::Failed,
                None,
                Some(failed_cause(arn, &report.s3_bucket)),
            ));
        }
        // CREATING, or a status this build does not know: look again later.
        _ => return Ok(result(ReportStatus::Creating, None, None)),
    }
    match object_size(s3, &report.s3_bucket, &report.s3_key).await? {
        Some(size) if size > 0 => Ok(result(ReportStatus::Success, Some(size), None)),
        Some(_) => Ok(result(
            ReportStatus::Failed,
            Some(0),
            Some(format!(
                "the service says SUCCESS but s3://{}/{} is empty",
                report.s3_bucket, report.s3_key
            )),
        )),
        None => Ok(result(
            ReportStatus::Failed,
            None,
            Some(format!(
                "the service says SUCCESS but s3://{}/{} is not in the bucket \
                 (deleted since, or a lifecycle rule removed it)",
                report.s3_bucket, report.s3_key
            )),
        )),
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

/// The object's size, or `None` when there is no object under exactly that key.
async fn object_size(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<u64>, ServiceError> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(key)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    Ok(out
        .contents()
        .iter()
        .find(|o| o.key() == Some(key))
        .map(|o| o.size().unwrap_or(0).max(0) as u64))
}

/// A report found in the bucket that no run recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundReport {
    pub report_id: String,
    pub s3_key: String,
    pub format: ReportFormat,
    pub written_at: Timestamp,
    pub size_bytes: u64,
}

/// How far the bucket's clock may be behind ours when comparing an object's time with a claim's.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

/// The newest report of the CA written since `since`, other than `known_key` (the last one
/// recorded). No API lists audit reports, so the bucket is the only place a report whose id
/// was lost can be found again: `audit-report/<CA id>/<report id>.<json|csv>`.
pub async fn find_unrecorded(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    arn: &CaArn,
    since: Timestamp,
    known_key: Option<&str>,
) -> Result<Option<FoundReport>, ServiceError> {
    let prefix = format!("audit-report/{}/", arn.id());
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    let not_before = since.minus(CLOCK_SKEW);
    let mut newest: Option<FoundReport> = None;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ServiceError::from_sdk(&e))?;
        for object in page.contents() {
            let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                continue;
            };
            let written_at = Timestamp::from_epoch_seconds(modified.secs().max(0) as u64);
            if written_at < not_before || Some(key) == known_key {
                continue;
            }
            let Some((report_id, format)) = parse_report_key(&prefix, key) else {
                continue;
            };
            let size_bytes = object.size().unwrap_or(0).max(0) as u64;
            if size_bytes == 0 {
                continue;
            }
            if newest.as_ref().is_none_or(|n| written_at > n.written_at) {
                newest = Some(FoundReport {
                    report_id,
                    s3_key: key.to_owned(),
                    format,
                    written_at,
                    size_bytes,
                });
            }
        }
    }
    Ok(newest)
}

/// `<prefix><uuid>.json` → (uuid, JSON); anything else under the prefix is not a report.
fn parse_report_key(prefix: &str, key: &str) -> Option<(String, ReportFormat)> {
    let name = key.strip_prefix(prefix)?;
    let (id, format) = if let Some(id) = name.strip_suffix(".json") {
        (id, ReportFormat::Json)
    } else if let Some(id) = name.strip_suffix(".csv") {
        (id, ReportFormat::Csv)
    } else {
        return None;
    };
    let uuid_shaped = id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    uuid_shaped.then(|| (id.to_owned(), format))
}

/// The follow-up's reading of a SUCCESS report: counted since the CA's previous SUCCESS
/// report (the ledger's history), and put on the check. A report that cannot be read or
/// parsed stays SUCCESS (the service made it; the object is there): the failure is the
/// check's detail, for the summary, the log and the history item.
pub async fn read_contents(
    services: &crate::services::Services,
    arn: &crate::arn::CaArn,
    pending: &crate::window::PendingReport,
    check: ReportCheck,
) -> ReportCheck {
    if check.status != ReportStatus::Success {
        return check;
    }
    let read = async {
        let Some(format) = report_contents::format_of_key(&pending.s3_key) else {
            return Err(format!(
                "s3://{}/{} is named neither .json nor .csv",
                pending.s3_bucket, pending.s3_key
            ));
        };
        let since = (services.ledger)
            .previous_report_at(arn, pending.requested_at)
            .await
            .map_err(|e| format!("finding the previous report: {e}"))?;
        report_contents::read(
            &services.s3,
            &pending.s3_bucket,
            &pending.s3_key,
            format,
            since,
        )
        .await
        .map_err(|e| e.to_string())
    };
    match read.await {
        Ok(contents) => ReportCheck {
            contents: Some(contents),
            ..check
        },
        Err(reason) => ReportCheck {
            detail: Some(format!("{}: {reason}", report_contents::UNREADABLE)),
            ..check
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_report_shaped_keys_are_reports() {
        let p = "audit-report/11111111-2222-3333-4444-555555555555/";
        let id = "0b8e0c5a-3c6e-4a39-9f4e-7d1f2a3b4c5d";
        assert_eq!(
            parse_report_key(p, &format!("{p}{id}.json")),
            Some((id.to_owned(), ReportFormat::Json))
        );
        assert_eq!(
            parse_report_key(p, &format!("{p}{id}.csv")),
            Some((id.to_owned(), ReportFormat::Csv))
        );
        assert_eq!(parse_report_key(p, &format!("{p}{id}.txt")), None);
        assert_eq!(parse_report_key(p, &format!("{p}nested/{id}.json")), None);
        assert_eq!(parse_report_key(p, &format!("{p}not-a-uuid.json")), None);
    }
}
