//! Evidence an auditor reads: the coverage of a period and its manifest, and what each audit
//! report says. Here, the coverage vocabulary its answer (`coverage`), its judging (`gaps`),
//! its manifest (`manifest`) and the log lines (`telemetry`) share.

pub mod contents;
pub mod coverage;
pub mod gaps;
pub mod manifest;
pub mod rows;
pub mod verify;

use serde::Serialize;

use crate::aws::ServiceError;
use crate::aws::ledger::LedgerError;
pub use crate::aws::ledger::history::HistoryReport;
use crate::domain::outcome::{AccountError, RegionError};
use crate::domain::report::ReportStatus;
use crate::domain::time::Timestamp;
use crate::domain::version::ToolVersion;
use gaps::{Gap, GapKind};

/// One CA's coverage, as the summary gives it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCoverage {
    pub certificate_authority_arn: String,
    pub account_id: String,
    pub region: String,
    /// Listed (and audited) now; false for a CA only the ledger knows (deleted since).
    pub listed_now: bool,
    /// `covered`, or `gaps`.
    pub coverage: &'static str,
    /// Reports requested in the period, by status.
    pub report_counts: ReportCounts,
    /// The reports themselves are in the manifest only: a year of 1,000 CAs' reports would
    /// pass Lambda's 6 MB response limit many times over.
    pub gaps: Vec<Gap>,
    /// Gaps of this CA left out of the answer (`MAX_GAPS_IN_ANSWER`): the manifest has them.
    #[serde(skip_serializing_if = "is_zero")]
    pub gaps_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The most CAs a coverage answer lists, and the most gaps it lists of each: 1,000 CAs with
/// 10 gaps each, every one naming a changed report, is about 3.3 MB of JSON, under Lambda's
/// 6 MB response ("Lambda quotas": "6 MB each for request and response (synchronous)"). The
/// manifest has everything; the counts are of everything.
pub const MAX_CAS_IN_ANSWER: usize = 1000;
pub const MAX_GAPS_IN_ANSWER: usize = 10;

