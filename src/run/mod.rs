//! One run, from the request to the summary: choose the accounts and regions, list, decide,
//! follow up earlier reports, claim, request, record, follow up the new reports.

pub mod account_region;
pub mod ca;
pub mod claim;
pub mod create;
pub mod fan_out;
pub mod follow_up;
pub mod plan;
pub mod record;
pub mod recover;
pub mod summary;
pub mod verdict;

use crate::aws::ServiceError;
use crate::aws::ledger::LedgerError;
use crate::aws::s3;
use crate::domain::outcome::{Outcome, RegionError, failed};
use crate::domain::report::ReportFormat;
use crate::domain::request::{RunRequest, RunScope, Trigger, WorkItem};
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
    if let Some((sent, errors)) = fan_out_round(services, request, invocation, &to_audit).await {
        fanned_out = sent;
        region_errors.extend(errors);
        to_audit.clear();
    }
    let (entered, refused, not_entered) = enter_accounts(services, invocation, &to_audit).await;
    outcomes.extend(refused);
    account_errors.extend(not_entered);
    to_audit.retain(|t| entered.contains_key(&t.account));

    // The bucket is checked once, up front: a missing bucket fails every CA without
    // claiming a single window. A dry run checks it too, to report what a real run would meet.
    let bucket_error = if to_audit.is_empty() {
        None
    } else {
        s3::check(&services.s3, &services.settings.report_bucket)
            .await
            .err()
    };

    let ctx = RunContext {
        services,
        request,
        invocation,
        format,
        bucket_error,
    };
    let results = futures::future::join_all(to_audit.iter().map(|t| {
        let client = services.target(
            &t.account,
            t.account.id(home),
            t.region.as_str(),
            &entered[&t.account],
        );
        let ctx = &ctx;
        async move { ctx.audit_target(&client, t.only.as_deref()).await }
    }))
    .await;
    for (mut o, e) in results {
        outcomes.append(&mut o);
        region_errors.extend(e);
    }
    RunSummary {
        run_id: invocation.run_id.clone(),
        trigger: request.trigger.clone(),
        dry_run: request.dry_run,
        started_at,
        finished_at: services.clock.now(),
        accounts,
        regions,
        counts: RunSummary::count(&outcomes),
        account_errors,
        region_errors,
        fanned_out,
        certificate_authorities: outcomes,
    }
}

/// A scheduled round over more account-regions than the fan-out threshold: one work item per
/// account-region sent to the queue instead (what was sent, and what could not be).
async fn fan_out_round(
    services: &Services,
    request: &RunRequest,
    invocation: &Invocation,
    targets: &[Target],
) -> Option<(Vec<WorkItem>, Vec<RegionError>)> {
    let f = services.settings.fan_out.as_ref()?;
    let whole_round =
        matches!(request.trigger, Trigger::Schedule { .. }) && request.scope == RunScope::Every;
    if !whole_round || targets.len() <= f.threshold {
        return None;
    }
    let home = invocation.home_account.as_deref();
    let items: Vec<_> = targets
        .iter()
        .map(|t| fan_out::item(invocation, request, t.account.id(home), t.region.as_str()))
        .collect();
    Some(fan_out::send(&services.sqs, &f.queue_url, items).await)
}

struct RunContext<'a> {
    services: &'a Services,
    request: &'a RunRequest,
    invocation: &'a Invocation,
    format: ReportFormat,
    bucket_error: Option<ServiceError>,
}

fn ledger_failed(e: &LedgerError) -> Outcome {
    failed(&e.code, e.to_string())
}
