//! What a run did, CA by CA: the return value, the log lines and the metrics.

use serde::Serialize;

use crate::format::ReportFormat;
use crate::request::{Trigger, WorkItem};
use crate::time::Timestamp;

/// Why a CA was left alone this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// The CA's state is not among those audited (AUDIT_CA_STATES).
    CaState,
    /// The ledger's window has not passed since the CA's last report.
    InsideWindow,
    /// Another run holds the CA's claim and its lease has not expired.
    ClaimedByAnotherRun,
    /// The service said the CA is inside its own 30 minutes (a report made outside this function).
    ServiceWindow,
    /// The service refused the CA's state (InvalidStateException).
    ServiceRefusedState,
    /// Listed in EXEMPT_CA_ARNS.
    Exempt,
    /// Its type (ROOT, SUBORDINATE) is not among AUDIT_CA_TYPES.
    CaType,
    /// It lacks a tag of REQUIRED_TAGS.
    MissingTag,
    /// The service accepted a create whose answer was lost, and the report is not in the
    /// bucket yet: the next run looks for it there before any new request.
    LostReportPending,
}

impl SkipReason {
    /// The name the summary gives it, for the log lines to say the same.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaState => "caState",
            Self::InsideWindow => "insideWindow",
            Self::ClaimedByAnotherRun => "claimedByAnotherRun",
            Self::ServiceWindow => "serviceWindow",
            Self::ServiceRefusedState => "serviceRefusedState",
            Self::Exempt => "exempt",
            Self::CaType => "caType",
            Self::MissingTag => "missingTag",
            Self::LostReportPending => "lostReportPending",
        }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What the report says (READ_REPORTS), once read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<crate::report_contents::ReportContents>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Outcome {
    Requested {
        report_id: String,
        s3_bucket: String,
        s3_key: String,
        format: ReportFormat,
        requested_at: Timestamp,
    },
    /// Dry run: this CA would have been requested.
    WouldRequest,
    Skipped {
        reason: SkipReason,
        detail: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_eligible_at: Option<Timestamp>,
    },
    /// Not started for lack of time (or quota); the next run takes it first.
    Deferred { detail: String },
    /// A report whose id was never recorded (a run died after requesting it, or the
    /// service's answer to the create was lost): found in the bucket and recorded now,
    /// without a new request.
    Recovered {
        /// How the report's id came to be lost.
        detail: String,
        report_id: String,
        s3_bucket: String,
        s3_key: String,
        format: ReportFormat,
        /// When the object was written (the request itself was a little earlier).
        requested_at: Timestamp,
        size_bytes: u64,
    },
    Failed {
        error_code: String,
        error_message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaOutcome {
    pub certificate_authority_arn: String,
    pub account_id: String,
    pub region: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The follow-up of a report requested in this run or an earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportCheck>,
}

impl CaOutcome {
    /// A failed CA, for the counts, the metrics and the invocation's verdict: its outcome
    /// failed, or a report of it ended FAILED.
    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
            || self
                .report
                .as_ref()
                .is_some_and(|r| r.status == ReportStatus::Failed)
    }
}

/// An account-region whose CAs could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionError {
    pub account_id: String,
    pub region: String,
    pub error_code: String,
    pub error_message: String,
}

/// An account the function could not enter (its role could not be assumed), or the
/// organization whose accounts could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountError {
    pub account_id: String,
    pub error_code: String,
    pub error_message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub requested: usize,
    pub would_request: usize,
    pub skipped: usize,
    pub deferred: usize,
    /// CAs whose outcome failed or whose report ended FAILED.
    pub failed: usize,
    pub recovered: usize,
    /// Reports followed up in this run, by what they came to.
    pub reports_succeeded: usize,
    pub reports_failed: usize,
    pub reports_pending: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The accounts audited, by id (the function's own is `self` when its id is not known).
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub counts: Counts,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_errors: Vec<AccountError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub region_errors: Vec<RegionError>,
    /// Account-regions sent to the fan-out queue, each done by an invocation of its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fanned_out: Vec<WorkItem>,
    pub certificate_authorities: Vec<CaOutcome>,
}

