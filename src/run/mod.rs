//! A run: one audit round, from the request to its summary, a module a phase.
//!
//! `run` takes the account-regions (`inventory`), fans a large scheduled round out
//! (`fan_out`), and audits each account-region side by side (`account_region`): select the
//! CAs, follow up earlier reports (`follow_up`), decide which are due (`plan`), then one CA
//! at a time in quota order (`ca`): `claim` its window, look for a lost report (`recover`),
//! `create` the report in a pacer slot, `record` it, or carry out what a refusal means
//! (`verdict`). The new reports are followed up as they come, and those to be read (`read`)
//! are read beside the creates; `summary` is what returns.

pub mod account_region;
pub mod alerts;
pub mod ca;
pub mod claim;
pub mod create;
pub mod fan_out;
pub mod follow_up;
pub mod log;
pub mod notify;
pub mod plan;
pub mod read;
pub mod record;
pub mod recover;
pub mod summary;
pub mod verdict;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::SdkConfig;

use crate::aws::ServiceError;
use crate::aws::ledger::LedgerError;
use crate::aws::s3;
use crate::domain::ids::Account;
use crate::domain::outcome::{CaOutcome, Outcome, RegionError, failed};
use crate::domain::report::ReportFormat;
use crate::domain::request::RunRequest;
use crate::inventory::targets::{Target, accounts_and_regions, enter_accounts, targets};
use crate::invocation::Invocation;
use crate::services::Services;
use summary::RunSummary;

/// Runs one audit round and returns its summary. Errors of single CAs, regions or accounts
/// are in the summary; nothing here fails the whole run but a summary with failures in it.
// Spans carry the ids, so the log lines inside a run, an account-region or a CA need not.
#[tracing::instrument(name = "run", skip_all, fields(run_id = %invocation.run_id))]
pub async fn run(services: &Services, request: &RunRequest, invocation: &Invocation) -> RunSummary {
    let started_at = services.clock.now();
    let format = request.format.unwrap_or(services.settings.report_format);
    let home = invocation.home_account.as_deref();
    let mut outcomes = Vec::new();
    let mut account_errors = Vec::new();
    let mut region_errors = Vec::new();
    let mut fanned_out = Vec::new();

    let targets = match targets(services, request, home, &mut outcomes).await {
        Ok(t) => t,
        Err(e) => {
            account_errors.push(e);
            Vec::new()
        }
    };
    let (accounts, regions) = accounts_and_regions(&targets, home);

    let mut to_audit = targets;
    if let Some((sent, errors)) =
        fan_out::fan_out_round(services, request, invocation, &to_audit).await
    {
        fanned_out = sent;
        region_errors.extend(errors);
        to_audit.clear();
    }
    let (entered, refused, not_entered) = enter_accounts(services, invocation, &to_audit).await;
    outcomes.extend(refused);
    log::outcome_lines(&outcomes); // named CAs refused before any listing
    account_errors.extend(not_entered);
    to_audit.retain(|t| entered.contains_key(&t.account));

    let ctx = RunContext {
        services,
        request,
        invocation,
        format,
        bucket_error: bucket_error(services, &to_audit).await,
        found: Mutex::default(),
    };
    let (mut audited, errors) = ctx.audit_targets(&to_audit, &entered).await;
    outcomes.append(&mut audited);
    region_errors.extend(errors);
    let summary = RunSummary {
        version: Default::default(),
        run_id: invocation.run_id.clone(),
        trigger: request.trigger.clone(),
        dry_run: request.dry_run,
        started_at,
        finished_at: services.clock.now(),
        accounts,
        regions,
        counts: RunSummary::counts_of(&outcomes, &account_errors),
        account_errors,
        region_errors,
        fanned_out,
        certificate_authorities: outcomes,
        certificate_authorities_omitted: 0,
        outcomes_key: None,
        alerts: Vec::new(),
    };
    Box::pin(ctx.notify_all(summary)).await
}

impl RunContext<'_> {
    /// The run's overdue count and alerts (the CAs', then the accounts' and regions'), sent
    /// at its end; a dry run counts, but sends none.
    async fn notify_all(self, mut summary: RunSummary) -> RunSummary {
        let found = self.found.into_inner().unwrap_or_else(|p| p.into_inner());
        summary.counts.overdue = found.overdue;
        if self.request.dry_run {
            return summary;
        }
        summary.alerts = found.alerts;
        let (accounts, regions) = (&summary.account_errors, &summary.region_errors);
        let run_id = &self.invocation.run_id;
        (summary.alerts).extend(notify::account_alerts(accounts, regions, run_id));
        let (sent, not_sent) = notify::send(self.services, self.invocation, &summary.alerts).await;
        summary.counts.events_sent = sent;
        summary.counts.events_not_sent = not_sent;
        // Boxed: the run's future stays small enough for a thread's stack in a debug build.
        let (imported, not_imported) = Box::pin(notify::import_findings(
            self.services,
            self.invocation,
            &summary.alerts,
        ))
        .await;
        summary.counts.findings_imported = imported;
        summary.counts.findings_not_imported = not_imported;
        summary
    }
}

/// The bucket is checked once, up front: a missing bucket fails every CA without claiming a
/// single window. A dry run checks it too, to report what a real run would meet.
async fn bucket_error(services: &Services, to_audit: &[Target]) -> Option<ServiceError> {
    if to_audit.is_empty() {
        return None;
    }
    let bucket = &services.settings.report_bucket;
    s3::check(&services.s3, bucket).await.err()
}

impl RunContext<'_> {
    /// Every account-region entered, side by side: the CAs' outcomes, and each account-region
    /// that could not be listed.
    async fn audit_targets(
        &self,
        targets: &[Target],
        entered: &HashMap<Account, SdkConfig>,
    ) -> (Vec<CaOutcome>, Vec<RegionError>) {
        let home = self.invocation.home_account.as_deref();
        let results = futures::future::join_all(targets.iter().map(|t| {
            let account_id = t.account.id(home);
            let sdk = &entered[&t.account];
            let client = self
                .services
                .target(&t.account, account_id, t.region.as_str(), sdk);
            async move { self.audit_target(&client, t.only.as_deref()).await }
        }))
        .await;
        let (mut outcomes, mut errors) = (Vec::new(), Vec::new());
        for (mut o, e) in results {
            outcomes.append(&mut o);
            errors.extend(e);
        }
        (outcomes, errors)
    }
}

/// What every phase of one round reads: the services, the request and its invocation, the
/// format the round asks for, and the report bucket as checked once, up front.
struct RunContext<'a> {
    services: &'a Services,
    request: &'a RunRequest,
    invocation: &'a Invocation,
    format: ReportFormat,
    bucket_error: Option<ServiceError>,
    /// The alerts the account-regions raised, and how many CAs were overdue.
    found: Mutex<alerts::Found>,
}

/// A CA failed because the ledger could not be read or written: no window can be claimed.
fn ledger_failed(e: &LedgerError) -> Outcome {
    failed(&e.code, e.to_string())
}
