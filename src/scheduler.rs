//! One run, from the request to the summary: choose the accounts and regions, list, decide,
//! follow up earlier reports, claim, request, record, follow up the new reports.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use aws_config::SdkConfig;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::accounts;
use crate::arn::CaArn;
use crate::authorities::{self, Authority, CreateRefused, Refusal};
use crate::bucket;
use crate::codes::Code;
use crate::config::{Accounts, Settings};
use crate::fan_out;
use crate::format::ReportFormat;
use crate::ids::Account;
use crate::ids::Region;
use crate::ledger::{Claim, ClaimResult, LedgerError, ReportRecord};
use crate::request::{RunRequest, RunScope, Trigger, WorkItem};
use crate::scope;
use crate::service_error::ServiceError;
use crate::summary::{
    AccountError, CaOutcome, Outcome, RegionError, ReportCheck, ReportStatus, RunSummary,
    SkipReason,
};
use crate::time::Timestamp;
use crate::verify;
use crate::window::{self, Event, Interval, PendingReport, Window, next_eligible};

pub use crate::invocation::Invocation;
pub use crate::services::Services;
use crate::services::TargetClient;

/// The first look at a new report: the service usually writes it within seconds.
const FIRST_CHECK: Duration = Duration::from_secs(3);
/// Between two looks at a report still CREATING (the SDK waiter's interval).
const CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// How long a run waits for its reports after its last create: the rest are followed up
/// first thing next run.
const FOLLOW_UP_LIMIT: Duration = Duration::from_secs(300);
/// How long a CA waits, holding its claim, for the report of a create whose answer was lost
/// to appear in the bucket: the service writes reports within seconds.
const LOST_REPORT_WAIT: Duration = Duration::from_secs(30);

/// One account-region of a run, and for a manual request the CAs asked for there.
struct Target {
    account: Account,
    region: Region,
    only: Option<Vec<CaArn>>,
}

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
        bucket::check(&services.s3, &services.settings.report_bucket)
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

