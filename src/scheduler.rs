//! One run, from the request to the summary: list, decide, claim, request, record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_acmpca::config::Region;
use futures::StreamExt;
use tokio::time::Instant;

use crate::arn::CaArn;
use crate::authorities::{self, Authority, Pacer, Refusal, ServiceError};
use crate::bucket;
use crate::config::{ReportFormat, SERVICE_WINDOW, Settings};
use crate::ledger::{Claim, ClaimResult, Ledger, LedgerError, ReportRecord};
use crate::request::RunRequest;
use crate::summary::{CaOutcome, Outcome, RegionError, RunSummary, SkipReason};
use crate::time::Clock;
use crate::window::{self, Window};

/// What one region needs: its ACM PCA client and the pacing of its create quota.
struct RegionClient {
    acm_pca: aws_sdk_acmpca::Client,
    pacer: Pacer,
}

/// Everything a run uses, built once at cold start and shared by every invocation.
pub struct Services {
    pub settings: Settings,
    pub ledger: Ledger,
    s3: aws_sdk_s3::Client,
    sdk: SdkConfig,
    /// Per region, kept across invocations so a warm function keeps its pacing.
    regions: Mutex<HashMap<String, Arc<RegionClient>>>,
    create_period: Duration,
    clock: Arc<dyn Clock>,
}

impl Services {
    pub fn new(settings: Settings, sdk: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let ledger = Ledger::new(
            aws_sdk_dynamodb::Client::new(sdk),
            settings.ledger_table.clone(),
            settings.history_retention,
        );
        Self {
            ledger,
            s3: aws_sdk_s3::Client::new(sdk),
            sdk: sdk.clone(),
            regions: Mutex::new(HashMap::new()),
            create_period: authorities::CREATE_PERIOD,
            clock,
            settings,
        }
    }

    /// Paces creates at another rate than the service's one per second: for tests against an
    /// emulator whose quota was raised, never for AWS, whose quota cannot be raised.
    pub fn with_create_period(mut self, period: Duration) -> Self {
        self.create_period = period;
        self.regions = Mutex::new(HashMap::new());
        self
    }

    fn region(&self, name: &str) -> Arc<RegionClient> {
        let mut regions = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        regions
            .entry(name.to_owned())
            .or_insert_with(|| {
                let conf = aws_sdk_acmpca::config::Builder::from(&self.sdk)
                    .region(Region::new(name.to_owned()))
                    .build();
                Arc::new(RegionClient {
                    acm_pca: aws_sdk_acmpca::Client::from_conf(conf),
                    pacer: Pacer::new(self.create_period),
                })
            })
            .clone()
    }
}

/// The invocation this run belongs to.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Names the run in the ledger and the logs (Lambda's request id).
    pub run_id: String,
    /// When Lambda stops the invocation.
    pub deadline: Instant,
    /// Time kept back at the end for a CA in flight to be requested and recorded:
    /// no new CA is started with less than this left.
    pub reserve: Duration,
}

impl Invocation {
    pub const DEFAULT_RESERVE: Duration = Duration::from_secs(10);

    fn cutoff(&self) -> Instant {
        self.deadline
            .checked_sub(self.reserve)
            .unwrap_or(self.deadline)
    }

    fn time_left(&self) -> bool {
        Instant::now() < self.cutoff()
    }
}

/// Runs one audit round and returns its summary. Errors of single CAs or regions are in the
/// summary; nothing here fails the whole run but a summary with failures in it.
pub async fn run(services: &Services, request: &RunRequest, invocation: &Invocation) -> RunSummary {
    let started_at = services.clock.now();
    let regions: Vec<String> = match &request.only {
        Some(arns) => {
            let mut regions: Vec<String> = Vec::new();
            for arn in arns {
                if !regions.iter().any(|r| r == arn.region()) {
                    regions.push(arn.region().to_owned());
                }
            }
            regions
        }
        None => services.settings.regions.clone(),
    };
    let format = request.format.unwrap_or(services.settings.report_format);

    // The bucket is checked once, up front: a missing bucket fails every CA without
    // claiming a single window. A dry run checks it too, to report what a real run would meet.
    let bucket_error = bucket::check(&services.s3, &services.settings.report_bucket)
        .await
        .err();

    let ctx = RunContext {
        services,
        request,
        invocation,
        format,
        bucket_error,
    };
    let results = futures::future::join_all(regions.iter().map(|r| ctx.audit_region(r))).await;

    let mut outcomes = Vec::new();
    let mut region_errors = Vec::new();
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
        regions,
        counts: RunSummary::count(&outcomes),
        region_errors,
        certificate_authorities: outcomes,
    }
}

