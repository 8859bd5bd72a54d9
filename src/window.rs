//! What a CA's ledger item means at a given instant: the pure half of the window.
//!
//! The ledger's conditional write is what actually guards the window; these decisions only
//! spare a claim (and a DynamoDB write) for a CA that could not win it, and order the rest.

use std::collections::BTreeSet;

use crate::summary::{Outcome, ReportStatus, SkipReason};
use crate::time::Timestamp;

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
pub fn state_outcome(state: &str, audited: &BTreeSet<String>) -> Option<Outcome> {
    if audited.contains(state) {
        return None;
    }
    let audited_list = audited.iter().cloned().collect::<Vec<_>>().join(", ");
    let detail = if crate::config::AUDITABLE_STATES.contains(&state) {
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

    fn t(s: u64) -> Timestamp {
        Timestamp::from_epoch_seconds(s)
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
        let audited: BTreeSet<String> = ["ACTIVE".to_string()].into();
        assert_eq!(state_outcome("ACTIVE", &audited), None);
        match state_outcome("PENDING_CERTIFICATE", &audited) {
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
