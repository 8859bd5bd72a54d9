//! What a CA's ledger item means at a given instant: the pure half of the window.
//!
//! The ledger's conditional write is what actually guards the window; these decisions only
//! spare a claim (and a DynamoDB write) for a CA that could not win it, and order the rest.

use std::collections::BTreeSet;

use crate::summary::{Outcome, SkipReason};
use crate::time::Timestamp;

/// The claim a run holds on a CA while it requests the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    pub expires_at: Timestamp,
}

/// A CA's window as the ledger holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub last_requested_at: Option<Timestamp>,
    pub last_report_id: Option<String>,
    /// No report may be requested before this instant.
    pub next_eligible_at: Option<Timestamp>,
    pub lease: Option<Lease>,
}

impl Window {
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
    (!audited.contains(state)).then(|| Outcome::Skipped {
        reason: SkipReason::CaState,
        detail: format!(
            "CA is {state}; audited states are {}",
            audited.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
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
            lease: None,
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
