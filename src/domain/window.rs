//! The window: when a CA may next be requested, and what its ledger item means at an instant.
//!
//! The whole rule is here: `next_eligible` says, from what happened to a CA, when it is due
//! again; `Window::blocked` reads a window item the way the ledger's claim condition
//! (`CLAIM_CONDITION`) does. The ledger's conditional write is what actually guards the
//! window; `blocked` only spares a claim (and a DynamoDB write) for a CA that could not win
//! it.

use aws_sdk_acmpca::types::CertificateAuthorityStatus;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::domain::outcome::{Outcome, SkipReason};
use crate::domain::report::ReportStatus;
use crate::domain::time::Timestamp;

/// The service's own limit: one audit report per CA every 30 minutes (API reference,
/// CreateCertificateAuthorityAuditReport).
pub const SERVICE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// The only states the service makes an audit report for (Private CA user guide, "Understand
/// AWS Private CA CA status", column "Generate audits"): ACTIVE and DISABLED. Any other,
/// EXPIRED included, is refused with InvalidStateException, a create slot spent for nothing.
pub const AUDITABLE_STATES: [CertificateAuthorityStatus; 2] = [
    CertificateAuthorityStatus::Active,
    CertificateAuthorityStatus::Disabled,
];

/// The ledger's claim condition: the window has opened and no live lease holds the CA.
/// `Window::blocked` is its reading in code; the two must agree.
pub const CLAIM_CONDITION: &str = "(attribute_not_exists(next_eligible_at) OR next_eligible_at <= :now) \
     AND (attribute_not_exists(lease_expires_at) OR lease_expires_at < :now)";

/// The time between two reports of one CA (`MIN_INTERVAL_MINUTES`); never shorter than the
/// service allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(Duration);

/// An interval the service would refuse: shorter than its own window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} minutes is below the service's one report per CA every 30 minutes", .0.as_secs() / 60)]
pub struct IntervalTooShort(pub Duration);

impl Interval {
    pub fn new(d: Duration) -> Result<Self, IntervalTooShort> {
        if d < SERVICE_WINDOW {
            Err(IntervalTooShort(d))
        } else {
            Ok(Self(d))
        }
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

impl Default for Interval {
    fn default() -> Self {
        Self(SERVICE_WINDOW)
    }
}

/// What happened to a CA, as far as its window is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A report was requested at this instant (or, for a report found in the bucket, written).
    Reported(Timestamp),
    /// A create at this instant was refused as too soon: the service holds a report of the
    /// CA from the 30 minutes before it.
    RefusedTooSoon(Timestamp),
    /// A create at this instant was refused for the CA's state.
    RefusedState(Timestamp),
    /// The report requested at this instant ended FAILED: the CA has no evidence.
    ReportFailed(Timestamp),
    /// A create at this instant may have made a report whose answer was lost.
    AnswerLost(Timestamp),
}

/// When the CA may next be requested after `event`.
pub fn next_eligible(event: Event, interval: Interval) -> Timestamp {
    match event {
        // The configured interval from one report to the next.
        Event::Reported(at) => at.plus(interval.duration()),
        // The service's state does not change by itself soon: look again next interval.
        Event::RefusedState(at) => at.plus(interval.duration()),
        // The service's own window: no create can pass before it ends. A FAILED report
        // leaves the CA without evidence, so it is due as soon as the service allows.
        Event::RefusedTooSoon(at) | Event::ReportFailed(at) | Event::AnswerLost(at) => {
            at.plus(SERVICE_WINDOW)
        }
    }
}

/// The reopen after a report the follow-up saw end FAILED: the CA has no evidence from it,
/// so its window moves to when the service next allows a create. `None` for any other status.
pub fn reopen_after(
    status: ReportStatus,
    requested_at: Timestamp,
    interval: Interval,
) -> Option<Timestamp> {
    (status == ReportStatus::Failed)
        .then(|| next_eligible(Event::ReportFailed(requested_at), interval))
}

/// When a claim won at `now` expires: when the invocation must end (`remaining` from now),
/// and a second more. A run that dies holds the CA no longer than it could have lived.
pub fn lease_expiry(now: Timestamp, remaining: Duration) -> Timestamp {
    now.plus(remaining + Duration::from_secs(1))
}

/// The claim a run holds on a CA while it requests the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    pub expires_at: Timestamp,
    /// When the claim was won: a report the run requested is no older than this.
    pub claimed_at: Option<Timestamp>,
}

