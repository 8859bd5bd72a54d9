//! Alerts: after an account-region, which of its CAs failed for a reason a retry will not
//! change, which are overdue (`domain::alerts::is_overdue`, coverage's own rule) and which
//! were audited again after an alert; each remembered on the CA's window, so that an overdue
//! CA and its "audited again" are announced once whichever overlapping run sees them.

use std::collections::HashMap;

use super::RunContext;
use crate::domain::alerts::{Alert, AlertKind, LastSuccess, RaisedAlert, is_overdue};
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::outcome::{CaOutcome, Outcome};
use crate::domain::report::ReportStatus;
use crate::domain::window::Window;

/// What the ledger said of a CA before this run's creates: its last report and last SUCCESS
/// (when its last report is one), and the alert it remembers.
pub(super) struct Standing {
    arn: CaArn,
    last_report: Option<LastSuccess>,
    last_success: Option<LastSuccess>,
    alert: Option<RaisedAlert>,
}

/// The standing of each candidate, by ARN, from the windows the run read.
pub(super) fn standing_of(
    candidates: &[CaArn],
    windows: &HashMap<String, Window>,
) -> HashMap<String, Standing> {
    let standing = |arn: &CaArn| {
        let w = windows.get(arn.as_str());
        let last_report = w.and_then(|w| {
            Some(LastSuccess {
                report_id: w.last_report_id.clone(),
                s3_key: w.last_s3_key.clone(),
                requested_at: w.last_requested_at?,
            })
        });
        let succeeded = w.is_some_and(|w| w.last_status == Some(ReportStatus::Success));
        Standing {
            arn: arn.clone(),
            last_success: last_report.clone().filter(|_| succeeded),
            last_report,
            alert: w.and_then(|w| w.alert.clone()),
        }
    };
    (candidates.iter())
        .map(|a| (a.as_str().to_owned(), standing(a)))
        .collect()
}

/// The SUCCESS report that audited the CA in this run, if one did.
fn audited(o: &CaOutcome, st: &Standing) -> Option<LastSuccess> {
    if let Outcome::Recovered {
        report_id,
        s3_key,
        requested_at,
        ..
    } = &o.outcome
    {
        return Some(LastSuccess {
            report_id: Some(report_id.clone()),
            s3_key: Some(s3_key.clone()),
            requested_at: *requested_at,
        });
    }
    let check = o
        .report
        .as_ref()
        .filter(|r| r.status == ReportStatus::Success)?;
    let id = Some(check.report_id.clone());
    match &o.outcome {
        Outcome::Requested {
            report_id,
            s3_key,
            requested_at,
            ..
        } if *report_id == check.report_id => Some(LastSuccess {
            report_id: id,
            s3_key: Some(s3_key.clone()),
            requested_at: *requested_at,
        }),
        // An earlier run's report, followed up now: the window's last report.
        _ => st.last_report.clone().filter(|r| r.report_id == id),
    }
}

/// Why the CA failed for good in this run: its error code, the reason, and the report.
fn failed_for_good(o: &CaOutcome) -> Option<(String, String, Option<String>)> {
    if let Some(r) = o
        .report
        .as_ref()
        .filter(|r| r.status == ReportStatus::Failed)
    {
        let detail = r.detail.clone().unwrap_or_else(|| "report FAILED".into());
        let code = Code::AuditReportFailed.as_str().to_owned();
        return Some((code, detail, Some(r.report_id.clone())));
    }
    match &o.outcome {
        Outcome::Failed {
            error_code,
            error_message,
        } if !Code::is_transient(error_code) && !Code::is_out_of_scope(error_code) => {
            Some((error_code.clone(), error_message.clone(), None))
        }
        _ => None,
    }
}

/// What the alerts of one account-region came to.
#[derive(Default)]
pub(super) struct Found {
    pub(super) alerts: Vec<Alert>,
    pub(super) overdue: usize,
}