/// The answer cut to what Lambda can return: the CAs with gaps first (the rest in their
/// order), at most `MAX_CAS_IN_ANSWER` of them and `MAX_GAPS_IN_ANSWER` gaps of each, what was
/// left out counted. Applied after the manifest is written, which keeps them all.
pub fn cut_to_fit(summary: &mut CoverageSummary) {
    let cas = &mut summary.certificate_authorities;
    cas.sort_by_key(|c| c.gaps.is_empty());
    if cas.len() > MAX_CAS_IN_ANSWER {
        summary.certificate_authorities_omitted = cas.len() - MAX_CAS_IN_ANSWER;
        cas.truncate(MAX_CAS_IN_ANSWER);
    }
    for ca in cas.iter_mut() {
        if ca.gaps.len() > MAX_GAPS_IN_ANSWER {
            ca.gaps_omitted = ca.gaps.len() - MAX_GAPS_IN_ANSWER;
            ca.gaps.truncate(MAX_GAPS_IN_ANSWER);
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportCounts {
    pub total: usize,
    pub success: usize,
    pub failed: usize,
    /// CREATING: not followed up yet.
    pub pending: usize,
}

impl ReportCounts {
    pub fn of(reports: &[HistoryReport]) -> Self {
        let n = |s: ReportStatus| reports.iter().filter(|r| r.status == s).count();
        Self {
            total: reports.len(),
            success: n(ReportStatus::Success),
            failed: n(ReportStatus::Failed),
            pending: n(ReportStatus::Creating),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageCounts {
    pub certificate_authorities: usize,
    pub covered: usize,
    pub with_gaps: usize,
    pub reports: usize,
    pub gaps: usize,
    pub failed_reports: usize,
    pub never_audited: usize,
    /// SUCCESS reports whose objects changed since they were pinned (`verifyObjects`).
    pub evidence_changed: usize,
    /// SUCCESS reports whose objects were looked at (`verifyObjects`; absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_verified: Option<usize>,
}

impl CoverageCounts {
    /// The counts of the CAs' coverage.
    pub fn of(cas: &[CaCoverage]) -> Self {
        let mut c = Self {
            certificate_authorities: cas.len(),
            ..Self::default()
        };
        for ca in cas {
            if ca.gaps.is_empty() {
                c.covered += 1;
            } else {
                c.with_gaps += 1;
            }
            c.reports += ca.report_counts.total;
            c.gaps += ca.gaps.len();
            for g in &ca.gaps {
                match g.kind {
                    GapKind::FailedReport => c.failed_reports += 1,
                    GapKind::NeverAudited => c.never_audited += 1,
                    GapKind::EvidenceChanged => c.evidence_changed += 1,
                    GapKind::NoSuccess => {}
                }
            }
        }
        c
    }
}

/// Where the manifest of a coverage request is written.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub bucket: String,
    pub csv_key: String,
    pub json_key: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageSummary {
    /// The tool's version (`Cargo.toml`).
    pub version: ToolVersion,
    pub run_id: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    /// Interval plus slack: a longer stretch without a SUCCESS report is a gap.
    pub threshold_minutes: u64,
    pub counts: CoverageCounts,
    pub manifest: Manifest,
    /// The CAs, those with gaps first, cut to `MAX_CAS_IN_ANSWER` (`cut_to_fit`).
    pub certificate_authorities: Vec<CaCoverage>,
    /// CAs left out of `certificateAuthorities`: the manifest has them.
    #[serde(skip_serializing_if = "is_zero")]
    pub certificate_authorities_omitted: usize,
    /// Accounts or regions whose CAs could not be listed: the answer is incomplete there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_errors: Vec<AccountError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub region_errors: Vec<RegionError>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    #[error("coverage: reading the ledger: {0}")]
    Ledger(#[source] LedgerError),
    #[error("coverage: the report objects of {ca} could not be verified (verifyObjects): {source}")]
    Verify {
        ca: String,
        #[source]
        source: ServiceError,
    },
    #[error(
        "coverage: the invocation's deadline came after {read} of {total} CAs' histories were read; ask for a shorter period"
    )]
    Deadline { read: usize, total: usize },
    #[error(
        "coverage: the invocation's deadline came while the accounts and regions were listed ({listed} CAs listed); give the function more time or audit fewer account-regions per stack"
    )]
    ListingDeadline { listed: usize },
    #[error("coverage: the manifest could not be written to s3://{bucket}/{key}: {source}")]
    Manifest {
        bucket: String,
        key: String,
        #[source]
        source: ServiceError,
    },
    #[error("coverage: the manifest's CSV rows could not be encoded: {0}")]
    Csv(#[from] csv::Error),
    #[error("coverage: the manifest's JSON rows could not be encoded: {0}")]
    Json(#[from] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::gaps::GapKind;

    fn summary_of(cas: Vec<CaCoverage>) -> CoverageSummary {
        let at = Timestamp::from_epoch_seconds(0);
        CoverageSummary {
            version: Default::default(),
            run_id: "r".into(),
            from: at,
            to: at,
            generated_at: at,
            threshold_minutes: 0,
            counts: CoverageCounts::of(&cas),
            manifest: Manifest {
                bucket: "b".into(),
                csv_key: "c".into(),
                json_key: "j".into(),
            },
            certificate_authorities: cas,
            certificate_authorities_omitted: 0,
            account_errors: vec![],
            region_errors: vec![],
        }
    }

    #[test]
    fn an_answer_is_cut_to_fit_with_the_cas_with_gaps_first_and_what_was_cut_counted() {
        let at = Timestamp::from_epoch_seconds(0);
        let gap = Gap {
            kind: GapKind::FailedReport,
            from: at,
            to: at,
            report: None,
            failed_reports: Some(1),
        };
        let ca = |i: usize, gaps: usize| CaCoverage {
            certificate_authority_arn: format!("arn:{i:05}"),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            listed_now: true,
            coverage: if gaps == 0 { "covered" } else { "gaps" },
            report_counts: ReportCounts::default(),
            gaps: vec![gap.clone(); gaps],
            gaps_omitted: 0,
        };
        let cas: Vec<CaCoverage> = (0..MAX_CAS_IN_ANSWER + 5)
            .map(|i| {
                ca(
                    i,
                    if i % 100 == 99 {
                        MAX_GAPS_IN_ANSWER + 3
                    } else {
                        0
                    },
                )
            })
            .collect();
        let mut summary = summary_of(cas);
        cut_to_fit(&mut summary);
        assert_eq!(summary.certificate_authorities.len(), MAX_CAS_IN_ANSWER);
        assert_eq!(summary.certificate_authorities_omitted, 5);
        let with_gaps = summary.certificate_authorities.iter().take(10);
        assert!(
            with_gaps
                .clone()
                .all(|c| c.gaps.len() == MAX_GAPS_IN_ANSWER && c.gaps_omitted == 3)
        );
        assert_eq!(summary.counts.with_gaps, 10, "the counts are of everything");
        let v = serde_json::to_value(&summary).unwrap();
        assert_eq!(v["certificateAuthoritiesOmitted"], 5);
        assert!(
            v["certificateAuthorities"][MAX_CAS_IN_ANSWER - 1]
                .get("gapsOmitted")
                .is_none()
        );
    }
}