/// A CA's window as the ledger holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub last_requested_at: Option<Timestamp>,
    pub last_report_id: Option<String>,
    pub last_s3_bucket: Option<String>,
    pub last_s3_key: Option<String>,
    /// Where the last report stands; CREATING until a run has followed it up.
    pub last_status: Option<ReportStatus>,
    /// No report may be requested before this instant.
    pub next_eligible_at: Option<Timestamp>,
    pub lease: Option<Lease>,
    /// A dead run's claim that was taken over without finding its report: the report may
    /// still turn up in the bucket, written after this instant.
    pub orphan_since: Option<Timestamp>,
    /// An alert raised about the CA (FAILED or overdue), kept until it is audited again.
    pub alert: Option<crate::domain::alerts::RaisedAlert>,
}

/// The last report of a CA, still to be followed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReport {
    pub report_id: String,
    pub s3_bucket: String,
    pub s3_key: String,
    pub requested_at: Timestamp,
}

impl Window {
    /// The last report, if no run has yet seen it end.
    pub fn pending_report(&self) -> Option<PendingReport> {
        if self.last_status != Some(ReportStatus::Creating) {
            return None;
        }
        Some(PendingReport {
            report_id: self.last_report_id.clone()?,
            s3_bucket: self.last_s3_bucket.clone()?,
            s3_key: self.last_s3_key.clone()?,
            requested_at: self.last_requested_at?,
        })
    }