impl RunContext<'_> {
    /// The alerts of an account-region's CAs, from their standing before the run and their
    /// outcomes in it. A dry run judges and counts, but writes and sends nothing.
    pub(super) async fn judge_alerts(
        &self,
        standing: &HashMap<String, Standing>,
        outcomes: &[CaOutcome],
    ) -> Found {
        let mut found = Found::default();
        for o in outcomes {
            let Some(st) = standing.get(&o.certificate_authority_arn) else {
                continue; // not a candidate: out of scope, or not listed
            };
            let ca = |kind| Alert::of_ca(kind, st.arn.as_str(), &o.account_id, &o.region);
            if let Some(success) = audited(o, st) {
                if let Some(closed) = self.close(st).await {
                    let mut a = ca(AlertKind::AuditedAgain).because("", "audited again");
                    a.report_id = success.report_id.clone();
                    a.last_success = Some(Some(success));
                    a.closes = Some(closed);
                    found.alerts.push(a);
                }
                continue;
            }
            let last_success = self.last_success(st).await;
            if let Some((code, reason, report_id)) = failed_for_good(o) {
                let mut a = ca(AlertKind::AuditFailed).because(&code, &reason);
                a.report_id = report_id;
                a.last_success = last_success.clone();
                if self.raise(st, AlertKind::AuditFailed).await {
                    found.alerts.push(a);
                }
            }
            // A CA whose history could not be read is not judged (logged): better no alert
            // than a false one.
            let Some(last) = last_success else { continue };
            let now = self.services.clock.now();
            let threshold = self.services.settings.coverage_threshold();
            if !is_overdue(last.as_ref().map(|l| l.requested_at), now, threshold) {
                continue;
            }
            found.overdue += 1;
            let since = last.as_ref().map(|l| l.requested_at.to_string());
            let reason = format!(
                "no SUCCESS report since {} (threshold {} minutes)",
                since.as_deref().unwrap_or("ever"),
                threshold.as_secs() / 60
            );
            tracing::warn!(ca_arn = %st.arn, region = %o.region, outcome = "overdue", "{reason}");
            if self.raise(st, AlertKind::Overdue).await {
                let mut a = ca(AlertKind::Overdue).because("Overdue", &reason);
                a.last_success = Some(last);
                a.threshold_minutes = Some(threshold.as_secs() / 60);
                found.alerts.push(a);
            }
        }
        for a in &mut found.alerts {
            a.run_id.clone_from(&self.invocation.run_id);
        }
        found
    }

    /// The CA's last SUCCESS report: the window's, or, when its last report is not one, its
    /// history's. `Some(None)`: it has none; `None`: the history could not be read.
    async fn last_success(&self, st: &Standing) -> Option<Option<LastSuccess>> {
        if st.last_success.is_some() || st.last_report.is_none() {
            return Some(st.last_success.clone());
        }
        match self.services.ledger.last_success(&st.arn).await {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::error!(ca_arn = %st.arn, "overdue not judged: {e}");
                None
            }
        }
    }

    /// Remembers the alert on the CA's window; whether this run is the one to announce it.
    /// A dry run announces nothing; a ledger that cannot be written still lets the alert out
    /// (it may then be announced again next run, which is better than never).
    async fn raise(&self, st: &Standing, kind: AlertKind) -> bool {
        if self.request.dry_run {
            return false;
        }
        let now = self.services.clock.now();
        self.services
            .ledger
            .raise_alert(&st.arn, kind, now)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(ca_arn = %st.arn, "alert not remembered: {e}");
                true
            })
    }

    /// Forgets the CA's alert after its SUCCESS report: the alert closed, when this run is
    /// the one that closed it.
    async fn close(&self, st: &Standing) -> Option<RaisedAlert> {
        if self.request.dry_run || st.alert.is_none() {
            return None;
        }
        (self.services.ledger.close_alert(&st.arn).await).unwrap_or_else(|e| {
            tracing::error!(ca_arn = %st.arn, "alert not closed: {e}");
            None
        })
    }
}
