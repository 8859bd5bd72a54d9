//! What a refused create means for its CA: a pure decision, carried out by `ca`.

use crate::aws::acm_pca::{self, CreateRefused, Refusal};
use crate::domain::outcome::{Outcome, SkipReason, failed, skipped};
use crate::domain::time::Timestamp;
use crate::domain::window::{Event, Interval, next_eligible};

/// What a refused create means for its CA.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// "Too soon" after a lost answer: that request most likely made a report; find it.
    FindLost(Timestamp),
    /// Release the claim with `then`, keeping `kept_error` (a message) on the CA and moving
    /// its window to `next`; when `look_first`, after looking in the bucket for a report made
    /// since then.
    Release {
        then: Outcome,
        kept_error: Option<String>,
        next: Option<Timestamp>,
        look_first: Option<Timestamp>,
    },
}

/// What a create refused with `refused` means for the CA: a pure function of the typed
/// refusal, when the last attempt was made, when an answer was first lost (this run), and
/// since when an earlier report of the CA is unaccounted for.
pub(super) fn verdict(
    refused: &CreateRefused,
    requested_at: Timestamp,
    lost_at: Option<Timestamp>,
    unrecorded: Option<Timestamp>,
    interval: Interval,
) -> Verdict {
    let release = |then, kept_error, next| Verdict::Release {
        then,
        kept_error,
        next,
        look_first: None,
    };
    let e = &refused.error;
    match refused.refusal {
        Refusal::TooSoon => match lost_at.or(unrecorded) {
            Some(since) => Verdict::FindLost(since),
            None => {
                let next = next_eligible(Event::RefusedTooSoon(requested_at), interval);
                let detail =
                    format!("the service has a report of this CA from the last 30 minutes ({e})");
                release(
                    skipped(SkipReason::ServiceWindow, detail, next),
                    None,
                    Some(next),
                )
            }
        },
        Refusal::State => {
            let next = next_eligible(Event::RefusedState(requested_at), interval);
            let then = skipped(SkipReason::ServiceRefusedState, e.to_string(), next);
            release(then, Some(e.message.clone()), Some(next))
        }
        Refusal::Throttled => {
            let detail = format!(
                "still throttled after {} attempts, each in its own slot: {e}",
                super::create::CREATE_ATTEMPTS
            );
            release(Outcome::Deferred { detail }, None, None)
        }
        // Two readings (Private CA user guide, audit reports): a CA past 100 million
        // certificates (documented), or "too soon" under another code (which code a second
        // create inside 30 minutes gets is not documented). After a create accepted or lost
        // in this CA's last 30 minutes, the second is the likely one: that report is looked
        // for, as for RequestInProgressException.
        Refusal::Limit => match lost_at.or(unrecorded) {
            Some(since) => Verdict::FindLost(since),
            None => {
                let message = format!("{}: {}", acm_pca::LIMIT_CAUSE, e.message);
                release(failed(&e.code, message.clone()), Some(message), None)
            }
        },
        // Every attempt's answer lost (or a certain refusal after one was): the service may
        // hold a report all the same. Look for it first; failing that, the next claim will.
        Refusal::Ambiguous | Refusal::Failed => {
            let message = match lost_at {
                Some(_) => format!(
                    "no certain answer after {} attempts ({}); a report made meanwhile is \
                     looked for in the bucket before the next request",
                    super::create::CREATE_ATTEMPTS,
                    e.message
                ),
                None => e.message.clone(),
            };
            Verdict::Release {
                then: failed(&e.code, message.clone()),
                kept_error: Some(message),
                next: None,
                look_first: lost_at,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ServiceError;
    use std::time::Duration;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_epoch_seconds(s)
    }

    /// A refused create as `authorities::request_report` gives it (`Refusal::of_create` has
    /// its own tests of which answer is which refusal).
    fn error(code: &str, ambiguous: bool) -> CreateRefused {
        let refusal = match code {
            "RequestInProgressException" => Refusal::TooSoon,
            "InvalidStateException" => Refusal::State,
            "ThrottlingException" => Refusal::Throttled,
            "LimitExceededException" => Refusal::Limit,
            _ if ambiguous => Refusal::Ambiguous,
            _ => Refusal::Failed,
        };
        CreateRefused {
            refusal,
            error: ServiceError {
                code: code.into(),
                message: "said".into(),
                ambiguous,
            },
        }
    }

    #[test]
    fn each_refusal_has_its_verdict() {
        let day = Interval::new(Duration::from_secs(86_400)).unwrap();
        let at = t(10_000);
        let verdict_of =
            |code, ambiguous, lost| verdict(&error(code, ambiguous), at, lost, None, day);
        let release = |v: Verdict| match v {
            Verdict::Release {
                then,
                kept_error,
                next,
                look_first,
            } => (then, kept_error, next, look_first),
            other => panic!("{other:?}"),
        };
        // Too soon: skipped until the service's 30 minutes end, no error kept.
        let (then, kept, next, look) =
            release(verdict_of("RequestInProgressException", false, None));
        assert!(matches!(
            then,
            Outcome::Skipped {
                reason: SkipReason::ServiceWindow,
                ..
            }
        ));
        assert_eq!((kept, next, look), (None, Some(t(11_800)), None));
        // Too soon after a lost answer, this run's or an earlier one's: find that report.
        assert_eq!(
            verdict_of("RequestInProgressException", false, Some(t(9_990))),
            Verdict::FindLost(t(9_990))
        );
        assert_eq!(
            verdict(
                &error("RequestInProgressException", false),
                at,
                None,
                Some(t(5)),
                day
            ),
            Verdict::FindLost(t(5))
        );
        // The state: skipped for an interval, the error kept on the CA.
        let (then, kept, next, _) = release(verdict_of("InvalidStateException", false, None));
        assert!(matches!(
            then,
            Outcome::Skipped {
                reason: SkipReason::ServiceRefusedState,
                ..
            }
        ));
        assert_eq!((kept.as_deref(), next), (Some("said"), Some(t(96_400))));
        // Throttled to the end: deferred, the window untouched.
        let (then, kept, next, _) = release(verdict_of("ThrottlingException", false, None));
        assert!(matches!(then, Outcome::Deferred { .. }));
        assert_eq!((kept, next), (None, None));
        // The certificate limit: a failure naming the cause, every run.
        // Every answer lost: failed, after a look in the bucket since the first.
        let (then, _, _, look) = release(verdict_of("InternalFailure", true, Some(t(9_000))));
        assert!(matches!(then, Outcome::Failed { .. }));
        assert_eq!(look, Some(t(9_000)));
        // A certain refusal: failed at once, nothing to look for.
        let (then, kept, _, look) = release(verdict_of("AccessDeniedException", false, None));
        assert!(matches!(then, Outcome::Failed { .. }));
        assert_eq!((kept.as_deref(), look), (Some("said"), None));
    }

    #[test]
    fn a_limit_has_two_readings() {
        let day = Interval::new(Duration::from_secs(86_400)).unwrap();
        let limit = error("LimitExceededException", false);
        match verdict(&limit, t(10_000), None, None, day) {
            Verdict::Release {
                then: Outcome::Failed { error_message, .. },
                next: None,
                ..
            } => assert!(
                error_message.contains("100 million") && error_message.contains("30 minutes"),
                "{error_message}"
            ),
            other => panic!("{other:?}"),
        }
        // After a create accepted or lost in the CA's last 30 minutes: "too soon", so that
        // report is looked for.
        let lost = verdict(&limit, t(10_000), Some(t(9_990)), None, day);
        assert_eq!(lost, Verdict::FindLost(t(9_990)));
        let earlier = verdict(&limit, t(10_000), None, Some(t(9_000)), day);
        assert_eq!(earlier, Verdict::FindLost(t(9_000)));
    }
}
