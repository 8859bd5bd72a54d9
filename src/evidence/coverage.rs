//! Coverage of a period: was every CA audited in every window of it? Answered from the
//! ledger's history and today's listing, without claiming or requesting anything, and written
//! as a manifest (`evidence/coverage-<from>-<to>.csv` and `.json`) into the report bucket.
//! Here, the answer: the walk of accounts × regions, each CA's history read and judged
//! (`gaps`) and written (`manifest`) as it comes.
//!
//! The threshold a gap is judged by is the configured interval plus the schedule's slack: how
//! late after its window opens a CA may be requested, one period of the schedule
//! (`COVERAGE_SLACK_MINUTES`, default 60 for the template's default `rate(1 hour)`).

use std::collections::BTreeSet;

use futures::StreamExt;

use super::gaps::Judging;
use super::manifest::{ManifestHead, ManifestWriter};
use super::{CaCoverage, CoverageCounts, CoverageError, CoverageSummary, Manifest};
use crate::aws::ServiceError;
use crate::aws::accounts;
use crate::aws::acm_pca;
use crate::domain::arn::CaArn;
use crate::domain::outcome::{AccountError, RegionError};
use crate::domain::request::CoverageRequest;
use crate::invocation::Invocation;
use crate::services::Services;

/// History queries in flight at once: on-demand DynamoDB serves far more, this keeps one
/// invocation from taking the table's burst from a scheduled run beside it.
const QUERIES_IN_FLIGHT: usize = 16;

/// The CAs audited now, every audited account and configured region, as a run would list them
/// (state, exemptions and types; required tags are not read here).
async fn listed(
    services: &Services,
    invocation: &Invocation,
) -> (BTreeSet<CaArn>, Vec<AccountError>, Vec<RegionError>) {
    let settings = &services.settings;
    let home = invocation.home_account.as_deref();
    let mut found = BTreeSet::new();
    let (mut account_errors, mut region_errors) = (Vec::new(), Vec::new());
    let audited = match accounts::audited(&settings.accounts, &services.sdk, home).await {
        Ok(a) => a,
        Err(e) => return (found, vec![e], region_errors),
    };
    for account in audited {
        let sdk = match services
            .account_sdk(&account, invocation.partition.as_deref())
            .await
        {
            Ok(sdk) => sdk,
            Err(e) => {
                account_errors.push(e);
                continue;
            }
        };
        let id = account.id(home).to_owned();
        for region in &settings.regions {
            let target = services.target(&account, &id, region.as_str(), &sdk);
            match audited_in(services, &target, invocation.cutoff()).await {
                Ok(cas) => found.extend(cas),
                Err(e) => region_errors.push(RegionError {
                    account_id: id.clone(),
                    region: region.to_string(),
                    error_code: e.code,
                    error_message: e.message,
                }),
            }
        }
    }
    (found, account_errors, region_errors)
}

/// The CAs of one account-region a run would audit: state, exemptions, types, and with
/// REQUIRED_TAGS one ListTags each at the read pace (a CA whose tags cannot be read is kept:
/// better a gap to look at than a CA silently left out).
async fn audited_in(
    services: &Services,
    target: &crate::services::TargetClient,
    cutoff: tokio::time::Instant,
) -> Result<Vec<CaArn>, ServiceError> {
    let settings = &services.settings;
    let listed = acm_pca::list(&target.acm_pca).await?;
    let (candidates, _) =
        crate::domain::scope::in_scope(listed, &settings.audit_states, &settings.scope);
    let required = &settings.scope.required_tags;
    if required.is_empty() {
        return Ok(candidates);
    }
    let kept: Vec<Option<CaArn>> = futures::stream::iter(candidates)
        .map(|arn| async move {
            // Out of time to read its tags: kept, as a CA whose tags cannot be read is.
            if !target.reads.wait_turn(cutoff).await {
                return Some(arn);
            }
            match acm_pca::tags(&target.acm_pca, &arn).await {
                Ok(tags) if crate::domain::scope::tag_outcome(&tags, required).is_some() => None,
                _ => Some(arn),
            }
        })
        .buffered(4)
        .collect()
        .await;
    Ok(kept.into_iter().flatten().collect())
}

