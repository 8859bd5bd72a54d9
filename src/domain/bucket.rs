//! The report bucket as the service fills it: the key scheme it writes reports under, the
//! objects found there, and whether the service made an object (only then is it evidence).

use std::collections::HashMap;

use aws_sdk_acmpca::types::AuditReportStatus;
use serde::Serialize;

use crate::domain::arn::CaArn;
use crate::domain::report::{ObjectPin, ReportFormat};
use crate::domain::time::Timestamp;

/// Where the service writes a CA's reports: `audit-report/<CA id>/<report id>.<json|csv>`
/// (Private CA user guide, "Using audit reports with your private CA").
pub fn report_prefix(arn: &CaArn) -> String {
    format!("audit-report/{}/", arn.id())
}

/// The format a report's key says it is in (`….json` or `….csv`, as the service names them).
pub fn format_of_key(key: &str) -> Option<ReportFormat> {
    if key.ends_with(".json") {
        Some(ReportFormat::Json)
    } else if key.ends_with(".csv") {
        Some(ReportFormat::Csv)
    } else {
        None
    }
}

/// `<prefix><report id>.json` → (report id, JSON); anything else under the prefix (another
/// name, a nested key, an id not shaped as the service's) is not a report.
pub fn parse_report_key(prefix: &str, key: &str) -> Option<(String, ReportFormat)> {
    let name = key.strip_prefix(prefix)?;
    let format = format_of_key(name)?;
    let id = name.rsplit_once('.')?.0;
    is_report_id(id).then(|| (id.to_owned(), format))
}

/// Whether `id` is shaped as the API says a report id is: "Pattern:
/// `[a-z0-9]{8}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{12}`", 36 characters (API
/// reference, DescribeCertificateAuthorityAuditReport, `AuditReportId`): lower-case letters
/// and digits, not only a hex UUID.
pub fn is_report_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// An object under a CA's report prefix, as the bucket lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub written_at: Timestamp,
    pub size_bytes: u64,
}

/// One version of an object (or a delete marker), as ListObjectVersions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedVersion {
    pub key: String,
    pub version_id: String,
    pub etag: Option<String>,
    pub is_latest: bool,
    pub delete_marker: bool,
}

/// How a recorded report's object differs from what the bucket holds now (`verifyObjects`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceChange {
    /// No version of the key at all.
    Missing,
    /// The recorded version is no longer in the bucket.
    VersionGone,
    /// A delete marker is the key's current version.
    Deleted,
    /// Another version was written over the recorded one.
    Overwritten,
    /// The recorded version answers with another ETag (possible only without a version id).
    EtagDiffers,
    /// The recorded version answers with another checksum.
    ChecksumDiffers,
}

impl EvidenceChange {
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Missing => "no version of the object is in the bucket",
            Self::VersionGone => "the recorded version is no longer in the bucket",
            Self::Deleted => "the object was deleted (a delete marker is its current version)",
            Self::Overwritten => "another version was written over the recorded one",
            Self::EtagDiffers => "the object's ETag is not the recorded one",
            Self::ChecksumDiffers => "the object's checksum is not the recorded one",
        }
    }
}

/// The listed versions by key, each key's in the order listed: built once per CA, so that
/// each report looks at its own key's versions only (one pass over the listing, not one per
/// report: an hourly CA's year is 8,760 reports and as many versions).
pub fn versions_by_key(versions: &[ListedVersion]) -> HashMap<&str, Vec<&ListedVersion>> {
    let mut by_key: HashMap<&str, Vec<&ListedVersion>> = HashMap::new();
    for v in versions {
        by_key.entry(v.key.as_str()).or_default().push(v);
    }
    by_key
}