/// The accounts (sorted) and regions (in the order configured) a run covers, for its summary.
fn accounts_and_regions(targets: &[Target], home: Option<&str>) -> (Vec<String>, Vec<String>) {
    let accounts: BTreeSet<String> = targets
        .iter()
        .map(|t| t.account.id(home).to_owned())
        .collect();
    let mut regions: Vec<String> = Vec::new();
    for t in targets {
        if !regions.iter().any(|r| t.region == r.as_str()) {
            regions.push(t.region.to_string());
        }
    }
    (accounts.into_iter().collect(), regions)
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

/// Enters every member account of the targets once, side by side: the accounts entered, and
/// for one that cannot be, its error (and a failure for each CA a manual request names there).
async fn enter_accounts(
    services: &Services,
    invocation: &Invocation,
    targets: &[Target],
) -> (
    HashMap<Account, SdkConfig>,
    Vec<CaOutcome>,
    Vec<AccountError>,
) {
    let distinct: BTreeSet<Account> = targets.iter().map(|t| t.account.clone()).collect();
    let partition = invocation.partition.as_deref();
    let results = futures::future::join_all(
        distinct
            .iter()
            .map(|a| async move { (a.clone(), services.account_sdk(a, partition).await) }),
    )
    .await;
    let (mut entered, mut outcomes, mut errors) = (HashMap::new(), Vec::new(), Vec::new());
    for (account, result) in results {
        match result {
            Ok(sdk) => {
                entered.insert(account, sdk);
            }
            Err(e) => {
                for t in targets.iter().filter(|t| t.account == account) {
                    for arn in t.only.iter().flatten() {
                        outcomes.push(outcome(arn, failed(&e.error_code, e.error_message.clone())));
                    }
                }
                errors.push(e);
            }
        }
    }
    (entered, outcomes, errors)
}

/// The account-regions of a run: the work item's one; the accounts and regions of the CAs a
/// manual request names (refusing, CA by CA, those of accounts not audited); or every audited
/// account in every configured region.
async fn targets(
    services: &Services,
    request: &RunRequest,
    home: Option<&str>,
    outcomes: &mut Vec<CaOutcome>,
) -> Result<Vec<Target>, AccountError> {
    let settings = &services.settings;
    let audited = |account: &Account| match account {
        Account::Own => true,
        Account::Member(id) => match &settings.accounts {
            // Without its own id the function cannot tell: the CA's listing will.
            Accounts::Own => home.is_none(),
            Accounts::List(ids) => ids.contains(id),
            Accounts::Organization { .. } => true,
        },
    };
    match &request.scope {
        RunScope::AccountRegion { account, region } => {
            let account = match account {
                Account::Member(id) => Account::of(id, home),
                own => own.clone(),
            };
            if !audited(&account) {
                return Err(AccountError {
                    account_id: account.label().to_owned(),
                    error_code: Code::AccountNotAudited.into(),
                    error_message: format!(
                        "work item for account {account}, which is not among the accounts this function audits (AUDIT_ACCOUNTS)"
                    ),
                });
            }
            let (region, only) = (region.clone(), None);
            Ok(vec![Target {
                account,
                region,
                only,
            }])
        }
        RunScope::These(arns) => Ok(named_targets(arns, settings, home, audited, outcomes)),
        RunScope::Every => {
            let accounts = accounts::audited(&settings.accounts, &services.sdk, home).await?;
            Ok(accounts
                .iter()
                .flat_map(|a| {
                    settings.regions.iter().map(move |r| Target {
                        account: a.clone(),
                        region: r.clone(),
                        only: None,
                    })
                })
                .collect())
        }
    }
}

/// The account-regions of the CAs a manual request names, each with its CAs; a CA of an
/// account not audited is refused here, before anything is listed.
fn named_targets(
    arns: &[CaArn],
    settings: &Settings,
    home: Option<&str>,
    audited: impl Fn(&Account) -> bool,
    outcomes: &mut Vec<CaOutcome>,
) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for arn in arns {
        let account = Account::of(&arn.account_id(), home);
        if !audited(&account) {
            outcomes.push(outcome(
                arn,
                failed(
                    Code::AccountNotAudited.as_str(),
                    format!(
                        "account {} is not among the accounts this function audits (AUDIT_ACCOUNTS)",
                        arn.account()
                    ),
                ),
            ));
            continue;
        }
        // With only its own account audited, every CA named is reached with the function's
        // own credentials, whatever the account its ARN says (the listing tells).
        let account = match settings.accounts {
            Accounts::Own => Account::Own,
            _ => account,
        };
        match targets
            .iter_mut()
            .find(|t| t.account == account && t.region == arn.region())
        {
            Some(t) => t.only.get_or_insert_with(Vec::new).push(arn.clone()),
            None => targets.push(Target {
                account,
                region: arn.region_id(),
                only: Some(vec![arn.clone()]),
            }),
        }
    }
    targets
}

struct RunContext<'a> {
    services: &'a Services,
    request: &'a RunRequest,
    invocation: &'a Invocation,
    format: ReportFormat,
    bucket_error: Option<ServiceError>,
}

