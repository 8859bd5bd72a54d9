//! The log lines of a run and of a coverage request, and the run's CloudWatch metrics (an
//! Embedded Metric Format document): what operators read, written from the summaries.

// tracing-subscriber as lambda_runtime re-exports it (with its `json` and `env-filter`): one
// version of it in the binary.
use lambda_runtime::tracing::subscriber::EnvFilter;
use lambda_runtime::tracing::subscriber::filter::LevelFilter;
use lambda_runtime::tracing::subscriber::fmt::MakeWriter;
use lambda_runtime::tracing::subscriber::fmt::time::SystemTime;
use lambda_runtime::tracing::subscriber::util::SubscriberInitExt;

use crate::domain::outcome::{AccountError, RegionError};
use crate::evidence::CoverageSummary;
use crate::run::summary::RunSummary;

/// Every log line is one JSON object with a `level` and an RFC 3339 `timestamp`, so that
/// Lambda's log-level filter and Logs Insights see each line's real level. Lambda reads the
/// level of a JSON line from `"level"`, "For Lambda to use the timestamp field, you must
/// specify the time in valid RFC 3339 timestamp format. If you don't supply a valid timestamp,
/// Lambda will assign the log the level INFO" (Lambda developer guide, "Log-level filtering",
/// https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
/// lambda_runtime's default subscriber writes no time (`without_time`), so every ERROR line
/// was INFO to Lambda. What is logged: `RUST_LOG`'s directives when it has valid ones, else
/// the level of `AWS_LAMBDA_LOG_LEVEL` (Lambda sets it from `ApplicationLogLevel`), else INFO
/// (EnvFilter uses its default directive only when the variable gives none).
pub fn init_logs() {
    subscriber(std::io::stdout).init();
}

/// The subscriber `init_logs` installs, writing to `writer`.
fn subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let level = level.and_then(|l| l.parse::<LevelFilter>().ok());
    lambda_runtime::tracing::subscriber::fmt()
        .json()
        // `tracing_subscriber`'s SystemTime prints UTC as RFC 3339, to the microsecond.
        .with_timer(SystemTime)
        .with_target(false)
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(level.unwrap_or(LevelFilter::INFO).into())
                .from_env_lossy(),
        )
        .with_writer(writer)
        .finish()
}

// The summary's log and metrics live here, beside the other log lines, not with the run.
impl RunSummary {
    /// One log line per account or region error, and one for the run. Each CA's lines were
    /// written as its outcome and its report became known (`run::log`), so that a run killed
    /// half-way has logged the CAs it finished.
    pub fn log(&self) {
        let run = tracing::info_span!("run", run_id = %self.run_id);
        let _run = run.enter();
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
            rejected_objects = c.rejected_objects,
            overdue = c.overdue,
            events_sent = c.events_sent,
            events_not_sent = c.events_not_sent,
            findings_imported = c.findings_imported,
            findings_not_imported = c.findings_not_imported,
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
        let outside = (self.account_errors.iter())
            .filter(|a| crate::domain::code::Code::is_out_of_scope(&a.error_code))
            .count();
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
                        {"Name": "Failed", "Unit": "Count"},
                        {"Name": "RejectedObjects", "Unit": "Count"},
                        {"Name": "OutOfScope", "Unit": "Count"},
                        {"Name": "AccountsNotEntered", "Unit": "Count"},
                        {"Name": "OverdueCertificateAuthorities", "Unit": "Count"},
                        {"Name": "EventsNotSent", "Unit": "Count"},
                        {"Name": "FindingsNotImported", "Unit": "Count"}
                    ]
                }]
            },
            "FunctionName": function_name,
            "Requested": c.requested,
            "Skipped": c.skipped,
            "Deferred": c.deferred,
            // A region that could not be listed hides its CAs: count it as a failure too. A
            // CA whose report ended FAILED is in `failed`. An account not entered has its own
            // metric: a missing member role would otherwise keep this alarm on for good.
            "Failed": c.failed + self.region_errors.len() + outside,
            "AccountsNotEntered": self.account_errors.len() - outside,
            // Audited CAs without a SUCCESS report for longer than the coverage threshold.
            "OverdueCertificateAuthorities": c.overdue,
            "EventsNotSent": c.events_not_sent,
            "FindingsNotImported": c.findings_not_imported,
            // Objects someone put where the service writes reports: each one an alarm's worth.
            "RejectedObjects": c.rejected_objects,
            // A work item or a CA asked for outside AUDIT_ACCOUNTS or AUDIT_REGIONS: a bug or
            // someone trying; refused, and counted apart (also in Failed).
            "OutOfScope": c.out_of_scope,
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