/// Each CA's history from `since` to the period's end, QUERIES_IN_FLIGHT at once and taken in
/// ARN order, judged and its reports written to the manifest as it comes, then dropped; none
/// is started after `cutoff` (the invocation's deadline less its reserve).
async fn read_and_judge(
    services: &Services,
    all: BTreeSet<CaArn>,
    judging: &Judging<'_>,
    manifest: &mut ManifestWriter<'_>,
    cutoff: tokio::time::Instant,
) -> Result<Vec<CaCoverage>, CoverageError> {
    let ledger = &services.ledger;
    let since = judging.request.from.minus(judging.threshold);
    let until = judging.end;
    let total = all.len();
    let mut reads = futures::stream::iter(all.into_iter().map(|arn| async move {
        if tokio::time::Instant::now() >= cutoff {
            return (arn, Err(None));
        }
        let h = ledger.history(&arn, since, until).await;
        (arn, h.map_err(Some))
    }))
    .buffered(QUERIES_IN_FLIGHT);
    let (mut cas, mut read) = (Vec::new(), 0);
    while let Some((arn, h)) = reads.next().await {
        let reports = match h {
            Ok(h) => h,
            Err(Some(e)) => return Err(CoverageError::Ledger(e)),
            Err(None) => return Err(CoverageError::Deadline { read, total }),
        };
        read += 1;
        if let Some((ca, in_period)) = judging.judge(&arn, &reports) {
            manifest.reports(&ca, &in_period).await?;
            cas.push(ca);
        }
    }
    Ok(cas)
}

/// Answers a coverage request: lists, reads each CA's history, computes gaps, writes the
/// manifest as it goes, returns the summary. Nothing is left in the bucket of a request that
/// fails half-way: the manifest's uploads are aborted.
pub async fn answer(
    services: &Services,
    request: &CoverageRequest,
    invocation: &Invocation,
) -> Result<CoverageSummary, CoverageError> {
    let threshold = services.settings.min_interval.duration() + services.settings.coverage_slack;
    let now = services.clock.now();
    let (listed_now, account_errors, region_errors) = listed(services, invocation).await;
    let known = (services.ledger.windowed_cas().await).map_err(CoverageError::Ledger)?;
    let all: BTreeSet<CaArn> = listed_now.iter().cloned().chain(known).collect();
    let stem = request.manifest_stem();
    let mut summary = CoverageSummary {
        run_id: invocation.run_id.clone(),
        from: request.from,
        to: request.to,
        generated_at: now,
        threshold_minutes: threshold.as_secs() / 60,
        counts: CoverageCounts::default(),
        manifest: Manifest {
            bucket: services.settings.report_bucket.clone(),
            csv_key: format!("{stem}.csv"),
            json_key: format!("{stem}.json"),
        },
        certificate_authorities: Vec::new(),
        account_errors: Vec::new(),
        region_errors: Vec::new(),
    };
    let head = ManifestHead {
        from: summary.from,
        generated_at: summary.generated_at,
        threshold_minutes: summary.threshold_minutes,
        to: summary.to,
    };
    let mut manifest = ManifestWriter::start(services, &summary.manifest, &head).await?;
    let judging = Judging {
        request,
        end: request.to.min(now),
        threshold,
        listed_now: &listed_now,
        account_errors: &account_errors,
        region_errors: &region_errors,
    };
    let cutoff = invocation.cutoff();
    match read_and_judge(services, all, &judging, &mut manifest, cutoff).await {
        Ok(cas) => summary.certificate_authorities = cas,
        Err(e) => {
            manifest.abort().await;
            return Err(e);
        }
    }
    summary.account_errors = account_errors;
    summary.region_errors = region_errors;
    summary.counts = CoverageCounts::of(&summary.certificate_authorities);
    manifest.finish(&summary).await?;
    Ok(summary)
}
