//! What a run did, CA by CA: the return value, the log lines and the metrics.

use serde::Serialize;

use crate::config::ReportFormat;
use crate::request::Trigger;
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
    Failed {
        error_code: String,
        error_message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaOutcome {
    pub certificate_authority_arn: String,
    pub region: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A region whose CAs could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionError {
    pub region: String,
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
    pub failed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub regions: Vec<String>,
    pub counts: Counts,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub region_errors: Vec<RegionError>,
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
                Outcome::Failed { .. } => c.failed += 1,
            }
        }
        c
    }

    pub fn failed(&self) -> impl Iterator<Item = &CaOutcome> {
        self.certificate_authorities
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Failed { .. }))
    }

    /// One structured line per CA, then one for the run.
    pub fn log(&self) {
        for ca in &self.certificate_authorities {
            let arn = ca.certificate_authority_arn.as_str();
            let region = ca.region.as_str();
            let run_id = self.run_id.as_str();
            match &ca.outcome {
                Outcome::Requested {
                    report_id, s3_key, ..
                } => tracing::info!(
                    run_id,
                    ca_arn = arn,
                    region,
                    outcome = "requested",
                    report_id,
                    s3_key,
                    "audit report requested"
                ),
                Outcome::WouldRequest => {
                    tracing::info!(
                        run_id,
                        ca_arn = arn,
                        region,
                        outcome = "wouldRequest",
                        "dry run: audit report would be requested"
                    )
                }
                Outcome::Skipped {
                    reason,
                    detail,
                    next_eligible_at,
                } => tracing::info!(
                    run_id,
                    ca_arn = arn,
                    region,
                    outcome = "skipped",
                    reason = ?reason,
                    next_eligible_at = next_eligible_at.map(|t| t.to_string()),
                    "{detail}"
                ),
                Outcome::Deferred { detail } => {
                    tracing::warn!(
                        run_id,
                        ca_arn = arn,
                        region,
                        outcome = "deferred",
                        "{detail}"
                    )
                }
                Outcome::Failed {
                    error_code,
                    error_message,
                } => tracing::error!(
                    run_id,
                    ca_arn = arn,
                    region,
                    outcome = "failed",
                    error_code,
                    "{error_message}"
                ),
            }
        }
        for r in &self.region_errors {
            tracing::error!(
                run_id = self.run_id,
                region = r.region,
                error_code = r.error_code,
                "listing CAs failed: {}",
                r.error_message
            );
        }
        let c = self.counts;
        tracing::info!(
            run_id = self.run_id,
            dry_run = self.dry_run,
            requested = c.requested,
            would_request = c.would_request,
            skipped = c.skipped,
            deferred = c.deferred,
            failed = c.failed,
            region_errors = self.region_errors.len(),
            started_at = %self.started_at,
            finished_at = %self.finished_at,
            "run finished"
        );
    }

    /// The run's counts as one CloudWatch Embedded Metric Format document, which CloudWatch
    /// turns into metrics (namespace `PcaAuditScheduler`) without a PutMetricData call.
    pub fn metrics_document(&self, function_name: &str) -> serde_json::Value {
        let c = self.counts;
        serde_json::json!({
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
            // A region that could not be listed hides its CAs: count it as a failure too.
            "Failed": c.failed + self.region_errors.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_flat_with_camel_case_fields() {
        let o = CaOutcome {
            certificate_authority_arn: "arn:x".into(),
            region: "us-east-1".into(),
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
    fn metrics_document_counts_region_errors_as_failures() {
        let s = RunSummary {
            run_id: "r".into(),
            trigger: Trigger::Manual,
            dry_run: false,
            started_at: Timestamp::from_epoch_seconds(10),
            finished_at: Timestamp::from_epoch_seconds(20),
            regions: vec!["us-east-1".into()],
            counts: Counts {
                requested: 2,
                failed: 1,
                ..Counts::default()
            },
            region_errors: vec![RegionError {
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
    }
}
