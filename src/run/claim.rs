//! Claim: the CA's window, taken with one conditional write.

use crate::domain::window;

use tokio::time::Instant;

use super::{RunContext, ledger_failed};
use crate::aws::ledger::{Claim, ClaimResult};
use crate::domain::arn::CaArn;
use crate::domain::outcome::{CaOutcome, Outcome, SkipReason, outcome};

impl RunContext<'_> {
    /// The CA's window, claimed with one conditional write; or why it could not be.
    pub(super) async fn claim(&self, arn: &CaArn) -> Result<Claim, CaOutcome> {
        let services = self.services;
        let now = services.clock.now();
        // The lease ends when the invocation must: a run that dies holds the CA no longer than
        // the function's timeout allows it to live.
        let remaining = self
            .invocation
            .deadline
            .saturating_duration_since(Instant::now());
        let lease_expiry = window::lease_expiry(now, remaining);
        let run_id = &self.invocation.run_id;
        match services.ledger.claim(arn, run_id, now, lease_expiry).await {
            Ok(ClaimResult::Won(claim)) => Ok(claim),
            Ok(ClaimResult::Lost(w)) => Err(outcome(
                arn,
                w.blocked(now).unwrap_or(Outcome::Skipped {
                    reason: SkipReason::ClaimedByAnotherRun,
                    detail: "another run claimed the CA first".into(),
                    next_eligible_at: None,
                }),
            )),
            Err(e) => Err(outcome(arn, ledger_failed(&e))),
        }
    }
}