struct RunContext<'a> {
    services: &'a Services,
    request: &'a RunRequest,
    invocation: &'a Invocation,
    format: ReportFormat,
    bucket_error: Option<ServiceError>,
}

fn outcome(arn: &CaArn, outcome: Outcome) -> CaOutcome {
    CaOutcome {
        certificate_authority_arn: arn.to_string(),
        region: arn.region().to_owned(),
        outcome,
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

impl RunContext<'_> {
    async fn audit_region(&self, region: &str) -> (Vec<CaOutcome>, Option<RegionError>) {
        let client = self.services.region(region);
        let mut outcomes = Vec::new();

        let listed = match authorities::list(&client.acm_pca).await {
            Ok(listed) => listed,
            Err(e) => {
                // A manual request names its CAs: each gets the error. A scheduled run cannot
                // know which CAs it missed, so the region itself is reported.
                return match &self.request.only {
                    Some(arns) => (
                        arns.iter()
                            .filter(|a| a.region() == region)
                            .map(|a| {
                                outcome(
                                    a,
                                    failed(
                                        &e.code,
                                        format!("listing CAs in {region}: {}", e.message),
                                    ),
                                )
                            })
                            .collect(),
                        None,
                    ),
                    None => (
                        vec![],
                        Some(RegionError {
                            region: region.to_owned(),
                            error_code: e.code,
                            error_message: e.message,
                        }),
                    ),
                };
            }
        };

        let authorities: Vec<Authority> = match &self.request.only {
            None => listed,
            Some(arns) => {
                let mut by_arn: HashMap<&str, &Authority> =
                    listed.iter().map(|a| (a.arn.as_str(), a)).collect();
                let mut chosen = Vec::new();
                for arn in arns.iter().filter(|a| a.region() == region) {
                    match by_arn.remove(arn.as_str()) {
                        Some(a) => chosen.push(a.clone()),
                        // Said before any create, so an unknown ARN costs no quota.
                        None => outcomes.push(outcome(
                            arn,
                            failed(
                                "ResourceNotFoundException",
                                format!("no CA {arn} among the CAs this account owns in {region}"),
                            ),
                        )),
                    }
                }
                chosen
            }
        };

        let mut candidates = Vec::new();
        for a in authorities {
            match window::state_outcome(&a.status, &self.services.settings.audit_states) {
                Some(skip) => outcomes.push(outcome(&a.arn, skip)),
                None => candidates.push(a.arn),
            }
        }
        if candidates.is_empty() {
            return (outcomes, None);
        }

        let windows = match self.services.ledger.windows(&candidates).await {
            Ok(w) => w,
            Err(e) => {
                // Without the ledger no window can be claimed: request nothing.
                outcomes.extend(candidates.iter().map(|a| outcome(a, ledger_failed(&e))));
                return (outcomes, None);
            }
        };

        let now = self.services.clock.now();
        let mut eligible: Vec<(CaArn, Window)> = Vec::new();
        for arn in candidates {
            let w = windows.get(arn.as_str()).cloned().unwrap_or_default();
            match w.blocked(now) {
                Some(skip) => outcomes.push(outcome(&arn, skip)),
                None => eligible.push((arn, w)),
            }
        }
        eligible.sort_by(|(a, wa), (b, wb)| {
            window::waiting_order(wa.last_requested_at, a.as_str())
                .cmp(&window::waiting_order(wb.last_requested_at, b.as_str()))
        });

        if self.request.dry_run {
            outcomes.extend(
                eligible
                    .iter()
                    .map(|(a, _)| outcome(a, Outcome::WouldRequest)),
            );
            return (outcomes, None);
        }
        if let Some(e) = &self.bucket_error {
            outcomes.extend(
                eligible
                    .iter()
                    .map(|(a, _)| outcome(a, failed(&e.code, e.message.clone()))),
            );
            return (outcomes, None);
        }

        let served: Vec<CaOutcome> = futures::stream::iter(eligible.iter())
            .map(|(arn, _)| self.audit_ca(&client, arn))
            .buffered(self.services.settings.max_concurrency)
            .collect()
            .await;
        outcomes.extend(served);
        (outcomes, None)
    }

    /// Claim, request, record (or release) one CA.
    async fn audit_ca(&self, client: &RegionClient, arn: &CaArn) -> CaOutcome {
        let services = self.services;
        let run_id = &self.invocation.run_id;
        if !self.invocation.time_left() {
            return outcome(arn, deferred());
        }
        let now = services.clock.now();
        // The lease ends when the invocation must: a run that dies holds the CA no longer than
        // the function's timeout allows it to live.
        let remaining = self
            .invocation
            .deadline
            .saturating_duration_since(Instant::now());
        let lease_expiry = now.plus(remaining + Duration::from_secs(1));
        let claim = match services.ledger.claim(arn, run_id, now, lease_expiry).await {
            Ok(ClaimResult::Won(claim)) => claim,
            Ok(ClaimResult::Lost(w)) => {
                let skip = w.blocked(now).unwrap_or(Outcome::Skipped {
                    reason: SkipReason::ClaimedByAnotherRun,
                    detail: "another run claimed the CA first".into(),
                    next_eligible_at: None,
                });
                return outcome(arn, skip);
            }
            Err(e) => return outcome(arn, ledger_failed(&e)),
        };

        let bucket = &services.settings.report_bucket;
        let mut attempts = 0;
        let (requested_at, result) = loop {
            if !client.pacer.wait_turn(self.invocation.cutoff()).await {
                return self.give_back(&claim, None, None, deferred()).await;
            }
            attempts += 1;
            let at = services.clock.now();
            match authorities::request_report(&client.acm_pca, arn, bucket, self.format).await {
                Err(e)
                    if authorities::refusal(&e.code) == Refusal::Throttled
                        && attempts < authorities::CREATE_ATTEMPTS =>
                {
                    tracing::debug!(ca_arn = %arn, attempts, "create throttled; retrying in the next slot");
                }
                result => break (at, result),
            }
        };
        match result {
            Ok(report) => {
                let record = ReportRecord {
                    report_id: report.id,
                    s3_bucket: bucket.clone(),
                    s3_key: report.s3_key,
                    format: self.format,
                    requested_at,
                    next_eligible_at: requested_at.plus(services.settings.min_interval.duration()),
                };
                match services.ledger.record(&claim, run_id, &record).await {
                    Ok(()) => outcome(
                        arn,
                        Outcome::Requested {
                            report_id: record.report_id,
                            s3_bucket: record.s3_bucket,
                            s3_key: record.s3_key,
                            format: record.format,
                            requested_at,
                        },
                    ),
                    // The report exists but the ledger does not say so. The claim stays until
                    // its lease runs out, so no run requests the CA again meanwhile.
                    Err(e) => outcome(
                        arn,
                        failed(
                            "LedgerWriteFailed",
                            format!(
                                "audit report {} ({}) was requested but not recorded: {e}",
                                record.report_id, record.s3_key
                            ),
                        ),
                    ),
                }
            }
            Err(e) => match authorities::refusal(&e.code) {
                Refusal::TooSoon => {
                    let next = requested_at.plus(SERVICE_WINDOW);
                    let skip = Outcome::Skipped {
                        reason: SkipReason::ServiceWindow,
                        detail: format!(
                            "the service has a report of this CA from the last 30 minutes ({e})"
                        ),
                        next_eligible_at: Some(next),
                    };
                    self.give_back(&claim, None, Some(next), skip).await
                }
                Refusal::State => {
                    let next = requested_at.plus(services.settings.min_interval.duration());
                    let skip = Outcome::Skipped {
                        reason: SkipReason::ServiceRefusedState,
                        detail: e.to_string(),
                        next_eligible_at: Some(next),
                    };
                    self.give_back(&claim, Some((&e.code, &e.message)), Some(next), skip)
                        .await
                }
                Refusal::Throttled => {
                    let later = Outcome::Deferred {
                        detail: format!("still throttled after the SDK's retries: {e}"),
                    };
                    self.give_back(&claim, None, None, later).await
                }
                Refusal::Failed => {
                    let fail = failed(&e.code, e.message.clone());
                    self.give_back(&claim, Some((&e.code, &e.message)), None, fail)
                        .await
                }
            },
        }
    }

    /// Releases the claim and reports `then`, unless the release itself fails.
    async fn give_back(
        &self,
        claim: &Claim,
        error: Option<(&str, &str)>,
        next: Option<crate::time::Timestamp>,
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
