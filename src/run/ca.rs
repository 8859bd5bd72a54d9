//! One CA, from its claim to its outcome.

use tokio::sync::mpsc;

use super::RunContext;
use super::recover::marked;
use super::verdict::{Verdict, verdict};
use crate::aws::acm_pca::CreateRefused;
use crate::aws::ledger::Claim;
use crate::domain::arn::CaArn;
use crate::domain::bucket::RejectedObject;
use crate::domain::outcome::{CaOutcome, Outcome, failed, outcome};
use crate::domain::time::Timestamp;
use crate::domain::window::PendingReport;
use crate::services::TargetClient;

impl RunContext<'_> {
    /// Claim, then request and record (or release) one CA; or, when the claim took over from
    /// a run that died, record the report that run left in the bucket.
    #[tracing::instrument(name = "ca", skip_all, fields(ca_arn = %arn))]
    pub(super) async fn audit_ca(
        &self,
        client: &TargetClient,
        arn: &CaArn,
        reports: &mpsc::UnboundedSender<(CaArn, PendingReport)>,
    ) -> CaOutcome {
        let mut rejected = Vec::new();
        let mut served = self.serve_ca(client, arn, reports, &mut rejected).await;
        served.rejected_objects = rejected;
        served
    }

    /// `audit_ca`'s steps; the objects found in the bucket that the service did not make are
    /// put in `rejected`, for the CA's outcome.
    async fn serve_ca(
        &self,
        client: &TargetClient,
        arn: &CaArn,
        reports: &mpsc::UnboundedSender<(CaArn, PendingReport)>,
        rejected: &mut Vec<RejectedObject>,
    ) -> CaOutcome {
        if !self.invocation.time_left() {
            return outcome(arn, deferred());
        }
        let claim = match self.claim(arn).await {
            Ok(claim) => claim,
            Err(lost) => return lost,
        };
        if let Some(done) = self.recover_unrecorded(client, &claim, rejected).await {
            return done;
        }
        let attempt = match self.request(client, &claim).await {
            Ok(attempt) => attempt,
            // Out of slots: an answer lost by then stays marked on the CA.
            Err(lost_at) => {
                let claim = marked(&claim, lost_at);
                return self.give_back(&claim, None, None, deferred()).await;
            }
        };
        match attempt.result {
            Ok(report) => {
                self.record_new(&claim, attempt.requested_at, report, reports)
                    .await
            }
            Err(e) => {
                let (at, lost_at) = (attempt.requested_at, attempt.lost_at);
                self.refused(client, &claim, (at, lost_at), e, rejected)
                    .await
            }
        }
    }

    /// What a create the service did not accept (or whose answer was lost) means for the CA:
    /// `verdict` decides, this carries it out.
    pub(super) async fn refused(
        &self,
        client: &TargetClient,
        claim: &Claim,
        (requested_at, lost_at): (Timestamp, Option<Timestamp>),
        refused: CreateRefused,
        rejected: &mut Vec<RejectedObject>,
    ) -> CaOutcome {
        let e = &refused.error;
        let unrecorded = claim.previous.unrecorded_since(self.services.clock.now());
        let interval = self.services.settings.min_interval;
        match verdict(&refused, requested_at, lost_at, unrecorded, interval) {
            Verdict::FindLost(since) => {
                self.find_lost_report(client, claim, since, e, rejected)
                    .await
            }
            Verdict::Release {
                then,
                kept_error,
                next,
                look_first,
            } => {
                if let Some(since) = look_first
                    && let Ok(Some(found)) = self.in_bucket(client, claim, since, rejected).await
                {
                    let why = format!(
                        "the service's answers to this run's creates were lost ({e}); the \
                         report one of them made was found in the bucket"
                    );
                    return self.recover(claim, found, why).await;
                }
                let claim = marked(claim, lost_at);
                let error = kept_error.as_deref().map(|m| (e.code.as_str(), m));
                self.give_back(&claim, error, next, then).await
            }
        }
    }

    /// Releases the claim and reports `then`, unless the release itself fails.
    pub(super) async fn give_back(
        &self,
        claim: &Claim,
        error: Option<(&str, &str)>,
        next: Option<Timestamp>,
        then: Outcome,
    ) -> CaOutcome {
        let now = self.services.clock.now();
        match self.services.ledger.release(claim, error, next, now).await {
            Ok(()) => outcome(&claim.arn, then),
            // The lease still runs out by itself; say both what happened and that it is held.
            Err(e) => outcome(
                &claim.arn,
                failed(
                    &e.code,
                    format!(
                        "{} (and the claim could not be released, it expires at {}: {e})",
                        describe(&then),
                        claim.expires_at
                    ),
                ),
            ),
        }
    }
}

pub(super) fn deferred() -> Outcome {
    Outcome::Deferred {
        detail: "not started: too little time left in this invocation; the next run takes it first"
            .into(),
    }
}

pub(super) fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Failed {
            error_code,
            error_message,
        } => format!("{error_code}: {error_message}"),
        Outcome::Skipped { detail, .. } | Outcome::Deferred { detail } => detail.clone(),
        _ => String::new(),
    }
}
