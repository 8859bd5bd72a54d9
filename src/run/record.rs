//! Record: the report the service accepted, written to the ledger and handed to the follow-up.

use tokio::sync::mpsc;

use super::RunContext;
use crate::aws::acm_pca;
use crate::aws::ledger::{Claim, ReportRecord};
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::outcome::{CaOutcome, Outcome, failed, outcome};
use crate::domain::report::ReportStatus;
use crate::domain::time::Timestamp;
use crate::domain::window::{Event, PendingReport, next_eligible};

impl RunContext<'_> {
    /// Records the report the service accepted and hands it to the follow-up.
    pub(super) async fn record_new(
        &self,
        claim: &Claim,
        requested_at: Timestamp,
        report: acm_pca::AuditReport,
        reports: &mpsc::UnboundedSender<(CaArn, PendingReport)>,
    ) -> CaOutcome {
        let services = self.services;
        let arn = &claim.arn;
        let record = ReportRecord {
            report_id: report.id,
            s3_bucket: services.settings.report_bucket.clone(),
            s3_key: report.s3_key,
            format: self.format,
            requested_at,
            next_eligible_at: next_eligible(
                Event::Reported(requested_at),
                services.settings.min_interval,
            ),
            status: ReportStatus::Creating,
            size_bytes: None,
            recovered: false,
            pin: None,
        };
        match services
            .ledger
            .record(claim, &self.invocation.run_id, &record)
            .await
        {
            Ok(()) => {
                // The follow-up may already be gone (out of time): the report then
                // stays CREATING in the ledger, for the next run.
                let _ = reports.send((
                    arn.clone(),
                    PendingReport {
                        report_id: record.report_id.clone(),
                        s3_bucket: record.s3_bucket.clone(),
                        s3_key: record.s3_key.clone(),
                        requested_at,
                    },
                ));
                outcome(
                    arn,
                    Outcome::Requested {
                        report_id: record.report_id,
                        s3_bucket: record.s3_bucket,
                        s3_key: record.s3_key,
                        format: record.format,
                        requested_at,
                    },
                )
            }
            // The report exists but the ledger does not say so. The claim stays until
            // its lease runs out, so no run requests the CA again meanwhile; the run
            // after that finds the report in the bucket.
            Err(e) => outcome(
                arn,
                failed(
                    Code::LedgerWriteFailed.as_str(),
                    format!(
                        "audit report {} ({}) was requested but not recorded: {e}",
                        record.report_id, record.s3_key
                    ),
                ),
            ),
        }
    }
}
