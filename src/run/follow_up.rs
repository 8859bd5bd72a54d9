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
use crate::domain::report::{CheckLimit, ReportCheck, ReportStatus, check_of, still_creating};
use crate::domain::window::{PendingReport, Window, reopen_after};
use crate::services::TargetClient;

/// The first look at a new report: the service usually writes it within seconds.
const FIRST_CHECK: Duration = Duration::from_secs(3);
/// Between two looks at a report still CREATING (the SDK waiter's interval).
const CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// How long a run waits for its reports after its last create: the rest are followed up
/// first thing next run.
const FOLLOW_UP_LIMIT: Duration = Duration::from_secs(300);

/// A report this run's follow-up is waiting to look at (or, seen SUCCESS by the look of
/// an earlier run's reports, to read and record: its check is known).
type Waiting = (Instant, CaArn, PendingReport, Option<ReportCheck>);

/// An earlier run's report seen SUCCESS, left for the follow-up to read and record beside
/// the creates (READ_REPORTS): its reading never holds the account-region's creates up.
pub(super) type ToRead = (CaArn, PendingReport, ReportCheck);

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

impl RunContext<'_> {
    /// Reports of earlier runs not yet seen to end are followed up first: a FAILED one
    /// reopens its CA's window, which may make the CA due again in this very run. A SUCCESS
    /// one to be read (READ_REPORTS) is read and recorded by the follow-up beside the creates,
    /// not here, before them.
    pub(super) async fn follow_up_earlier(
        &self,
        client: &TargetClient,
        candidates: &[CaArn],
        windows: &mut HashMap<String, Window>,
    ) -> (HashMap<String, ReportCheck>, Vec<ToRead>) {
        let (mut checks, mut to_read) = (HashMap::new(), Vec::new());
        if self.request.dry_run {
            return (checks, to_read);
        }
        let interval = self.services.settings.min_interval;
        for arn in candidates {
            let Some(w) = windows.get_mut(arn.as_str()) else {
                continue;
            };
            let Some(pending) = w.pending_report() else {
                continue;
            };
            let check = self.look_at(client, arn, &pending).await;
            if self.services.settings.read_reports
                && check.status == ReportStatus::Success
                && check.limit == CheckLimit::None
            {
                to_read.push((arn.clone(), pending, check));
                continue;
            }
            let check = self.settle(arn, &pending, check).await;
            if let Some(reopen) = reopen_after(check.status, pending.requested_at, interval) {
                w.next_eligible_at = Some(reopen);
            }
            log::report_line(arn, &check);
            checks.insert(arn.to_string(), check);
        }
        (checks, to_read)
    }

    /// One look at a report: what it came to is written to the ledger once it has ended.
    pub(super) async fn follow_up_once(
        &self,
        client: &TargetClient,
        arn: &CaArn,
        pending: &PendingReport,
    ) -> ReportCheck {
        let check = self.look_at(client, arn, pending).await;
        self.settle(arn, pending, check).await
    }

    /// Where the report stands, by the service and the bucket, within the read quota.
    async fn look_at(
        &self,
        client: &TargetClient,
        arn: &CaArn,
        pending: &PendingReport,
    ) -> ReportCheck {
        if !client.reads.wait_turn(self.invocation.cutoff()).await {
            let why = "not looked at: too little time left in this invocation; the next run looks";
            return still_creating(pending, Some(why.into()));
        }
        match look(client, &self.services.s3, arn, pending).await {
            Ok(check) => check,
            Err(e) => still_creating(pending, Some(format!("could not follow it up: {e}"))),
        }
    }

    /// A report seen to end: read (READ_REPORTS) and written to the ledger. One still
    /// CREATING, or not seen, is left as it is.
    async fn settle(
        &self,
        arn: &CaArn,
        pending: &PendingReport,
        check: ReportCheck,
    ) -> ReportCheck {
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

    /// Follows up the reports requested in this run as they come, until each has ended, or
    /// the invocation is short of time, or FOLLOW_UP_LIMIT has passed since the last create.
    pub(super) async fn follow_up(
        &self,
        client: &TargetClient,
        mut accepted: mpsc::UnboundedReceiver<(CaArn, PendingReport)>,
        to_read: Vec<ToRead>,
    ) -> HashMap<String, ReportCheck> {
        let now = Instant::now();
        let mut waiting: VecDeque<Waiting> = (to_read.into_iter())
            .map(|(arn, report, check)| (now, arn, report, Some(check)))
            .collect();
        let mut done = HashMap::new();
        let mut open = true;
        let mut give_up = self.invocation.cutoff();
        let far = Instant::now() + Duration::from_secs(86_400);
        while open || !waiting.is_empty() {
            let next_due = waiting.front().map_or(far, |(due, ..)| *due);
            tokio::select! {
                message = accepted.recv(), if open => match message {
                    Some((arn, report)) => {
                        waiting.push_back((Instant::now() + FIRST_CHECK, arn, report, None));
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
            for (_, arn, report, _) in waiting.drain(..) {
                let check = still_creating(&report, None);
                log::report_line(&arn, &check);
                done.insert(arn.to_string(), check);
            }
            return;
        }
        let Some((_, arn, report, known)) = waiting.pop_front() else {
            return;
        };
        let check = match known {
            Some(seen) => self.settle(&arn, &report, seen).await,
            None => self.follow_up_once(client, &arn, &report).await,
        };
        if check.status == ReportStatus::Creating && check.limit == CheckLimit::None {
            waiting.push_back((Instant::now() + CHECK_INTERVAL, arn, report, None));
        } else {
            log::report_line(&arn, &check);
            done.insert(arn.to_string(), check);
        }
    }
}