impl RunSummary {
    pub fn count(outcomes: &[CaOutcome]) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            match o.outcome {
                Outcome::Requested { .. } => c.requested += 1,
                Outcome::WouldRequest => c.would_request += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
                Outcome::Deferred { .. } => c.deferred += 1,
                Outcome::Recovered { .. } => c.recovered += 1,
                Outcome::Failed { .. } => {}
            }
            if o.is_failure() {
                c.failed += 1;
            }
            match o.report.as_ref().map(|r| r.status) {
                Some(ReportStatus::Success) => c.reports_succeeded += 1,
                Some(ReportStatus::Failed) => c.reports_failed += 1,
                Some(ReportStatus::Creating) => c.reports_pending += 1,
                None => {}
            }
        }
        c
    }

    pub fn failed(&self) -> impl Iterator<Item = &CaOutcome> {
        self.certificate_authorities
            .iter()
            .filter(|o| o.is_failure())
    }

    /// One log line per CA (and per report followed up), per account or region error, and
    /// one for the run, inside spans that carry the run's and the CA's ids.
    pub fn log(&self) {
        let run = tracing::info_span!("run", run_id = %self.run_id);
        let _run = run.enter();
        for ca in &self.certificate_authorities {
            let span = tracing::info_span!(
                "ca",
                ca_arn = %ca.certificate_authority_arn,
                region = %ca.region
            );
            let _ca = span.enter();
            if let Some(r) = &ca.report {
                log_report(r);
            }
            log_outcome(&ca.outcome);
        }
        log_errors(&self.account_errors, &self.region_errors);
        let c = self.counts;
        tracing::info!(
            dry_run = self.dry_run,
            requested = c.requested,
            would_request = c.would_request,
            skipped = c.skipped,
            deferred = c.deferred,
            failed = c.failed,
            recovered = c.recovered,
            reports_succeeded = c.reports_succeeded,
            reports_failed = c.reports_failed,
            reports_pending = c.reports_pending,
            account_errors = self.account_errors.len(),
            region_errors = self.region_errors.len(),
            fanned_out = self.fanned_out.len(),
            started_at = %self.started_at,
            finished_at = %self.finished_at,
            "run finished"
        );
    }

    /// The run's counts as one CloudWatch Embedded Metric Format document, which CloudWatch
    /// turns into metrics (namespace `PcaAuditScheduler`) without a PutMetricData call.
    pub fn metrics_document(&self, function_name: &str) -> serde_json::Value {
        let c = self.counts;
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": self.finished_at.epoch_seconds() * 1000,
                "CloudWatchMetrics": [{
                    "Namespace": "PcaAuditScheduler",
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [
                        {"Name": "Requested", "Unit": "Count"},
                        {"Name": "Skipped", "Unit": "Count"},
                        {"Name": "Deferred", "Unit": "Count"},
                        {"Name": "Failed", "Unit": "Count"}
                    ]
                }]
            },
            "FunctionName": function_name,
            "Requested": c.requested,
            "Skipped": c.skipped,
            "Deferred": c.deferred,
            // An account or region that could not be listed hides its CAs: count it as a
            // failure too. A CA whose report ended FAILED is in `failed`.
            "Failed": c.failed + self.region_errors.len() + self.account_errors.len(),
        });
        self.add_certificate_metrics(&mut doc);
        doc
    }

    /// READ_REPORTS: the run's totals of certificates issued and revoked, over the reports
    /// read in this run; left out when none was read. Run totals only: a per-CA dimension
    /// would cost a custom metric per CA.
    fn add_certificate_metrics(&self, doc: &mut serde_json::Value) {
        let read: Vec<_> = (self.certificate_authorities.iter())
            .filter_map(|ca| ca.report.as_ref()?.contents.as_ref())
            .collect();
        if read.is_empty() {
            return;
        }
        let issued: u64 = read.iter().map(|c| c.issued_since).sum();
        let revoked: u64 = read.iter().map(|c| c.revoked_since).sum();
        if let Some(metrics) = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array_mut() {
            metrics.push(serde_json::json!({"Name": "CertificatesIssued", "Unit": "Count"}));
            metrics.push(serde_json::json!({"Name": "CertificatesRevoked", "Unit": "Count"}));
        }
        doc["CertificatesIssued"] = issued.into();
        doc["CertificatesRevoked"] = revoked.into();
    }
}