/// What the versions of a report's key (`of_key`, from `versions_by_key`) say of its recorded
/// `pin`: `None` when the recorded version is there, unchanged as far as the listing tells,
/// and still the current one. A report recorded without a version id (before pins were kept,
/// or a bucket without versioning) is held to the current version, and to its ETag when one
/// was recorded.
pub fn listed_change(pin: &ObjectPin, of_key: &[&ListedVersion]) -> Option<EvidenceChange> {
    let latest = of_key.iter().find(|v| v.is_latest);
    if of_key.iter().all(|v| v.delete_marker) {
        return Some(if of_key.is_empty() {
            EvidenceChange::Missing
        } else {
            EvidenceChange::Deleted
        });
    }
    let recorded = match pin.version_id.as_deref() {
        Some(id) => of_key
            .iter()
            .find(|v| v.version_id == id && !v.delete_marker),
        None => latest.filter(|v| !v.delete_marker),
    };
    let Some(recorded) = recorded else {
        return Some(match latest {
            Some(v) if v.delete_marker => EvidenceChange::Deleted,
            _ if pin.version_id.is_some() => EvidenceChange::VersionGone,
            _ => EvidenceChange::Missing,
        });
    };
    if pin.etag.is_some() && recorded.etag != pin.etag {
        return Some(EvidenceChange::EtagDiffers);
    }
    match latest {
        Some(v) if v.delete_marker => Some(EvidenceChange::Deleted),
        Some(v) if v.version_id != recorded.version_id => Some(EvidenceChange::Overwritten),
        _ => None,
    }
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

/// The oldest write time of an object that can be the report of an attempt at `since`: S3's
/// clock and ours may differ a little.
pub fn written_not_before(since: Timestamp) -> Timestamp {
    since.minus(CLOCK_SKEW)
}

/// The reports of the CA among `objects` written since `since`, other than `known_key` (the
/// last one recorded), not empty, and named as the service names reports: newest first.
/// Candidates only: an object is a report once the service vouches for it (`provenance`).
pub fn unrecorded(
    arn: &CaArn,
    objects: &[ListedObject],
    since: Timestamp,
    known_key: Option<&str>,
) -> Vec<FoundReport> {
    let prefix = report_prefix(arn);
    let not_before = written_not_before(since);
    let mut found: Vec<FoundReport> = objects
        .iter()
        .filter(|o| o.written_at >= not_before && Some(o.key.as_str()) != known_key)
        .filter_map(|o| {
            let (report_id, format) = parse_report_key(&prefix, &o.key)?;
            Some(FoundReport {
                report_id,
                s3_key: o.key.clone(),
                format,
                written_at: o.written_at,
                size_bytes: o.size_bytes,
            })
        })
        .collect();
    found.sort_by(|a, b| {
        b.written_at
            .cmp(&a.written_at)
            .then(b.s3_key.cmp(&a.s3_key))
    });
    found
}

/// What DescribeCertificateAuthorityAuditReport answers for a report id of a CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedReport {
    pub status: Option<AuditReportStatus>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
}

/// An object under a CA's report prefix that the service does not vouch for: never recorded,
/// never evidence. Anyone who may write to the bucket can put one there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedObject {
    pub s3_key: String,
    pub reason: String,
}

/// Whether the service made an object found in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// The service made this report, for this CA, at this key, and has finished it.
    Made,
    /// The service made it and is still writing it: not a report yet.
    NotYet,
    /// The service did not make it (or not at this key): why.
    NotMade(String),
}

