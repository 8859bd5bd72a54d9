//! Coverage of a period: was every CA audited in every window of it? Answered from the
//! ledger's history and today's listing, without claiming or requesting anything, and written
//! as a manifest (`evidence/coverage/<from>_<to>/<generated at>_<run id>.csv` and `.json`)
//! into the report bucket.
//! Here, the answer: the walk of accounts × regions, each CA's history read and judged
//! (`gaps`) and written (`manifest`) as it comes.
//!
//! The threshold a gap is judged by is the configured interval plus the schedule's slack: how
//! late after its window opens a CA may be requested, one period of the schedule
//! (`COVERAGE_SLACK_MINUTES`, default 60 for the template's default `rate(1 hour)`).

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;

use super::gaps::Judging;
use super::manifest::{ManifestHead, ManifestWriter};
use super::verify;
use super::{CaCoverage, CoverageCounts, CoverageError, CoverageSummary, HistoryReport, Manifest};
use crate::domain::arn::CaArn;
use crate::domain::bucket::EvidenceChange;
use crate::domain::outcome::{AccountError, RegionError};
use crate::domain::report::ReportStatus;
use crate::domain::request::CoverageRequest;
use crate::domain::time::Timestamp;
use crate::inventory::{cas, targets};
use crate::invocation::Invocation;
use crate::services::Services;

/// History queries in flight at once: on-demand DynamoDB serves far more, this keeps one
/// invocation from taking the table's burst from a scheduled run beside it.
const QUERIES_IN_FLIGHT: usize = 16;

/// The CAs audited now, every audited account and configured region, listed as a run lists
/// them (`inventory`), the account-regions side by side.
async fn listed(
    services: &Services,
    invocation: &Invocation,
) -> (BTreeSet<CaArn>, Vec<AccountError>, Vec<RegionError>) {
    let home = invocation.home_account.as_deref();
    let targets = match targets::every(services, home).await {
        Ok(t) => t,
        Err(e) => return (BTreeSet::new(), vec![e], Vec::new()),
    };
    let (entered, _, account_errors) =
        targets::enter_accounts(services, invocation, &targets).await;
    let cutoff = invocation.cutoff();
    let lists = futures::future::join_all(targets.iter().filter_map(|t| {
        let sdk = entered.get(&t.account)?;
        let id = t.account.id(home).to_owned();
        let client = services.target(&t.account, &id, t.region.as_str(), sdk);
        Some(async move {
            let cas = cas::audited(&services.settings, &client, cutoff).await;
            (id, t.region.to_string(), cas)
        })
    }))
    .await;
    let (mut found, mut region_errors) = (BTreeSet::new(), Vec::new());
    for (account_id, region, cas) in lists {
        match cas {
            Ok(cas) => found.extend(cas),
            Err(e) => region_errors.push(RegionError {
                account_id,
                region,
                error_code: e.code,
                error_message: e.message,
            }),
        }
    }
    (found, account_errors, region_errors)
}

/// Each CA's history from `since` to the period's end, QUERIES_IN_FLIGHT at once and taken in
/// ARN order, its report objects verified when the request asks (`verify`), judged and its
/// reports written to the manifest as it comes, then dropped; none is started after `cutoff`
/// (the invocation's deadline less its reserve).
async fn read_and_judge(
    services: &Services,
    all: BTreeSet<CaArn>,
    judging: &Judging<'_>,
    manifest: &mut ManifestWriter<'_>,
    cutoff: tokio::time::Instant,
) -> Result<(Vec<CaCoverage>, usize), CoverageError> {
    let since = judging.request.from.minus(judging.threshold);
    let total = all.len();
    let mut reads = futures::stream::iter(all.into_iter().map(|arn| async move {
        if tokio::time::Instant::now() >= cutoff {
            return (arn, Err(None));
        }
        let read = read_one(services, judging, &arn, since).await;
        (arn, read.map_err(Some))
    }))
    .buffered(QUERIES_IN_FLIGHT);
    let (mut cas, mut read, mut verified) = (Vec::new(), 0, 0);
    while let Some((arn, h)) = reads.next().await {
        let (reports, changed, looked_at) = match h {
            Ok(h) => h,
            Err(Some(e)) => return Err(e),
            Err(None) => return Err(CoverageError::Deadline { read, total }),
        };
        read += 1;
        if let Some((ca, in_period)) = judging.judge(&arn, &reports, &changed) {
            super::gaps::log_gaps(&ca);
            verified += looked_at;
            manifest.reports(&ca, &in_period).await?;
            cas.push(ca);
        }
    }
    Ok((cas, verified))
}

