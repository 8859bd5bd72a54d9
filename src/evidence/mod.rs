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
    pub run_id: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    /// Interval plus slack: a longer stretch without a SUCCESS report is a gap.
    pub threshold_minutes: u64,
    pub counts: CoverageCounts,
    pub manifest: Manifest,
    pub certificate_authorities: Vec<CaCoverage>,
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
