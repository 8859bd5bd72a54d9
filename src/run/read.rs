//! Reading a SUCCESS report (READ_REPORTS): what it lists since the CA's previous one, and the
//! SHA-256 of its object, within the reading budget (READ_REPORTS_MAX_MIB,
//! READ_REPORTS_MAX_SECONDS). The follow-up reads beside the creates, so a report slow to
//! read never holds an account-region's creates up.

use super::RunContext;
use crate::domain::arn::CaArn;
use crate::domain::bucket::format_of_key;
use crate::domain::report::{CheckLimit, ObjectPin, ReportCheck, ReportStatus};
use crate::domain::window::PendingReport;
use crate::evidence::contents;

/// A SUCCESS report left unread, and why: it is not read again.
fn unread(check: &ReportCheck, reason: String) -> ReportCheck {
    ReportCheck {
        detail: Some(format!("{}: {reason}", contents::UNREAD)),
        limit: CheckLimit::Unreadable,
        ..check.clone()
    }
}

/// Why a report is too large to read within the budget, if it is.
fn over_size(check: &ReportCheck, budget: &crate::config::ReadBudget) -> Option<String> {
    let size = check.size_bytes.filter(|size| *size > budget.max_bytes)?;
    Some(format!(
        "{} MiB is over READ_REPORTS_MAX_MIB ({}); the report itself is in the bucket",
        size / 1_048_576,
        budget.max_bytes / 1_048_576
    ))
}

impl RunContext<'_> {
    /// The reading of a SUCCESS report (READ_REPORTS): counted since the CA's previous
    /// SUCCESS report (the ledger's history), and put on the check, its SHA-256 on the pin
    /// (recorded only for a report read to its end and parsed). A report that cannot be
    /// read or parsed stays SUCCESS (the service made it; the object is there): the failure
    /// is the check's detail, for the summary, the log and the history item.
    pub(super) async fn read_contents(
        &self,
        arn: &CaArn,
        pending: &PendingReport,
        check: ReportCheck,
    ) -> ReportCheck {
        if check.status != ReportStatus::Success {
            return check;
        }
        let services = self.services;
        let budget = services.settings.read_budget;
        let unread = |reason: String| unread(&check, reason);
        if let Some(reason) = over_size(&check, &budget) {
            return unread(reason);
        }
        let read = async {
            let Some(format) = format_of_key(&pending.s3_key) else {
                return Err(format!(
                    "s3://{}/{} is named neither .json nor .csv",
                    pending.s3_bucket, pending.s3_key
                ));
            };
            let since = (services.ledger)
                .previous_report_at(arn, pending.requested_at)
                .await
                .map_err(|e| format!("finding the previous report: {e}"))?;
            let (bucket, key) = (&pending.s3_bucket, &pending.s3_key);
            // What was just pinned is what is read: its version, and its ETag as a condition.
            contents::read(
                &services.s3,
                (bucket, key, check.pin.as_ref()),
                format,
                since,
            )
            .await
            .map_err(|e| e.to_string())
        };
        let read = tokio::time::timeout(budget.max_time, read);
        let Ok(read) = read.await else {
            return unread(format!(
                "reading took longer than READ_REPORTS_MAX_SECONDS ({} s)",
                budget.max_time.as_secs()
            ));
        };
        match read {
            // The SHA-256 is of the version read, the one pinned.
            Ok(read) => ReportCheck {
                contents: Some(read.contents),
                pin: Some(ObjectPin {
                    sha256: Some(read.sha256),
                    ..check.pin.unwrap_or_default()
                }),
                ..check
            },
            Err(reason) => ReportCheck {
                detail: Some(format!("{}: {reason}", contents::UNREADABLE)),
                limit: CheckLimit::Unreadable,
                ..check
            },
        }
    }
}