/// One CA's history, and with `verifyObjects` what changed of its SUCCESS reports' objects in
/// the period and how many were looked at.
async fn read_one(
    services: &Services,
    judging: &Judging<'_>,
    arn: &CaArn,
    since: Timestamp,
) -> Result<(Vec<HistoryReport>, HashMap<String, EvidenceChange>, usize), CoverageError> {
    let request = judging.request;
    let now = services.clock.now();
    let history = services
        .ledger
        .history(arn, (since, judging.end), now)
        .await;
    let reports = history.map_err(CoverageError::Ledger)?;
    if !request.verify_objects {
        return Ok((reports, HashMap::new(), 0));
    }
    let in_period: Vec<HistoryReport> = reports
        .iter()
        .filter(|r| r.requested_at >= request.from && r.requested_at < request.to)
        .filter(|r| r.status == ReportStatus::Success)
        .cloned()
        .collect();
    let bucket = &services.settings.report_bucket;
    let changed = verify::changed_reports(&services.s3, bucket, arn, &in_period)
        .await
        .map_err(|source| CoverageError::Verify {
            ca: arn.to_string(),
            source,
        })?;
    Ok((reports, changed, in_period.len()))
}

/// The answer before anything is read: the period, the threshold and where the manifest goes.
fn empty_summary(
    services: &Services,
    request: &CoverageRequest,
    invocation: &Invocation,
    now: Timestamp,
    threshold: std::time::Duration,
) -> CoverageSummary {
    let stem = request.manifest_stem(now, &invocation.run_id);
    CoverageSummary {
        version: Default::default(),
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
        certificate_authorities_omitted: 0,
        account_errors: Vec::new(),
        region_errors: Vec::new(),
    }
}

/// Answers a coverage request: lists, reads each CA's history, computes gaps, writes the
/// manifest as it goes, returns the summary. Nothing is left in the bucket of a request that
/// fails half-way: the manifest's uploads are aborted.
pub async fn answer(
    services: &Services,
    request: &CoverageRequest,
    invocation: &Invocation,
) -> Result<CoverageSummary, CoverageError> {
    let threshold = services.settings.coverage_threshold();
    let now = services.clock.now();
    let (listed_now, account_errors, region_errors) = listed(services, invocation).await;
    // Each account-region's calls end within their timeouts, side by side; an organisation
    // large enough to reach the cutoff anyway is a clear failure, not Lambda's timeout.
    if !invocation.time_left() {
        let listed = listed_now.len();
        return Err(CoverageError::ListingDeadline { listed });
    }
    let known = (services.ledger.windowed_cas().await).map_err(CoverageError::Ledger)?;
    let all: BTreeSet<CaArn> = listed_now.iter().cloned().chain(known).collect();
    let mut summary = empty_summary(services, request, invocation, now, threshold);
    let head = ManifestHead {
        version: Default::default(),
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
    let verified = match read_and_judge(services, all, &judging, &mut manifest, cutoff).await {
        Ok((cas, looked_at)) => {
            summary.certificate_authorities = cas;
            request.verify_objects.then_some(looked_at)
        }
        Err(e) => {
            manifest.abort().await;
            return Err(e);
        }
    };
    summary.account_errors = account_errors;
    summary.region_errors = region_errors;
    summary.counts = CoverageCounts {
        objects_verified: verified,
        ..CoverageCounts::of(&summary.certificate_authorities)
    };
    manifest.finish(&summary).await?;
    super::cut_to_fit(&mut summary);
    Ok(summary)
}