/// The accounts that could not be entered and the account-regions that could not be listed,
/// one ERROR line each.
pub fn log_errors(accounts: &[AccountError], regions: &[RegionError]) {
    for a in accounts {
        tracing::error!(
            account_id = a.account_id,
            error_code = a.error_code,
            "account not audited: {}",
            a.error_message
        );
    }
    for r in regions {
        tracing::error!(
            account_id = r.account_id,
            region = r.region,
            error_code = r.error_code,
            "listing CAs failed: {}",
            r.error_message
        );
    }
}

/// The CA's log line of what its report says, or why it could not be read (inside the run's
/// `ca` span).
fn log_contents(r: &ReportCheck) {
    let report_id = r.report_id.as_str();
    if let Some(c) = &r.contents {
        tracing::info!(
            report_id,
            certificates = c.certificates,
            certificates_issued = c.issued_since,
            certificates_revoked = c.revoked_since,
            first_issued = ?c.first_issued,
            first_revoked = ?c.first_revoked,
            "audit report read"
        );
    } else if let (ReportStatus::Success, Some(detail)) = (r.status, &r.detail) {
        tracing::error!(report_id, error_code = "ReportUnreadable", "{detail}");
    }
}

/// The follow-up of a CA's report, as one log line.
fn log_report(r: &ReportCheck) {
    let detail = r.detail.as_deref().unwrap_or("");
    let (report_id, report_status) = (r.report_id.as_str(), r.status.as_str());
    match r.status {
        ReportStatus::Failed => {
            tracing::error!(report_id, report_status, "audit report failed: {detail}")
        }
        _ => tracing::info!(
            report_id,
            report_status,
            size_bytes = r.size_bytes,
            "audit report checked"
        ),
    }
    log_contents(r);
}

