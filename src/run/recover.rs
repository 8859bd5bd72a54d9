//! Recover: a report whose id was lost (a run that died, an answer lost), found in the bucket and recorded.

use std::time::Duration;

use tokio::time::Instant;

use super::RunContext;
use crate::aws::ServiceError;
use crate::aws::acm_pca;
use crate::aws::ledger::{Claim, ReportRecord};
use crate::aws::s3;
use crate::domain::bucket::{
    FoundReport, Provenance, RejectedObject, provenance, report_prefix, unrecorded,
    written_not_before,
};
use crate::domain::outcome::{CaOutcome, Outcome, SkipReason, failed, outcome};
use crate::domain::report::ReportStatus;
use crate::domain::time::Timestamp;
use crate::domain::window::{Event, next_eligible};
use crate::services::TargetClient;

/// How long a CA waits, holding its claim, for the report of a create whose answer was lost
/// to appear in the bucket: the service writes reports within seconds.
const LOST_REPORT_WAIT: Duration = Duration::from_secs(30);

/// Between two looks in the bucket for that report.
const LOST_REPORT_LOOK: Duration = Duration::from_secs(3);

/// Objects under a CA's prefix asked after (newest first) in one search: planted objects
/// cannot make a search call the service without end.
const MOST_CANDIDATES: usize = 5;

impl RunContext<'_> {
    /// When the claim took over from a run that died (or a create whose answer was lost), the
    /// report it may have made is looked for in the bucket first: found, it is recorded and
    /// no new one is requested. No API lists audit reports: the bucket is where a lost report
    /// id turns up.
    pub(super) async fn recover_unrecorded(
        &self,
        client: &TargetClient,
        claim: &Claim,
        rejected: &mut Vec<RejectedObject>,
    ) -> Option<CaOutcome> {
        let services = self.services;
        let since = claim.previous.unrecorded_since(services.clock.now())?;
        match self.in_bucket(client, claim, since, rejected).await {
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

    /// The report of the CA written to the bucket since `since` that the ledger does not
    /// have (its last recorded key aside): no API lists audit reports, so the bucket is where
    /// a lost report id turns up again. An object there is a report only when the service,
    /// asked for the id its key names, answers that it made it for this CA at that key: the
    /// newest such one is returned; the objects it did not make go to `rejected`, never to
    /// the ledger.
    pub(super) async fn in_bucket(
        &self,
        client: &TargetClient,
        claim: &Claim,
        since: Timestamp,
        rejected: &mut Vec<RejectedObject>,
    ) -> Result<Option<FoundReport>, ServiceError> {
        let bucket = &self.services.settings.report_bucket;
        let known = claim.previous.last_s3_key.as_deref();
        let prefix = report_prefix(&claim.arn);
        let not_before = written_not_before(since);
        let objects = s3::list_objects(&self.services.s3, bucket, &prefix, not_before).await?;
        // An object already refused (an earlier look of this search) is not asked about again.
        let mut candidates = unrecorded(&claim.arn, &objects, since, known);
        candidates.retain(|f| !rejected.iter().any(|r| r.s3_key == f.s3_key));
        for found in candidates.into_iter().take(MOST_CANDIDATES) {
            if !client.reads.wait_turn(self.invocation.cutoff()).await {
                return Ok(None);
            }
            let said = acm_pca::describe_report(&client.acm_pca, &claim.arn, &found.report_id);
            match provenance(&found, bucket, said.await?.as_ref()) {
                Provenance::Made => return Ok(Some(found)),
                // Still being written: not there yet, as far as evidence goes.
                Provenance::NotYet => return Ok(None),
                Provenance::NotMade(reason) => {
                    let s3_key = found.s3_key;
                    rejected.push(RejectedObject { s3_key, reason });
                }
            }
        }
        Ok(None)
    }

    /// A create refused as too soon after one whose answer was lost: the report that one made
    /// is looked for in the bucket until it is written (the service writes asynchronously,
    /// usually within seconds), then recorded. Not found in time, the CA keeps the mark, and
    /// the next run looks again before any new request.
    pub(super) async fn find_lost_report(
        &self,
        client: &TargetClient,
        claim: &Claim,
        since: Timestamp,
        e: &ServiceError,
        rejected: &mut Vec<RejectedObject>,
    ) -> CaOutcome {
        let services = self.services;
        let give_up = (Instant::now() + LOST_REPORT_WAIT).min(self.invocation.cutoff());
        loop {
            match self.in_bucket(client, claim, since, rejected).await {
                Ok(Some(found)) => {
                    let why = format!(
                        "the service accepted a create at or after {since} whose answer was \
                         lost; a later create was refused as too soon ({}), and the report was \
                         found in the bucket",
                        e.code
                    );
                    return self.recover(claim, found, why).await;
                }
                Ok(None) if Instant::now() + LOST_REPORT_LOOK < give_up => {
                    tokio::time::sleep(LOST_REPORT_LOOK).await;
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
    pub(super) async fn recover(
        &self,
        claim: &Claim,
        found: FoundReport,
        why: String,
    ) -> CaOutcome {
        let services = self.services;
        let bucket = &services.settings.report_bucket;
        // Pinned as the follow-up pins a report: the version the service wrote is the one the
        // ledger names. Not pinned when S3 cannot say (the report is recorded all the same:
        // the service vouched for it).
        let seen = s3::report_object(&services.s3, bucket, &found.s3_key, None).await;
        let pin = seen.ok().flatten().map(|o| o.pin);
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
            pin,
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
}

/// The claim as released after a create whose answer was lost at `lost_at`: the report it may
/// have made is looked for before the CA's next request (`Window::unrecorded_since`).
pub(super) fn marked(claim: &Claim, lost_at: Option<Timestamp>) -> Claim {
    let mut claim = claim.clone();
    if let Some(at) = lost_at {
        let since = claim.previous.orphan_since.map_or(at, |o| o.min(at));
        claim.previous.orphan_since = Some(since);
    }
    claim
}
