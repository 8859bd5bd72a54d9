//! Create: the audit report requested, each attempt in a slot of the shared pacer.

use super::RunContext;
use crate::aws::acm_pca::{self, CreateRefused, Refusal};
use crate::aws::ledger::Claim;
use crate::domain::time::Timestamp;
use crate::services::TargetClient;

/// What a CA's create came to, after its retries.
pub(super) struct CreateAttempt {
    /// When the last attempt was made.
    pub(super) requested_at: Timestamp,
    /// When the first attempt whose answer was lost was made: a report may exist since.
    pub(super) lost_at: Option<Timestamp>,
    pub(super) result: Result<acm_pca::AuditReport, CreateRefused>,
}

impl RunContext<'_> {
    /// The create, each attempt in a slot of the shared pacer: retried while throttled or
    /// while its answer is lost, up to `CREATE_ATTEMPTS`. When no slot is left before the
    /// invocation's cutoff: `Err` with when an answer was first lost, if one was.
    pub(super) async fn request(
        &self,
        client: &TargetClient,
        claim: &Claim,
    ) -> Result<CreateAttempt, Option<Timestamp>> {
        let bucket = &self.services.settings.report_bucket;
        let mut lost_at: Option<Timestamp> = None;
        for attempt in 1..=CREATE_ATTEMPTS {
            if !client.creates.wait_turn(self.invocation.cutoff()).await {
                return Err(lost_at);
            }
            let at = self.services.clock.now();
            let result =
                acm_pca::request_report(&client.acm_pca, &claim.arn, bucket, self.format).await;
            let again = match &result {
                Ok(_) => {
                    client.creates.accepted().await;
                    false
                }
                Err(e) => match e.refusal {
                    Refusal::Throttled => {
                        client.creates.throttled().await;
                        true
                    }
                    Refusal::Ambiguous => {
                        lost_at.get_or_insert(at);
                        true
                    }
                    _ => false,
                },
            };
            if !again || attempt == CREATE_ATTEMPTS {
                return Ok(CreateAttempt {
                    requested_at: at,
                    lost_at,
                    result,
                });
            }
            if let Err(e) = &result {
                tracing::debug!(attempt, error = %e, "create retried in the next slot");
            }
        }
        unreachable!("the last attempt returns")
    }
}

/// Attempts of one CA's create while the quota throttles it or its answers are lost (each in
/// a slot of its own). Eight: with three answers in ten lost, all eight are lost for one CA
/// in 15,000.
pub const CREATE_ATTEMPTS: u32 = 8;