/// What became of a CA, as one log line.
fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Requested {
            report_id, s3_key, ..
        } => tracing::info!(
            outcome = "requested",
            report_id,
            s3_key,
            "audit report requested"
        ),
        Outcome::WouldRequest => tracing::info!(
            outcome = "wouldRequest",
            "dry run: audit report would be requested"
        ),
        Outcome::Skipped {
            reason,
            detail,
            next_eligible_at,
        } => tracing::info!(
            outcome = "skipped",
            reason = reason.as_str(),
            next_eligible_at = next_eligible_at.map(|t| t.to_string()),
            "{detail}"
        ),
        Outcome::Recovered {
            report_id,
            s3_key,
            detail,
            ..
        } => tracing::warn!(
            outcome = "recovered",
            report_id,
            s3_key,
            "audit report found in the bucket and recorded: {detail}"
        ),
        Outcome::Deferred { detail } => tracing::warn!(outcome = "deferred", "{detail}"),
        Outcome::Failed {
            error_code,
            error_message,
        } => tracing::error!(outcome = "failed", error_code, "{error_message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_flat_with_camel_case_fields() {
        let o = CaOutcome {
            certificate_authority_arn: "arn:x".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            report: None,
            outcome: Outcome::Skipped {
                reason: SkipReason::InsideWindow,
                detail: "last report 2026-11-25T01:00:00Z".into(),
                next_eligible_at: Some(Timestamp::from_epoch_seconds(1_800)),
            },
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["outcome"], "skipped");
        assert_eq!(v["reason"], "insideWindow");
        assert_eq!(v["nextEligibleAt"], "1970-01-01T00:30:00Z");
        assert_eq!(v["certificateAuthorityArn"], "arn:x");
        let f = serde_json::to_value(Outcome::Failed {
            error_code: "ResourceNotFoundException".into(),
            error_message: "gone".into(),
        })
        .unwrap();
        assert_eq!(f["errorCode"], "ResourceNotFoundException");
    }

    #[test]
    fn skip_reasons_are_named_alike_in_the_summary_and_the_logs() {
        use SkipReason::*;
        for r in [
            CaState,
            InsideWindow,
            ClaimedByAnotherRun,
            ServiceWindow,
            ServiceRefusedState,
            Exempt,
            CaType,
            MissingTag,
            LostReportPending,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn a_failed_report_counts_as_a_failed_ca() {
        let check = |status| ReportCheck {
            report_id: "r-1".into(),
            status,
            size_bytes: None,
            detail: None,
            contents: None,
        };
        let skipped = Outcome::Skipped {
            reason: SkipReason::InsideWindow,
            detail: "d".into(),
            next_eligible_at: None,
        };
        let ca = |report| CaOutcome {
            certificate_authority_arn: "arn:x".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            outcome: skipped.clone(),
            report,
        };
        let c = RunSummary::count(&[
            ca(Some(check(ReportStatus::Failed))),
            ca(Some(check(ReportStatus::Success))),
            ca(Some(check(ReportStatus::Creating))),
            ca(None),
        ]);
        assert_eq!(c.skipped, 4);
        assert_eq!(c.failed, 1);
        assert_eq!(
            (c.reports_succeeded, c.reports_failed, c.reports_pending),
            (1, 1, 1)
        );
        let v = serde_json::to_value(ca(Some(check(ReportStatus::Failed)))).unwrap();
        assert_eq!(v["report"]["status"], "FAILED");
    }

    #[test]
    fn metrics_document_counts_region_errors_as_failures() {
        let s = RunSummary {
            run_id: "r".into(),
            trigger: Trigger::Manual,
            dry_run: false,
            started_at: Timestamp::from_epoch_seconds(10),
            finished_at: Timestamp::from_epoch_seconds(20),
            accounts: vec!["self".into()],
            regions: vec!["us-east-1".into()],
            counts: Counts {
                requested: 2,
                failed: 1,
                ..Counts::default()
            },
            account_errors: vec![],
            fanned_out: vec![],
            region_errors: vec![RegionError {
                account_id: "123456789012".into(),
                region: "eu-west-1".into(),
                error_code: "AccessDenied".into(),
                error_message: "no".into(),
            }],
            certificate_authorities: vec![],
        };
        let m = s.metrics_document("fn");
        assert_eq!(m["Failed"], 2);
        assert_eq!(m["Requested"], 2);
        assert_eq!(
            m["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "PcaAuditScheduler"
        );
        assert_eq!(m["_aws"]["Timestamp"], 20_000);
        // No report read in this run: no certificate metrics.
        assert!(m.get("CertificatesIssued").is_none());
        let metrics = m["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(!metrics.contains("Certificates"), "{metrics}");
    }

    #[test]
    fn metrics_document_totals_certificates_of_the_reports_read() {
        let read = |issued, revoked| CaOutcome {
            certificate_authority_arn: "arn:x".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            report: Some(ReportCheck {
                report_id: "r-1".into(),
                status: ReportStatus::Success,
                size_bytes: Some(10),
                detail: None,
                contents: Some(crate::report_contents::ReportContents {
                    certificates: 10,
                    issued_since: issued,
                    revoked_since: revoked,
                    ..Default::default()
                }),
            }),
            outcome: Outcome::Deferred { detail: "d".into() },
        };
        let s = RunSummary {
            run_id: "r".into(),
            trigger: Trigger::Manual,
            dry_run: false,
            started_at: Timestamp::from_epoch_seconds(10),
            finished_at: Timestamp::from_epoch_seconds(20),
            accounts: vec![],
            regions: vec![],
            counts: Counts::default(),
            account_errors: vec![],
            fanned_out: vec![],
            region_errors: vec![],
            certificate_authorities: vec![read(3, 1), read(4, 0)],
        };
        let m = s.metrics_document("fn");
        assert_eq!(
            (
                m["CertificatesIssued"].as_u64(),
                m["CertificatesRevoked"].as_u64()
            ),
            (Some(7), Some(1))
        );
        let names: Vec<&str> = m["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["Name"].as_str().unwrap())
            .collect();
        assert!(
            names.ends_with(&["CertificatesIssued", "CertificatesRevoked"]),
            "{names:?}"
        );
        let v = serde_json::to_value(&s.certificate_authorities[0]).unwrap();
        assert_eq!(v["report"]["contents"]["issuedSince"], 3);
    }
}