/// What a refused create means for its CA.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
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
fn verdict(
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
                authorities::CREATE_ATTEMPTS
            );
            release(Outcome::Deferred { detail }, None, None)
        }
        Refusal::Limit => {
            let message = format!("{}: {}", authorities::LIMIT_CAUSE, e.message);
            release(failed(&e.code, message.clone()), Some(message), None)
        }
        // Every attempt's answer lost (or a certain refusal after one was): the service may
        // hold a report all the same. Look for it first; failing that, the next claim will.
        Refusal::Ambiguous | Refusal::Failed => {
            let message = match lost_at {
                Some(_) => format!(
                    "no certain answer after {} attempts ({}); a report made meanwhile is \
                     looked for in the bucket before the next request",
                    authorities::CREATE_ATTEMPTS,
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

fn skipped(reason: SkipReason, detail: String, next: Timestamp) -> Outcome {
    Outcome::Skipped {
        reason,
        detail,
        next_eligible_at: Some(next),
    }
}

/// What a CA's create came to, after its retries.
struct CreateAttempt {
    /// When the last attempt was made.
    requested_at: Timestamp,
    /// When the first attempt whose answer was lost was made: a report may exist since.
    lost_at: Option<Timestamp>,
    result: Result<authorities::AuditReport, CreateRefused>,
}

/// The listed CAs a request asks for: all of them, or those a manual request names (each
/// named CA the listing lacks is failed here, before any create, so it costs no quota).
fn choose(
    listed: Vec<Authority>,
    only: Option<&[CaArn]>,
    account: &Account,
    region: &str,
) -> (Vec<Authority>, Vec<CaOutcome>) {
    let Some(arns) = only else {
        return (listed, Vec::new());
    };
    let mut by_arn: HashMap<&str, &Authority> =
        listed.iter().map(|a| (a.arn.as_str(), a)).collect();
    let (mut chosen, mut outcomes) = (Vec::new(), Vec::new());
    for arn in arns {
        match by_arn.remove(arn.as_str()) {
            Some(a) => chosen.push(a.clone()),
            None => outcomes.push(outcome(
                arn,
                failed(
                    Code::ResourceNotFoundException.as_str(),
                    format!("no CA {arn} among the CAs account {account} owns in {region}"),
                ),
            )),
        }
    }
    (chosen, outcomes)
}

/// The CAs in an audited state and in scope (exemptions, types); the others skipped with why.
/// A coverage request asks it the same.
pub(crate) fn in_scope(
    authorities: Vec<Authority>,
    settings: &Settings,
) -> (Vec<CaArn>, Vec<CaOutcome>) {
    let (mut kept, mut outcomes) = (Vec::new(), Vec::new());
    for a in authorities {
        let skip = window::state_outcome(a.status.as_ref(), &settings.audit_states)
            .or_else(|| scope::outcome(a.arn.as_str(), a.ca_type.as_ref(), &settings.scope));
        match skip {
            Some(skip) => outcomes.push(outcome(&a.arn, skip)),
            None => kept.push(a.arn),
        }
    }
    (kept, outcomes)
}

/// Plan: from the candidates' windows at `now`, the CAs due, those that waited longest first
/// (never audited, then the oldest report), and the others skipped with when they are due.
fn plan(
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

fn outcome(arn: &CaArn, outcome: Outcome) -> CaOutcome {
    CaOutcome {
        certificate_authority_arn: arn.to_string(),
        account_id: arn.account().to_owned(),
        region: arn.region().to_owned(),
        outcome,
        report: None,
    }
}

fn failed(code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Failed {
        error_code: code.to_owned(),
        error_message: message.into(),
    }
}

fn ledger_failed(e: &LedgerError) -> Outcome {
    failed(&e.code, e.to_string())
}

/// A report the follow-up could not see end, to be looked at again next run.
fn still_creating(report: &PendingReport, detail: Option<String>) -> ReportCheck {
    ReportCheck {
        report_id: report.report_id.clone(),
        status: ReportStatus::Creating,
        size_bytes: None,
        detail,
        contents: None,
    }
}

impl RunContext<'_> {
    /// One account-region, in three phases: select the CAs to consider, plan from the ledger
    /// which are due and in what order, execute (claim, request, record, follow up).
    #[tracing::instrument(name = "account_region", skip_all, fields(account = %client.account, region = %client.region))]
    async fn audit_target(
        &self,
        client: &TargetClient,
        only: Option<&[CaArn]>,
    ) -> (Vec<CaOutcome>, Option<RegionError>) {
        let (candidates, mut outcomes) = match self.select(client, only).await {
            Ok(selected) => selected,
            Err(listing) => return listing,
        };
        if candidates.is_empty() {
            return (outcomes, None);
        }
        let mut windows = match self.services.ledger.windows(&candidates).await {
            Ok(w) => w,
            Err(e) => {
                // Without the ledger no window can be claimed: request nothing.
                outcomes.extend(candidates.iter().map(|a| outcome(a, ledger_failed(&e))));
                return (outcomes, None);
            }
        };
        let mut checks = self
            .follow_up_earlier(client, &candidates, &mut windows)
            .await;
        let (eligible, skipped) = plan(candidates, windows, self.services.clock.now());
        outcomes.extend(skipped);
        let (served, followed) = self.execute(client, eligible).await;
        outcomes.extend(served);
        checks.extend(followed);
        for o in &mut outcomes {
            o.report = checks.remove(&o.certificate_authority_arn);
        }
        (outcomes, None)
    }

    /// Select: the CAs of the account-region (those a manual request names, when it does)
    /// that are in an audited state, in scope, and carry the required tags; the others with
    /// why. A listing that fails is the account-region's error (or, for a manual request,
    /// each named CA's).
    async fn select(
        &self,
        client: &TargetClient,
        only: Option<&[CaArn]>,
    ) -> Result<(Vec<CaArn>, Vec<CaOutcome>), (Vec<CaOutcome>, Option<RegionError>)> {
        let region = client.region.as_str();
        let settings = &self.services.settings;
        let listed = authorities::list(&client.acm_pca).await.map_err(|e| {
            let message = format!(
                "listing CAs of account {} in {region}: {}",
                client.account, e.message
            );
            // A manual request names its CAs: each gets the error. A scheduled run cannot
            // know which CAs it missed, so the account-region itself is reported.
            match only {
                Some(arns) => (
                    arns.iter()
                        .map(|a| outcome(a, failed(&e.code, message.clone())))
                        .collect(),
                    None,
                ),
                None => (
                    vec![],
                    Some(RegionError {
                        account_id: client.account.label().to_owned(),
                        region: region.to_owned(),
                        error_code: e.code,
                        error_message: message,
                    }),
                ),
            }
        })?;
        let (chosen, mut outcomes) = choose(listed, only, &client.account, region);
        let (candidates, out_of_scope) = in_scope(chosen, settings);
        outcomes.extend(out_of_scope);
        if settings.scope.required_tags.is_empty() {
            return Ok((candidates, outcomes));
        }
        let (tagged, untagged) = self.with_required_tags(client, candidates).await;
        outcomes.extend(untagged);
        Ok((tagged, outcomes))
    }

    /// The candidates that carry every required tag (one ListTags each, at the read pace).
    async fn with_required_tags(
        &self,
        client: &TargetClient,
        candidates: Vec<CaArn>,
    ) -> (Vec<CaArn>, Vec<CaOutcome>) {
        let required = &self.services.settings.scope.required_tags;
        let cutoff = self.invocation.cutoff();
        let tagged: Vec<(CaArn, Result<authorities::Tags, ServiceError>)> =
            futures::stream::iter(candidates)
                .map(|arn| async move {
                    client.reads.wait_turn(cutoff).await;
                    let tags = authorities::tags(&client.acm_pca, &arn).await;
                    (arn, tags)
                })
                .buffered(4)
                .collect()
                .await;
        let (mut kept, mut outcomes) = (Vec::new(), Vec::new());
        for (arn, tags) in tagged {
            match tags {
                Ok(tags) => match scope::tag_outcome(&tags, required) {
                    Some(skip) => outcomes.push(outcome(&arn, skip)),
                    None => kept.push(arn),
                },
                Err(e) => outcomes.push(outcome(
                    &arn,
                    failed(&e.code, format!("reading the CA's tags: {}", e.message)),
                )),
            }
        }
        (kept, outcomes)
    }

    /// Reports of earlier runs not yet seen to end are followed up first: a FAILED one
    /// reopens its CA's window, which may make the CA due again in this very run.
    async fn follow_up_earlier(
        &self,
        client: &TargetClient,
        candidates: &[CaArn],
        windows: &mut HashMap<String, Window>,
    ) -> HashMap<String, ReportCheck> {
        let mut checks = HashMap::new();
        if self.request.dry_run {
            return checks;
        }
        for arn in candidates {
            let Some(w) = windows.get_mut(arn.as_str()) else {
                continue;
            };
            let Some(pending) = w.pending_report() else {
                continue;
            };
            let check = self.follow_up_once(client, arn, &pending).await;
            if check.status == ReportStatus::Failed {
                w.next_eligible_at = Some(next_eligible(
                    Event::ReportFailed(pending.requested_at),
                    self.services.settings.min_interval,
                ));
            }
            checks.insert(arn.to_string(), check);
        }
        checks
    }

    /// Execute: claim, request, record and follow up each eligible CA, in order; or, for a dry
    /// run, say what would be requested; or, with the bucket out of reach, fail each.
    async fn execute(
        &self,
        client: &TargetClient,
        eligible: Vec<CaArn>,
    ) -> (Vec<CaOutcome>, HashMap<String, ReportCheck>) {
        if self.request.dry_run {
            let would = eligible.iter().map(|a| outcome(a, Outcome::WouldRequest));
            return (would.collect(), HashMap::new());
        }
        if let Some(e) = &self.bucket_error {
            let fail = |a| outcome(a, failed(&e.code, e.message.clone()));
            return (eligible.iter().map(fail).collect(), HashMap::new());
        }
        // Creates go at the quota's pace; each accepted report goes to the follow-up,
        // which looks at it a few seconds later while the next CAs are being requested.
        let (reports, accepted) = mpsc::unbounded_channel();
        let requesting = async move {
            let served: Vec<CaOutcome> = futures::stream::iter(eligible.iter())
                .map(|arn| self.audit_ca(client, arn, &reports))
                .buffered(self.services.settings.max_concurrency)
                .collect()
                .await;
            drop(reports);
            served
        };
        futures::future::join(requesting, self.follow_up(client, accepted)).await
    }

    /// One look at a report: what it came to is written to the ledger once it has ended.
    async fn follow_up_once(
        &self,
        client: &TargetClient,
        arn: &CaArn,
        pending: &PendingReport,
    ) -> ReportCheck {
        client.reads.wait_turn(self.invocation.deadline).await;
        let check = match verify::check(&client.acm_pca, &self.services.s3, arn, pending).await {
            Ok(check) => check,
            Err(e) => {
                return still_creating(pending, Some(format!("could not follow it up: {e}")));
            }
        };
        if check.status == ReportStatus::Creating {
            return check;
        }
        let check = if self.services.settings.read_reports {
            verify::read_contents(self.services, arn, pending, check).await
        } else {
            check
        };
        let reopen = (check.status == ReportStatus::Failed).then(|| {
            next_eligible(
                Event::ReportFailed(pending.requested_at),
                self.services.settings.min_interval,
            )
        });
        let now = self.services.clock.now();
        match self
            .services
            .ledger
            .verified(arn, pending, &check, reopen, now)
            .await
        {
            Ok(()) => check,
            // Seen but not written: the next run looks again.
            Err(e) => ReportCheck {
                detail: Some(format!(
                    "{}; not recorded: {e}",
                    check
                        .detail
                        .clone()
                        .unwrap_or_else(|| check.status.as_str().into())
                )),
                ..check
            },
        }
    }

    /// Follows up the reports requested in this run as they come, until each has ended, or
    /// the invocation is short of time, or FOLLOW_UP_LIMIT has passed since the last create.
    async fn follow_up(
        &self,
        client: &TargetClient,
        mut accepted: mpsc::UnboundedReceiver<(CaArn, PendingReport)>,
    ) -> HashMap<String, ReportCheck> {
        let mut waiting: VecDeque<(Instant, CaArn, PendingReport)> = VecDeque::new();
        let mut done = HashMap::new();
        let mut open = true;
        let mut give_up = self.invocation.cutoff();
        let far = Instant::now() + Duration::from_secs(86_400);
        loop {
            if !open && waiting.is_empty() {
                break;
            }
            let next_due = waiting.front().map_or(far, |(due, _, _)| *due);
            tokio::select! {
                message = accepted.recv(), if open => match message {
                    Some((arn, report)) => {
                        waiting.push_back((Instant::now() + FIRST_CHECK, arn, report));
                    }
                    None => {
                        open = false;
                        give_up = give_up.min(Instant::now() + FOLLOW_UP_LIMIT);
                    }
                },
                _ = tokio::time::sleep_until(next_due.min(give_up)), if !waiting.is_empty() => {
                    if Instant::now() >= give_up {
                        // Out of time: what is left is followed up first thing next run.
                        for (_, arn, report) in waiting.drain(..) {
                            done.insert(arn.to_string(), still_creating(&report, None));
                        }
                        continue;
                    }
                    let Some((_, arn, report)) = waiting.pop_front() else { continue };
                    let check = self.follow_up_once(client, &arn, &report).await;
                    if check.status == ReportStatus::Creating && check.detail.is_none() {
                        waiting.push_back((Instant::now() + CHECK_INTERVAL, arn, report));
                    } else {
                        done.insert(arn.to_string(), check);
                    }
                }
            }
        }
        done
    }

    /// Claim, then request and record (or release) one CA; or, when the claim took over from
    /// a run that died, record the report that run left in the bucket.
    #[tracing::instrument(name = "ca", skip_all, fields(ca_arn = %arn))]
    async fn audit_ca(
        &self,
        client: &TargetClient,
        arn: &CaArn,
        reports: &mpsc::UnboundedSender<(CaArn, PendingReport)>,
    ) -> CaOutcome {
        if !self.invocation.time_left() {
            return outcome(arn, deferred());
        }
        let claim = match self.claim(arn).await {
            Ok(claim) => claim,
            Err(lost) => return lost,
        };
        if let Some(done) = self.recover_unrecorded(&claim).await {
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
                self.refused(&claim, attempt.requested_at, attempt.lost_at, e)
                    .await
            }
        }
    }

    /// The CA's window, claimed with one conditional write; or why it could not be.
    async fn claim(&self, arn: &CaArn) -> Result<Claim, CaOutcome> {
        let services = self.services;
        let now = services.clock.now();
        // The lease ends when the invocation must: a run that dies holds the CA no longer than
        // the function's timeout allows it to live.
        let remaining = self
            .invocation
            .deadline
            .saturating_duration_since(Instant::now());
        let lease_expiry = now.plus(remaining + Duration::from_secs(1));
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

    /// When the claim took over from a run that died (or a create whose answer was lost), the
    /// report it may have made is looked for in the bucket first: found, it is recorded and
    /// no new one is requested. No API lists audit reports: the bucket is where a lost report
    /// id turns up.
    async fn recover_unrecorded(&self, claim: &Claim) -> Option<CaOutcome> {
        let services = self.services;
        let since = claim.previous.unrecorded_since(services.clock.now())?;
        match self.in_bucket(claim, since).await {
            Ok(Some(found)) => {
                let why = format!(
                    "a run claimed the CA at {since} and did not record a report (it died, or \
                     the service's answer was lost)"
                );
                Some(self.recover(claim, found, why).await)
            }
            Ok(None) => None,
            Err(e) => {
                let fail = failed(
                    &e.code,
                    format!(
                        "a run that died may have requested a report at {since}; the bucket \
                         could not be searched for it, so none was requested: {}",
                        e.message
                    ),
                );
                Some(self.give_back(claim, None, None, fail).await)
            }
        }
    }

    /// The create, each attempt in a slot of the shared pacer: retried while throttled or
    /// while its answer is lost, up to `CREATE_ATTEMPTS`. When no slot is left before the
    /// invocation's cutoff: `Err` with when an answer was first lost, if one was.
    async fn request(
        &self,
        client: &TargetClient,
        claim: &Claim,
    ) -> Result<CreateAttempt, Option<Timestamp>> {
        let bucket = &self.services.settings.report_bucket;
        let mut lost_at: Option<Timestamp> = None;
        for attempt in 1..=authorities::CREATE_ATTEMPTS {
            if !client.creates.wait_turn(self.invocation.cutoff()).await {
                return Err(lost_at);
            }
            let at = self.services.clock.now();
            let result =
                authorities::request_report(&client.acm_pca, &claim.arn, bucket, self.format).await;
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
            if !again || attempt == authorities::CREATE_ATTEMPTS {
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

    /// Records the report the service accepted and hands it to the follow-up.
    async fn record_new(
        &self,
        claim: &Claim,
        requested_at: Timestamp,
        report: authorities::AuditReport,
        reports: &mpsc::UnboundedSender<(CaArn, PendingReport)>,
    ) -> CaOutcome {
        let services = self.services;
        let arn = &claim.arn;
        let record = ReportRecord {
            report_id: report.id,
            s3_bucket: services.settings.report_bucket.clone(),
            s3_key: report.s3_key,
            format: self.format,
            requested_at,
            next_eligible_at: next_eligible(
                Event::Reported(requested_at),
                services.settings.min_interval,
            ),
            status: ReportStatus::Creating,
            size_bytes: None,
            recovered: false,
        };
        match services
            .ledger
            .record(claim, &self.invocation.run_id, &record)
            .await
        {
            Ok(()) => {
                // The follow-up may already be gone (out of time): the report then
                // stays CREATING in the ledger, for the next run.
                let _ = reports.send((
                    arn.clone(),
                    PendingReport {
                        report_id: record.report_id.clone(),
                        s3_bucket: record.s3_bucket.clone(),
                        s3_key: record.s3_key.clone(),
                        requested_at,
                    },
                ));
                outcome(
                    arn,
                    Outcome::Requested {
                        report_id: record.report_id,
                        s3_bucket: record.s3_bucket,
                        s3_key: record.s3_key,
                        format: record.format,
                        requested_at,
                    },
                )
            }
            // The report exists but the ledger does not say so. The claim stays until
            // its lease runs out, so no run requests the CA again meanwhile; the run
            // after that finds the report in the bucket.
            Err(e) => outcome(
                arn,
                failed(
                    Code::LedgerWriteFailed.as_str(),
                    format!(
                        "audit report {} ({}) was requested but not recorded: {e}",
                        record.report_id, record.s3_key
                    ),
                ),
            ),
        }
    }

    /// What a create the service did not accept (or whose answer was lost) means for the CA:
    /// `verdict` decides, this carries it out.
    async fn refused(
        &self,
        claim: &Claim,
        requested_at: Timestamp,
        lost_at: Option<Timestamp>,
        refused: CreateRefused,
    ) -> CaOutcome {
        let e = &refused.error;
        let unrecorded = claim.previous.unrecorded_since(self.services.clock.now());
        let interval = self.services.settings.min_interval;
        match verdict(&refused, requested_at, lost_at, unrecorded, interval) {
            Verdict::FindLost(since) => self.find_lost_report(claim, since, e).await,
            Verdict::Release {
                then,
                kept_error,
                next,
                look_first,
            } => {
                if let Some(since) = look_first
                    && let Ok(Some(found)) = self.in_bucket(claim, since).await
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

    /// The report of the CA written to the bucket since `since` that the ledger does not
    /// have (its last recorded key aside): no API lists audit reports, so the bucket is where
    /// a lost report id turns up again.
    async fn in_bucket(
        &self,
        claim: &Claim,
        since: Timestamp,
    ) -> Result<Option<verify::FoundReport>, ServiceError> {
        let bucket = &self.services.settings.report_bucket;
        let known = claim.previous.last_s3_key.as_deref();
        verify::find_unrecorded(&self.services.s3, bucket, &claim.arn, since, known).await
    }

    /// A create refused as too soon after one whose answer was lost: the report that one made
    /// is looked for in the bucket until it is written (the service writes asynchronously,
    /// usually within seconds), then recorded. Not found in time, the CA keeps the mark, and
    /// the next run looks again before any new request.
    async fn find_lost_report(
        &self,
        claim: &Claim,
        since: Timestamp,
        e: &ServiceError,
    ) -> CaOutcome {
        let services = self.services;
        let give_up = (Instant::now() + LOST_REPORT_WAIT).min(self.invocation.cutoff());
        loop {
            match self.in_bucket(claim, since).await {
                Ok(Some(found)) => {
                    let why = format!(
                        "the service accepted a create at or after {since} whose answer was \
                         lost; a later create was refused as too soon ({}), and the report was \
                         found in the bucket",
                        e.code
                    );
                    return self.recover(claim, found, why).await;
                }
                Ok(None) if Instant::now() + CHECK_INTERVAL < give_up => {
                    tokio::time::sleep(CHECK_INTERVAL).await;
                }
                result => {
                    let next =
                        next_eligible(Event::AnswerLost(since), services.settings.min_interval);
                    let searched = match result {
                        Err(se) => format!("the bucket could not be searched ({se})"),
                        _ => "it is not in the bucket yet".to_owned(),
                    };
                    let skip = Outcome::Skipped {
                        reason: SkipReason::LostReportPending,
                        detail: format!(
                            "the service accepted a create at or after {since} whose answer was \
                             lost (a later one was refused as too soon: {}); {searched}, so the \
                             next run looks for it before any new request",
                            e.code
                        ),
                        next_eligible_at: Some(next),
                    };
                    let claim = marked(claim, Some(since));
                    return self.give_back(&claim, None, Some(next), skip).await;
                }
            }
        }
    }

    /// Records a report whose id was lost (`why`), found in the bucket, as if the run that
    /// requested it had recorded it.
    async fn recover(&self, claim: &Claim, found: verify::FoundReport, why: String) -> CaOutcome {
        let services = self.services;
        let record = ReportRecord {
            report_id: found.report_id,
            s3_bucket: services.settings.report_bucket.clone(),
            s3_key: found.s3_key,
            format: found.format,
            requested_at: found.written_at,
            next_eligible_at: next_eligible(
                Event::Reported(found.written_at),
                services.settings.min_interval,
            ),
            status: ReportStatus::Success,
            size_bytes: Some(found.size_bytes),
            recovered: true,
        };
        match services
            .ledger
            .record(claim, &self.invocation.run_id, &record)
            .await
        {
            Ok(()) => outcome(
                &claim.arn,
                Outcome::Recovered {
                    detail: why,
                    report_id: record.report_id,
                    s3_bucket: record.s3_bucket,
                    s3_key: record.s3_key,
                    format: record.format,
                    requested_at: record.requested_at,
                    size_bytes: found.size_bytes,
                },
            ),
            Err(e) => {
                let fail = failed(
                    &e.code,
                    format!(
                        "found audit report {} of a run that died, but could not record it: {e}",
                        record.report_id
                    ),
                );
                self.give_back(claim, None, None, fail).await
            }
        }
    }

    /// Releases the claim and reports `then`, unless the release itself fails.
    async fn give_back(
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

/// The claim as released after a create whose answer was lost at `lost_at`: the report it may
/// have made is looked for before the CA's next request (`Window::unrecorded_since`).
fn marked(claim: &Claim, lost_at: Option<Timestamp>) -> Claim {
    let mut claim = claim.clone();
    if let Some(at) = lost_at {
        let since = claim.previous.orphan_since.map_or(at, |o| o.min(at));
        claim.previous.orphan_since = Some(since);
    }
    claim
}

fn deferred() -> Outcome {
    Outcome::Deferred {
        detail: "not started: too little time left in this invocation; the next run takes it first"
            .into(),
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Failed {
            error_code,
            error_message,
        } => format!("{error_code}: {error_message}"),
        Outcome::Skipped { detail, .. } | Outcome::Deferred { detail } => detail.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Lease;

    fn arn(n: u8) -> CaArn {
        CaArn::parse(&format!(
            "arn:aws:acm-pca:eu-west-1:111111111111:certificate-authority/00000000-0000-0000-0000-0000000000{n:02}"
        ))
        .unwrap()
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_epoch_seconds(s)
    }

    #[test]
    fn plan_takes_the_due_cas_longest_waiting_first_and_says_when_the_others_are_due() {
        let windows = HashMap::from([
            (
                arn(1).to_string(),
                Window {
                    last_requested_at: Some(t(500)),
                    next_eligible_at: Some(t(900)),
                    ..Window::default()
                },
            ),
            (
                arn(2).to_string(),
                Window {
                    last_requested_at: Some(t(100)),
                    next_eligible_at: Some(t(2_000)),
                    ..Window::default()
                },
            ),
            (
                arn(3).to_string(),
                Window {
                    lease: Some(Lease {
                        run_id: "other".into(),
                        expires_at: t(1_500),
                        claimed_at: Some(t(950)),
                    }),
                    ..Window::default()
                },
            ),
            (
                arn(4).to_string(),
                Window {
                    last_requested_at: Some(t(50)),
                    next_eligible_at: Some(t(800)),
                    ..Window::default()
                },
            ),
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
        let (then, _, next, _) = release(verdict_of("LimitExceededException", false, None));
        assert!(
            matches!(&then, Outcome::Failed { error_message, .. } if error_message.contains("100 million"))
        );
        assert_eq!(next, None);
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
    fn a_named_ca_the_listing_lacks_fails_before_any_create() {
        let listed = vec![Authority {
            arn: arn(1),
            status: Some(aws_sdk_acmpca::types::CertificateAuthorityStatus::Active),
            ca_type: Some(aws_sdk_acmpca::types::CertificateAuthorityType::Root),
        }];
        let (chosen, outcomes) = choose(
            listed.clone(),
            Some(&[arn(1), arn(2)]),
            &Account::Own,
            "eu-west-1",
        );
        assert_eq!(chosen, listed);
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].certificate_authority_arn, arn(2).to_string());
        assert!(matches!(
            &outcomes[0].outcome,
            Outcome::Failed { error_code, .. } if error_code == "ResourceNotFoundException"
        ));
        let (all, none) = choose(listed.clone(), None, &Account::Own, "eu-west-1");
        assert_eq!((all, none.len()), (listed, 0));
    }
}
