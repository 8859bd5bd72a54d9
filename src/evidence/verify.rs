//! `verifyObjects`: the SUCCESS reports of a coverage period held to the bucket. The follow-up
//! pinned each report's object (version id, ETag, checksum); here one ListObjectVersions of the
//! CA's prefix says whether each pinned version is still there, with its ETag, and still the
//! current one. A version id names content that never changes ("If you overwrite an object, it
//! results in a new object version", S3 user guide, "Retaining multiple versions of objects
//! with S3 Versioning"), except the `null` version of a bucket without versioning, which a put
//! to the same key replaces ("Adding objects to versioning-suspended buckets"): only for those
//! does a HeadObject compare the checksum S3 keeps. A report whose object changed covers
//! nothing: its coverage has an `evidenceChanged` gap.
//!
//! Cost per CA: one LIST per 1,000 versions under its prefix (S3's page), plus one HEAD per
//! report without a version id of its own.

use std::collections::HashMap;

use futures::StreamExt;

use super::HistoryReport;
use crate::aws::ServiceError;
use crate::aws::s3::{self, Store};
use crate::domain::arn::CaArn;
use crate::domain::bucket::{EvidenceChange, listed_change, report_prefix, versions_by_key};
use crate::domain::report::ReportStatus;

/// HeadObject calls in flight at once for one CA (16 CAs are read side by side).
const HEADS_IN_FLIGHT: usize = 8;

/// Whether the content under this version id can be replaced: no version id, or S3's `null`.
fn replaceable(version_id: Option<&str>) -> bool {
    version_id.is_none_or(|v| v == "null")
}

/// The checksum the follow-up recorded and the one S3 answers now for the same version.
fn checksum_change(recorded: Option<&str>, now: Option<&str>) -> Option<EvidenceChange> {
    match (recorded, now) {
        (Some(recorded), Some(now)) if recorded != now => Some(EvidenceChange::ChecksumDiffers),
        // The version answers no checksum, or none: the listing's verdict stands.
        _ => None,
    }
}

/// The SUCCESS reports among `reports` whose objects are no longer what was pinned, by
/// report id, with what changed.
pub async fn changed_reports(
    store: &Store,
    bucket: &str,
    arn: &CaArn,
    reports: &[HistoryReport],
) -> Result<HashMap<String, EvidenceChange>, ServiceError> {
    let success: Vec<&HistoryReport> = reports
        .iter()
        .filter(|r| r.status == ReportStatus::Success)
        .collect();
    if success.is_empty() {
        return Ok(HashMap::new());
    }
    let versions = s3::list_versions(store, bucket, &report_prefix(arn)).await?;
    let by_key = versions_by_key(&versions);
    let mut changed = HashMap::new();
    let mut to_head = Vec::new();
    for r in success {
        let of_key = by_key.get(r.s3_key.as_str()).map_or(&[][..], Vec::as_slice);
        match listed_change(&r.pin, of_key) {
            Some(change) => {
                changed.insert(r.report_id.clone(), change);
            }
            None if r.pin.checksum.is_some() && replaceable(r.pin.version_id.as_deref()) => {
                to_head.push(r);
            }
            None => {}
        }
    }
    let mut heads = futures::stream::iter(to_head.into_iter().map(|r| async move {
        let version = r.pin.version_id.as_deref();
        let seen = s3::report_object(store, bucket, &r.s3_key, version).await;
        (r, seen)
    }))
    .buffer_unordered(HEADS_IN_FLIGHT);
    while let Some((r, seen)) = heads.next().await {
        let change = match seen? {
            None => Some(EvidenceChange::VersionGone),
            Some(now) => checksum_change(r.pin.checksum.as_deref(), now.pin.checksum.as_deref()),
        };
        if let Some(change) = change {
            changed.insert(r.report_id.clone(), change);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_checksum_is_a_change() {
        let c = |a, b| checksum_change(a, b);
        assert_eq!(c(Some("CRC64NVME:a"), Some("CRC64NVME:a")), None);
        assert_eq!(
            c(Some("CRC64NVME:a"), Some("CRC64NVME:b")),
            Some(EvidenceChange::ChecksumDiffers)
        );
        assert_eq!(c(Some("CRC64NVME:a"), None), None);
        assert_eq!(c(None, Some("CRC64NVME:a")), None);
    }

    #[test]
    fn only_a_null_or_missing_version_is_looked_at_again() {
        assert!(replaceable(None) && replaceable(Some("null")));
        assert!(!replaceable(Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")));
    }
}
