//! Follow-up: every audit report followed until it has ended. The service's answer and the
//! object in the bucket decide what it came to (`domain::report::check_of`); what it came to
//! is written to the ledger, and a FAILED report reopens its CA's window.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{RunContext, log};
use crate::aws::{ServiceError, acm_pca, s3};
use crate::domain::arn::CaArn;
use crate::domain::bucket::format_of_key;
use crate::domain::report::{CheckLimit, ReportCheck, ReportStatus, check_of, still_creating};
use crate::domain::window::{PendingReport, Window, reopen_after};
use crate::evidence::contents;
use crate::services::TargetClient;

/// The first look at a new report: the service usually writes it within seconds.
const FIRST_CHECK: Duration = Duration::from_secs(3);
/// Between two looks at a report still CREATING (the SDK waiter's interval).
const CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// How long a run waits for its reports after its last create: the rest are followed up
/// first thing next run.
const FOLLOW_UP_LIMIT: Duration = Duration::from_secs(300);

/// A report this run's follow-up is waiting to look at.
type Waiting = (Instant, CaArn, PendingReport);

/// Where one report stands: CREATING, or SUCCESS with the object there and not empty (and
/// pinned: its version, ETag and checksum), or FAILED with the likely cause.
async fn look(
    client: &TargetClient,
    store: &s3::Store,
    arn: &CaArn,
    report: &PendingReport,
) -> Result<ReportCheck, ServiceError> {
    let status = acm_pca::report_status(&client.acm_pca, arn, &report.report_id).await?;
    let object = match status {
        Some(aws_sdk_acmpca::types::AuditReportStatus::Success) => {
            s3::report_object(store, &report.s3_bucket, &report.s3_key, None).await?
        }
        _ => None,
    };
    let check = check_of(
        arn,
        report,
        status.as_ref(),
        object.as_ref().map(|o| o.size_bytes),
    );
    let pin = object
        .filter(|_| check.status == ReportStatus::Success)
        .map(|o| o.pin);
    Ok(ReportCheck { pin, ..check })
}

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
    /// Reports of earlier runs not yet seen to end are followed up first: a FAILED one
    /// reopens its CA's window, which may make the CA due again in this very run.
    pub(super) async fn follow_up_earlier(
        &self,
        client: &TargetClient,
        candidates: &[CaArn],
        windows: &mut HashMap<String, Window>,
    ) -> HashMap<String, ReportCheck> {
        let mut checks = HashMap::new();
        if self.request.dry_run {
            return checks;
        }
        let interval = self.services.settings.min_interval;
        for arn in candidates {
            let Some(w) = windows.get_mut(arn.as_str()) else {
                continue;
            };
            let Some(pending) = w.pending_report() else {
                continue;
            };
            let check = self.follow_up_once(client, arn, &pending).await;
            if let Some(reopen) = reopen_after(check.status, pending.requested_at, interval) {
                w.next_eligible_at = Some(reopen);
            }
            log::report_line(arn, &check);
            checks.insert(arn.to_string(), check);
        }
        checks
    }

    /// One look at a report: what it came to is written to the ledger once it has ended.
    pub(super) async fn follow_up_once(
        &self,
        client: &TargetClient,
        arn: &CaArn,
        pending: &PendingReport,
    ) -> ReportCheck {
        if !client.reads.wait_turn(self.invocation.cutoff()).await {
            let why = "not looked at: too little time left in this invocation; the next run looks";
            return still_creating(pending, Some(why.into()));
        }
        let check = match look(client, &self.services.s3, arn, pending).await {
            Ok(check) => check,
            Err(e) => {
                return still_creating(pending, Some(format!("could not follow it up: {e}")));
            }
        };
        if check.status == ReportStatus::Creating {
            return check;
        }
        let check = if self.services.settings.read_reports {
            self.read_contents(arn, pending, check).await
        } else {
            check
        };
        let interval = self.services.settings.min_interval;
        let reopen = reopen_after(check.status, pending.requested_at, interval);
        let now = self.services.clock.now();
        let ledger = &self.services.ledger;
        match ledger.verified(arn, pending, &check, reopen, now).await {
            Ok(()) => check,
            // Seen but not written: the next run looks again.
            Err(e) => ReportCheck {
                detail: Some(format!(
                    "{}; not recorded: {e}",
                    check
                        .detail
                        .clone()
                        .unwrap_or_else(|| check.status.as_str().into())
                )),
                ..check
            },
        }
    }

    /// The reading of a SUCCESS report (READ_REPORTS): counted since the CA's previous
    /// SUCCESS report (the ledger's history), and put on the check. A report that cannot be
    /// read or parsed stays SUCCESS (the service made it; the object is there): the failure
    /// is the check's detail, for the summary, the log and the history item.
    async fn read_contents(
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
            // The version just pinned is the one read.
            let version = check.pin.as_ref().and_then(|p| p.version_id.as_deref());
            contents::read(&services.s3, (bucket, key, version), format, since)
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
            Ok(contents) => ReportCheck {
                contents: Some(contents),
                ..check
            },
            Err(reason) => ReportCheck {
                detail: Some(format!("{}: {reason}", contents::UNREADABLE)),
                limit: CheckLimit::Unreadable,
                ..check
            },
        }
    }

    /// Follows up the reports requested in this run as they come, until each has ended, or
    /// the invocation is short of time, or FOLLOW_UP_LIMIT has passed since the last create.
    pub(super) async fn follow_up(
        &self,
        client: &TargetClient,
        mut accepted: mpsc::UnboundedReceiver<(CaArn, PendingReport)>,
    ) -> HashMap<String, ReportCheck> {
        let mut waiting: VecDeque<Waiting> = VecDeque::new();
        let mut done = HashMap::new();
        let mut open = true;
        let mut give_up = self.invocation.cutoff();
        let far = Instant::now() + Duration::from_secs(86_400);
        while open || !waiting.is_empty() {
            let next_due = waiting.front().map_or(far, |(due, _, _)| *due);
            tokio::select! {
                message = accepted.recv(), if open => match message {
                    Some((arn, report)) => {
                        waiting.push_back((Instant::now() + FIRST_CHECK, arn, report));
                    }
                    None => {
                        open = false;
                        give_up = give_up.min(Instant::now() + FOLLOW_UP_LIMIT);
                    }
                },
                _ = tokio::time::sleep_until(next_due.min(give_up)), if !waiting.is_empty() => {
                    self.look_at_next(client, &mut waiting, &mut done, give_up).await;
                }
            }
        }
        done
    }

    /// The follow-up's next look: at the report due first, or, out of time, none (what is
    /// left is followed up first thing next run).
    async fn look_at_next(
        &self,
        client: &TargetClient,
        waiting: &mut VecDeque<Waiting>,
        done: &mut HashMap<String, ReportCheck>,
        give_up: Instant,
    ) {
        if Instant::now() >= give_up {
            for (_, arn, report) in waiting.drain(..) {
                let check = still_creating(&report, None);
                log::report_line(&arn, &check);
                done.insert(arn.to_string(), check);
            }
            return;
        }
        let Some((_, arn, report)) = waiting.pop_front() else {
            return;
        };
        let check = self.follow_up_once(client, &arn, &report).await;
        if check.status == ReportStatus::Creating && check.limit == CheckLimit::None {
            waiting.push_back((Instant::now() + CHECK_INTERVAL, arn, report));
        } else {
            log::report_line(&arn, &check);
            done.insert(arn.to_string(), check);
        }
    }
}