// The coverage summary's log lines live here too, beside the run's.
impl CoverageSummary {
    /// One WARN line per gap, inside span `ca`, then the counts.
    pub fn log(&self) {
        let run = tracing::info_span!("coverage", run_id = %self.run_id);
        let _run = run.enter();
        // Each CA's gaps were logged as it was judged (`evidence::gaps::log_gaps`).
        log_errors(&self.account_errors, &self.region_errors);
        let c = self.counts;
        tracing::info!(
            certificate_authorities = c.certificate_authorities,
            covered = c.covered,
            with_gaps = c.with_gaps,
            reports = c.reports,
            gaps = c.gaps,
            "coverage of {} to {} written to s3://{}/{}",
            self.from,
            self.to,
            self.manifest.bucket,
            self.manifest.csv_key
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The lines a subscriber wrote, kept for the test to read.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_log_line_carries_the_level_and_an_rfc3339_timestamp_lambda_reads() {
        let lines = Lines::default();
        let writer = lines.clone();
        let before = Timestamp::from_system_time(std::time::SystemTime::now());
        tracing::subscriber::with_default(subscriber(move || writer.clone()), || {
            tracing::error!(error_code = "AccessDenied", "listing CAs failed");
            tracing::warn!("coverage gap");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line one JSON object"))
            .collect();
        let levels: Vec<&str> = parsed
            .iter()
            .map(|l| l["level"].as_str().unwrap())
            .collect();
        assert_eq!(levels, ["ERROR", "WARN"]);
        for line in &parsed {
            let at = line["timestamp"]
                .as_str()
                .expect("a timestamp on every line");
            let at = Timestamp::parse(at).unwrap_or_else(|| panic!("not RFC 3339: {at}"));
            assert!(at >= before, "the time of writing, not {at}");
        }
    }
    use crate::domain::outcome::{CaOutcome, Outcome};
    use crate::domain::report::{CheckLimit, ReportCheck, ReportContents, ReportStatus};
    use crate::domain::time::Timestamp;
    use crate::run::summary::Counts;

    #[test]
    fn metrics_document_counts_region_errors_as_failures() {
        let s = RunSummary {
            started_at: Timestamp::from_epoch_seconds(10),
            finished_at: Timestamp::from_epoch_seconds(20),
            accounts: vec!["self".into()],
            regions: vec!["us-east-1".into()],
            counts: Counts {
                requested: 2,
                failed: 1,
                ..Counts::default()
            },
            region_errors: vec![RegionError {
                account_id: "123456789012".into(),
                region: "eu-west-1".into(),
                error_code: "AccessDenied".into(),
                error_message: "no".into(),
            }],
            ..RunSummary::empty_for_tests()
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
    fn an_account_not_entered_has_its_own_metric_and_leaves_failed_alone() {
        let error = |code: &str| AccountError {
            account_id: "222222222222".into(),
            error_code: code.into(),
            error_message: "m".into(),
        };
        let s = RunSummary {
            started_at: Timestamp::from_epoch_seconds(10),
            finished_at: Timestamp::from_epoch_seconds(20),
            counts: Counts {
                overdue: 3,
                events_not_sent: 2,
                findings_not_imported: 4,
                ..Counts::default()
            },
            account_errors: vec![error("AssumeRoleFailed"), error("AccountNotAudited")],
            ..RunSummary::empty_for_tests()
        };
        let m = s.metrics_document("fn");
        assert_eq!(m["AccountsNotEntered"], 1);
        assert_eq!(m["Failed"], 1, "only the work item refused as out of scope");
        assert_eq!(m["OverdueCertificateAuthorities"], 3);
        assert_eq!(m["EventsNotSent"], 2);
        assert_eq!(m["FindingsNotImported"], 4);
        let names = m["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        for name in [
            "AccountsNotEntered",
            "OverdueCertificateAuthorities",
            "EventsNotSent",
            "FindingsNotImported",
        ] {
            assert!(names.contains(name), "{name}");
        }
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
                limit: CheckLimit::None,
                contents: Some(ReportContents {
                    certificates: 10,
                    issued_since: issued,
                    revoked_since: revoked,
                    ..Default::default()
                }),
                pin: None,
            }),
            outcome: Outcome::Deferred { detail: "d".into() },
            rejected_objects: Vec::new(),
        };
        let s = RunSummary {
            started_at: Timestamp::from_epoch_seconds(10),
            finished_at: Timestamp::from_epoch_seconds(20),
            certificate_authorities: vec![read(3, 1), read(4, 0)],
            ..RunSummary::empty_for_tests()
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
