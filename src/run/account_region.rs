//! One account-region of a run: select, follow up earlier reports, plan, execute.

use std::collections::HashMap;

use futures::StreamExt;
use tokio::sync::mpsc;

use super::follow_up::ToRead;
use super::log;
use super::plan::plan;
use super::{RunContext, ledger_failed};
use crate::domain::arn::CaArn;
use crate::domain::outcome::{CaOutcome, Outcome, RegionError, failed, outcome};
use crate::domain::report::ReportCheck;
use crate::inventory::cas;
use crate::services::TargetClient;

impl RunContext<'_> {
    /// One account-region, in three phases: select the CAs to consider, plan from the ledger
    /// which are due and in what order, execute (claim, request, record, follow up).
    #[tracing::instrument(name = "account_region", skip_all, fields(account = %client.account, region = %client.region))]
    pub(super) async fn audit_target(
        &self,
        client: &TargetClient,
        only: Option<&[CaArn]>,
    ) -> (Vec<CaOutcome>, Option<RegionError>) {
        let (candidates, mut outcomes) = match cas::select(
            &self.services.settings,
            client,
            only,
            self.invocation.cutoff(),
        )
        .await
        {
            Ok(selected) => selected,
            Err((failed, region_error)) => {
                log::outcome_lines(&failed);
                return (failed, region_error);
            }
        };
        log::outcome_lines(&outcomes);
        if candidates.is_empty() {
            return (outcomes, None);
        }
        let mut windows = match self.services.ledger.windows(&candidates).await {
            Ok(w) => w,
            Err(e) => {
                // Without the ledger no window can be claimed: request nothing.
                let failed: Vec<CaOutcome> = candidates
                    .iter()
                    .map(|a| outcome(a, ledger_failed(&e)))
                    .collect();
                log::outcome_lines(&failed);
                outcomes.extend(failed);
                return (outcomes, None);
            }
        };
        let (mut checks, to_read) = self
            .follow_up_earlier(client, &candidates, &mut windows)
            .await;
        let standing = super::alerts::standing_of(&candidates, &windows);
        let (eligible, skipped) = plan(candidates, windows, self.services.clock.now());
        log::outcome_lines(&skipped);
        outcomes.extend(skipped);
        let (served, followed) = self.execute(client, eligible, to_read).await;
        outcomes.extend(served);
        checks.extend(followed);
        for o in &mut outcomes {
            o.report = checks.remove(&o.certificate_authority_arn);
        }
        let found = self.judge_alerts(&standing, &outcomes).await;
        let mut all = self.found.lock().unwrap_or_else(|p| p.into_inner());
        all.alerts.extend(found.alerts);
        all.overdue += found.overdue;
        drop(all);
        (outcomes, None)
    }

    /// Execute: claim, request, record and follow up each eligible CA, in order; or, for a dry
    /// run, say what would be requested; or, with the bucket out of reach, fail each.
    pub(super) async fn execute(
        &self,
        client: &TargetClient,
        eligible: Vec<CaArn>,
        to_read: Vec<ToRead>,
    ) -> (Vec<CaOutcome>, HashMap<String, ReportCheck>) {
        if self.request.dry_run {
            let would: Vec<CaOutcome> = (eligible.iter())
                .map(|a| outcome(a, Outcome::WouldRequest))
                .collect();
            log::outcome_lines(&would);
            return (would, HashMap::new());
        }
        if let Some(e) = &self.bucket_error {
            let fail = |a| outcome(a, failed(&e.code, e.message.clone()));
            let failed: Vec<CaOutcome> = eligible.iter().map(fail).collect();
            log::outcome_lines(&failed);
            return (failed, HashMap::new());
        }
        // Creates go at the quota's pace; each accepted report goes to the follow-up,
        // which looks at it a few seconds later while the next CAs are being requested.
        let (reports, accepted) = mpsc::unbounded_channel();
        let requesting = async move {
            let served: Vec<CaOutcome> = futures::stream::iter(eligible.iter())
                .map(|arn| async {
                    let served = self.audit_ca(client, arn, &reports).await;
                    log::outcome_line(&served);
                    served
                })
                .buffered(self.services.settings.max_concurrency)
                .collect()
                .await;
            drop(reports);
            served
        };
        let following = self.follow_up(client, accepted, to_read);
        futures::future::join(requesting, following).await
    }
}