/// What the service's answer for the id read from `found`'s key (`None`: it knows no such
/// report of this CA) says of the object: the object is evidence only when the service made
/// that report at exactly that bucket and key.
pub fn provenance(
    found: &FoundReport,
    bucket: &str,
    described: Option<&DescribedReport>,
) -> Provenance {
    let id = &found.report_id;
    let Some(d) = described else {
        return Provenance::NotMade(format!(
            "the service has no audit report {id} of this CA (DescribeCertificateAuthorityAuditReport: not found)"
        ));
    };
    let (b, k) = (d.s3_bucket.as_deref(), d.s3_key.as_deref());
    if b != Some(bucket) || k != Some(found.s3_key.as_str()) {
        return Provenance::NotMade(format!(
            "the service wrote audit report {id} to s3://{}/{}, not to this object",
            b.unwrap_or("?"),
            k.unwrap_or("?")
        ));
    }
    match &d.status {
        Some(AuditReportStatus::Success) => Provenance::Made,
        Some(AuditReportStatus::Failed) => Provenance::NotMade(format!(
            "the service says audit report {id} FAILED: it wrote no report there"
        )),
        _ => Provenance::NotYet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "arn:aws:acm-pca:eu-west-1:111111111111:certificate-authority/11111111-2222-3333-4444-555555555555";
    const ID: &str = "0b8e0c5a-3c6e-4a39-9f4e-7d1f2a3b4c5d";

    fn arn() -> CaArn {
        CaArn::parse(CA).unwrap()
    }

    #[test]
    fn only_report_shaped_keys_are_reports() {
        let p = report_prefix(&arn());
        assert_eq!(
            parse_report_key(&p, &format!("{p}{ID}.json")),
            Some((ID.to_owned(), ReportFormat::Json))
        );
        assert_eq!(
            parse_report_key(&p, &format!("{p}{ID}.csv")),
            Some((ID.to_owned(), ReportFormat::Csv))
        );
        assert_eq!(parse_report_key(&p, &format!("{p}{ID}.txt")), None);
        assert_eq!(parse_report_key(&p, &format!("{p}nested/{ID}.json")), None);
        assert_eq!(parse_report_key(&p, &format!("{p}not-a-uuid.json")), None);
        // The API's pattern: lower-case letters and digits, beyond hex.
        let upper = ID.to_uppercase();
        assert_eq!(parse_report_key(&p, &format!("{p}{upper}.json")), None);
        let letters = "zz8e0c5a-3c6e-4a39-9f4e-7d1f2a3b4c5q";
        assert_eq!(
            parse_report_key(&p, &format!("{p}{letters}.json")),
            Some((letters.to_owned(), ReportFormat::Json))
        );
        assert!(
            !is_report_id("0b8e0c5a-3c6e-4a39-9f4e-7d1f2a3b4c5"),
            "35 characters"
        );
    }

    #[test]
    fn the_unrecorded_reports_since_the_instant_are_found_newest_first() {
        let a = arn();
        let p = report_prefix(&a);
        let obj = |id: &str, at: u64, size: u64| ListedObject {
            key: format!("{p}{id}.json"),
            written_at: Timestamp::from_epoch_seconds(at),
            size_bytes: size,
        };
        let older = "00000000-0000-0000-0000-000000000001";
        let newer = "00000000-0000-0000-0000-000000000002";
        let objects = vec![
            obj(older, 1_000, 5),
            obj(newer, 2_000, 5),
            obj(ID, 3_000, 0),
        ];
        let since = Timestamp::from_epoch_seconds(1_030);
        let ids = |found: Vec<FoundReport>| -> Vec<String> {
            found.into_iter().map(|f| f.report_id).collect()
        };
        // An empty object is a candidate too (the service may vouch for an empty report); the
        // older one is within the clock skew of `since`.
        assert_eq!(
            ids(unrecorded(&a, &objects, since, None)),
            [ID, newer, older]
        );
        let known = format!("{p}{newer}.json");
        assert_eq!(
            ids(unrecorded(&a, &objects, since, Some(&known))),
            [ID, older]
        );
        let late = Timestamp::from_epoch_seconds(3_100);
        assert!(unrecorded(&a, &objects, late, Some(&known)).is_empty());
    }

    #[test]
    fn an_object_is_evidence_only_when_the_service_made_it_there() {
        let a = arn();
        let found = FoundReport {
            report_id: ID.into(),
            s3_key: format!("{}{ID}.json", report_prefix(&a)),
            format: ReportFormat::Json,
            written_at: Timestamp::from_epoch_seconds(1),
            size_bytes: 9,
        };
        let said = |status, bucket: &str, key: &str| DescribedReport {
            status: Some(status),
            s3_bucket: Some(bucket.into()),
            s3_key: Some(key.into()),
        };
        let key = found.s3_key.clone();
        let made = said(AuditReportStatus::Success, "b", &key);
        assert_eq!(provenance(&found, "b", Some(&made)), Provenance::Made);
        let creating = said(AuditReportStatus::Creating, "b", &key);
        assert_eq!(provenance(&found, "b", Some(&creating)), Provenance::NotYet);
        let not_made = |p| matches!(p, Provenance::NotMade(_));
        assert!(
            not_made(provenance(&found, "b", None)),
            "an id the service never made"
        );
        let elsewhere = said(AuditReportStatus::Success, "b", "audit-report/x/y.json");
        assert!(
            not_made(provenance(&found, "b", Some(&elsewhere))),
            "another key"
        );
        assert!(
            not_made(provenance(&found, "other", Some(&made))),
            "another bucket"
        );
        let failed = said(AuditReportStatus::Failed, "b", &key);
        assert!(
            not_made(provenance(&found, "b", Some(&failed))),
            "a FAILED report"
        );
    }

    fn version(id: &str, etag: &str, latest: bool, marker: bool) -> ListedVersion {
        ListedVersion {
            key: "k".into(),
            version_id: id.into(),
            etag: (!marker).then(|| etag.to_owned()),
            is_latest: latest,
            delete_marker: marker,
        }
    }

    #[test]
    fn a_recorded_version_is_held_to_what_the_bucket_lists() {
        let pin = ObjectPin {
            version_id: Some("v1".into()),
            etag: Some("\"e1\"".into()),
            checksum: Some("CRC64NVME:AAAA".into()),
            sha256: None,
        };
        let v1 = version("v1", "\"e1\"", true, false);
        let change = |versions: &[ListedVersion]| {
            let by_key = versions_by_key(versions);
            listed_change(&pin, by_key.get("k").map_or(&[][..], Vec::as_slice))
        };
        assert_eq!(change(std::slice::from_ref(&v1)), None, "untouched");
        assert_eq!(change(&[]), Some(EvidenceChange::Missing));
        let old = version("v1", "\"e1\"", false, false);
        let over = version("v2", "\"e2\"", true, false);
        assert_eq!(
            change(&[old.clone(), over.clone()]),
            Some(EvidenceChange::Overwritten)
        );
        let marker = version("m1", "", true, true);
        assert_eq!(
            change(&[old.clone(), marker.clone()]),
            Some(EvidenceChange::Deleted)
        );
        assert_eq!(
            change(std::slice::from_ref(&marker)),
            Some(EvidenceChange::Deleted)
        );
        assert_eq!(change(&[over]), Some(EvidenceChange::VersionGone));
        let other_etag = version("v1", "\"forged\"", true, false);
        assert_eq!(change(&[other_etag]), Some(EvidenceChange::EtagDiffers));
        let other_key = ListedVersion {
            key: "k2".into(),
            ..v1
        };
        assert_eq!(change(&[other_key]), Some(EvidenceChange::Missing));
    }

    #[test]
    fn an_unpinned_report_is_held_to_the_current_version() {
        let unpinned = ObjectPin::default();
        let current = version("null", "\"e\"", true, false);
        assert_eq!(listed_change(&unpinned, &[&current]), None);
        let marker = version("m", "", true, true);
        assert_eq!(
            listed_change(&unpinned, &[&marker]),
            Some(EvidenceChange::Deleted)
        );
        let etag_only = ObjectPin {
            etag: Some("\"e\"".into()),
            ..ObjectPin::default()
        };
        let rewritten = version("null", "\"x\"", true, false);
        assert_eq!(
            listed_change(&etag_only, &[&rewritten]),
            Some(EvidenceChange::EtagDiffers)
        );
    }
}