    /// Since when a report of this CA may exist that no run recorded: the claim of a run
    /// that died (its lease ran out, never released), or one taken over earlier without
    /// finding the report. `None` when every request is accounted for.
    pub fn unrecorded_since(&self, now: Timestamp) -> Option<Timestamp> {
        let dead = self
            .lease
            .as_ref()
            .filter(|l| l.expires_at < now)
            .and_then(|l| l.claimed_at);
        match (dead, self.orphan_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The window a claim found already holding this very claim (the same run, claimed at
    /// the same instant, to the same expiry): DynamoDB committed the first attempt of the
    /// conditional write and its answer was lost (a 5xx, a reset), so the SDK's retry failed
    /// the condition on the lease it had just written. The claim is this run's: `Some` with
    /// the window as it was before, as far as it can be known; `None` for anyone else's lease.
    ///
    /// The lost answer carried the window before the claim, so whether that claim took over
    /// the lease of a run that died is not known. The reading that fails loudly is that it
    /// may have: the report such a run may have made is looked for in the bucket, from the
    /// last recorded request on (no report the ledger lacks is older than that), before any
    /// new one is requested.
    pub fn own_claim_answer_lost(
        &self,
        run_id: &str,
        claimed_at: Timestamp,
        expires_at: Timestamp,
    ) -> Option<Window> {
        let lease = self.lease.as_ref()?;
        let ours = lease.run_id == run_id
            && lease.expires_at == expires_at
            && lease.claimed_at == Some(claimed_at);
        if !ours {
            return None;
        }
        let since = self
            .last_requested_at
            .unwrap_or(Timestamp::from_epoch_seconds(0));
        Some(Window {
            lease: None,
            orphan_since: Some(self.orphan_since.map_or(since, |o| o.min(since))),
            ..self.clone()
        })
    }

    /// Why the CA may not be claimed at `now`, or `None` if it may.
    pub fn blocked(&self, now: Timestamp) -> Option<Outcome> {
        // A lease is live until its expiry instant (the claim condition is `lease_expires_at < :now`).
        if let Some(lease) = self.lease.as_ref().filter(|l| l.expires_at >= now) {
            return Some(Outcome::Skipped {
                reason: SkipReason::ClaimedByAnotherRun,
                detail: format!("claimed by run {} until {}", lease.run_id, lease.expires_at),
                next_eligible_at: Some(
                    self.next_eligible_at
                        .map_or(lease.expires_at, |n| n.max(lease.expires_at)),
                ),
            });
        }
        match self.next_eligible_at {
            Some(next) if next > now => Some(Outcome::Skipped {
                reason: SkipReason::InsideWindow,
                detail: match (&self.last_requested_at, &self.last_report_id) {
                    (Some(at), Some(id)) => format!("last audit report {id} requested at {at}"),
                    _ => "inside the window set by the service's last answer".to_owned(),
                },
                next_eligible_at: Some(next),
            }),
            _ => None,
        }
    }
}

/// Whether a CA in `state` is audited at all.
pub fn state_outcome(
    state: Option<&CertificateAuthorityStatus>,
    audited: &BTreeSet<CertificateAuthorityStatus>,
) -> Option<Outcome> {
    if state.is_some_and(|s| audited.contains(s)) {
        return None;
    }
    let audited_list = audited
        .iter()
        .map(CertificateAuthorityStatus::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    // A CA the listing gave no state for is not audited: nothing says the service would.
    let state = state.map_or("of no state the listing gave", |s| s.as_str());
    let detail = if AUDITABLE_STATES.iter().any(|s| s.as_str() == state) {
        format!("CA is {state}; AUDIT_CA_STATES audits only {audited_list}")
    } else {
        format!(
            "CA is {state}: AWS Private CA makes audit reports only of ACTIVE and DISABLED CAs \
             (audited here: {audited_list})"
        )
    };
    Some(Outcome::Skipped {
        reason: SkipReason::CaState,
        detail,
        next_eligible_at: None,
    })
}

/// Sort key putting the CAs that waited longest first: never audited, then oldest report.
/// The ARN breaks ties so that every run orders the same CAs the same way.
pub fn waiting_order(last: Option<Timestamp>, arn: &str) -> (Option<Timestamp>, &str) {
    (last, arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_report_reopens_its_window_when_the_service_allows() {
        let day = Interval::new(Duration::from_secs(86_400)).unwrap();
        let at = Timestamp::from_epoch_seconds(10_000);
        let reopen = |s| reopen_after(s, at, day);
        assert_eq!(
            reopen(ReportStatus::Failed),
            Some(Timestamp::from_epoch_seconds(11_800))
        );
        assert_eq!(reopen(ReportStatus::Success), None);
        assert_eq!(reopen(ReportStatus::Creating), None);
    }

    #[test]
    fn a_claim_whose_answer_was_lost_is_recognised_as_the_runs_own_and_nobody_elses() {
        let (now, expiry) = (
            Timestamp::from_epoch_seconds(5_000),
            Timestamp::from_epoch_seconds(5_900),
        );
        let held = |run: &str, claimed: u64, expires: Timestamp| Window {
            last_requested_at: Some(Timestamp::from_epoch_seconds(1_000)),
            last_report_id: Some("r-1".into()),
            lease: Some(Lease {
                run_id: run.into(),
                expires_at: expires,
                claimed_at: Some(Timestamp::from_epoch_seconds(claimed)),
            }),
            ..Window::default()
        };
        let mine = held("run-a", 5_000, expiry)
            .own_claim_answer_lost("run-a", now, expiry)
            .expect("the lease this run wrote");
        assert_eq!(mine.lease, None, "the window as it was before the claim");
        assert_eq!(
            mine.unrecorded_since(now),
            Some(Timestamp::from_epoch_seconds(1_000)),
            "a run that died may have been taken over: the bucket is searched from the last \
             recorded request"
        );
        assert_eq!(mine.last_report_id.as_deref(), Some("r-1"));
        assert_eq!(
            held("run-b", 5_000, expiry).own_claim_answer_lost("run-a", now, expiry),
            None,
            "another run's lease"
        );
        assert_eq!(
            held("run-a", 4_000, expiry).own_claim_answer_lost("run-a", now, expiry),
            None,
            "an earlier claim of the same run id is not this one"
        );
        let other_expiry = Timestamp::from_epoch_seconds(5_899);
        assert_eq!(
            held("run-a", 5_000, other_expiry).own_claim_answer_lost("run-a", now, expiry),
            None
        );
        assert_eq!(
            Window::default().own_claim_answer_lost("run-a", now, expiry),
            None
        );
    }

    #[test]
    fn a_lease_ends_a_second_after_the_invocation_must() {
        let now = Timestamp::from_epoch_seconds(1_000);
        assert_eq!(
            lease_expiry(now, Duration::from_millis(899_500)),
            Timestamp::from_epoch_seconds(1_900)
        );
        assert_eq!(
            lease_expiry(now, Duration::ZERO),
            Timestamp::from_epoch_seconds(1_001)
        );
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_epoch_seconds(s)
    }

    #[test]
    fn next_eligible_follows_what_happened() {
        let day = Interval::new(Duration::from_secs(86_400)).unwrap();
        let at = t(10_000);
        assert_eq!(next_eligible(Event::Reported(at), day), t(96_400));
        assert_eq!(next_eligible(Event::RefusedState(at), day), t(96_400));
        // The service's 30 minutes, whatever the configured interval.
        for e in [
            Event::RefusedTooSoon(at),
            Event::ReportFailed(at),
            Event::AnswerLost(at),
        ] {
            assert_eq!(next_eligible(e, day), t(11_800), "{e:?}");
        }
        assert_eq!(
            next_eligible(Event::Reported(at), Interval::default()),
            t(11_800)
        );
    }

    #[test]
    fn an_interval_below_the_service_window_is_refused() {
        assert!(Interval::new(Duration::from_secs(29 * 60)).is_err());
        assert!(Interval::new(SERVICE_WINDOW).is_ok());
    }

    #[test]
    fn a_ca_never_seen_is_eligible() {
        assert_eq!(Window::default().blocked(t(1000)), None);
    }

    #[test]
    fn inside_the_window_says_when_it_opens() {
        let w = Window {
            last_requested_at: Some(t(0)),
            last_report_id: Some("r-1".into()),
            next_eligible_at: Some(t(1800)),
            ..Window::default()
        };
        match w.blocked(t(1799)) {
            Some(Outcome::Skipped {
                reason: SkipReason::InsideWindow,
                next_eligible_at: Some(n),
                detail,
            }) => {
                assert_eq!(n, t(1800));
                assert!(detail.contains("r-1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.blocked(t(1800)), None, "the window opens at its instant");
    }

    #[test]
    fn a_live_lease_blocks_and_an_expired_one_does_not() {
        let w = Window {
            lease: Some(Lease {
                run_id: "run-a".into(),
                expires_at: t(900),
                claimed_at: Some(t(100)),
            }),
            ..Window::default()
        };
        assert!(matches!(
            w.blocked(t(900)),
            Some(Outcome::Skipped {
                reason: SkipReason::ClaimedByAnotherRun,
                ..
            })
        ));
        assert_eq!(w.blocked(t(901)), None);
    }

    #[test]
    fn a_dead_runs_claim_marks_when_an_unrecorded_report_may_exist() {
        let mut w = Window {
            lease: Some(Lease {
                run_id: "run-a".into(),
                expires_at: t(900),
                claimed_at: Some(t(100)),
            }),
            ..Window::default()
        };
        assert_eq!(
            w.unrecorded_since(t(900)),
            None,
            "the run may still be alive"
        );
        assert_eq!(w.unrecorded_since(t(901)), Some(t(100)));
        w.lease = None;
        assert_eq!(w.unrecorded_since(t(901)), None);
        w.orphan_since = Some(t(50));
        assert_eq!(w.unrecorded_since(t(901)), Some(t(50)));
    }

    #[test]
    fn only_a_report_still_creating_is_pending() {
        let mut w = Window {
            last_requested_at: Some(t(0)),
            last_report_id: Some("r-1".into()),
            last_s3_bucket: Some("b".into()),
            last_s3_key: Some("audit-report/x/r-1.json".into()),
            last_status: Some(ReportStatus::Creating),
            ..Window::default()
        };
        assert_eq!(w.pending_report().map(|p| p.report_id), Some("r-1".into()));
        w.last_status = Some(ReportStatus::Success);
        assert_eq!(w.pending_report(), None);
        w.last_status = None;
        assert_eq!(
            w.pending_report(),
            None,
            "items written before follow-ups existed"
        );
    }

    #[test]
    fn unaudited_states_are_skipped_with_their_state() {
        use CertificateAuthorityStatus as S;
        let audited: BTreeSet<S> = [S::Active].into();
        assert_eq!(state_outcome(Some(&S::Active), &audited), None);
        assert!(state_outcome(None, &audited).is_some());
        match state_outcome(Some(&S::PendingCertificate), &audited) {
            Some(Outcome::Skipped {
                reason: SkipReason::CaState,
                detail,
                next_eligible_at: None,
            }) => {
                assert!(detail.contains("PENDING_CERTIFICATE"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_audited_go_first_then_oldest() {
        let mut cas = [
            (Some(t(50)), "b"),
            (None, "z"),
            (Some(t(10)), "c"),
            (None, "a"),
        ];
        cas.sort_by_key(|(last, arn)| waiting_order(*last, arn));
        let order: Vec<&str> = cas.iter().map(|(_, a)| *a).collect();
        assert_eq!(order, vec!["a", "z", "c", "b"]);
    }
}
