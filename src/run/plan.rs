//! Plan: which CAs of an account-region are due, and in which order.

use std::collections::HashMap;

use crate::domain::arn::CaArn;
use crate::domain::outcome::{CaOutcome, outcome};
use crate::domain::time::Timestamp;
use crate::domain::window::{self, Window};

/// Plan: from the candidates' windows at `now`, the CAs due, those that waited longest first
/// (never audited, then the oldest report), and the others skipped with when they are due.
pub(super) fn plan(
    candidates: Vec<CaArn>,
    mut windows: HashMap<String, Window>,
    now: Timestamp,
) -> (Vec<CaArn>, Vec<CaOutcome>) {
    let mut eligible: Vec<(CaArn, Window)> = Vec::new();
    let mut skipped = Vec::new();
    for arn in candidates {
        let w = windows.remove(arn.as_str()).unwrap_or_default();
        match w.blocked(now) {
            Some(skip) => skipped.push(outcome(&arn, skip)),
            None => eligible.push((arn, w)),
        }
    }
    eligible.sort_by(|(a, wa), (b, wb)| {
        window::waiting_order(wa.last_requested_at, a.as_str())
            .cmp(&window::waiting_order(wb.last_requested_at, b.as_str()))
    });
    (eligible.into_iter().map(|(a, _)| a).collect(), skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outcome::Outcome;
    use crate::domain::window::Lease;

    use crate::domain::arn::test_arn as arn;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_epoch_seconds(s)
    }

    #[test]
    fn plan_takes_the_due_cas_longest_waiting_first_and_says_when_the_others_are_due() {
        let reported = |last, next| Window {
            last_requested_at: Some(t(last)),
            next_eligible_at: Some(t(next)),
            ..Window::default()
        };
        let leased = Window {
            lease: Some(Lease {
                run_id: "other".into(),
                expires_at: t(1_500),
                claimed_at: Some(t(950)),
            }),
            ..Window::default()
        };
        let windows = HashMap::from([
            (arn(1).to_string(), reported(500, 900)),
            (arn(2).to_string(), reported(100, 2_000)),
            (arn(3).to_string(), leased),
            (arn(4).to_string(), reported(50, 800)),
        ]);
        let (eligible, skipped) = plan(
            vec![arn(1), arn(2), arn(3), arn(4), arn(5)],
            windows,
            t(1_000),
        );
        // Never audited (5) first, then the oldest report (4 before 1).
        assert_eq!(eligible, vec![arn(5), arn(4), arn(1)]);
        let reasons: Vec<(String, Option<Timestamp>)> = skipped
            .iter()
            .map(|o| match &o.outcome {
                Outcome::Skipped {
                    reason,
                    next_eligible_at,
                    ..
                } => (format!("{reason:?}"), *next_eligible_at),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("InsideWindow".into(), Some(t(2_000))),
                ("ClaimedByAnotherRun".into(), Some(t(1_500))),
            ]
        );
    }
}
