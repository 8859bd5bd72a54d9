//! The Lambda boundary: event in, run, summary or a failed invocation out.

pub mod coverage_request;
pub mod error;
pub mod events;
pub mod work_items;

pub use error::{RequestError, RunError, verdict};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tokio::time::Instant;

use crate::domain::request::CoverageRequest;
use crate::domain::request::RunRequest;
use crate::entry::events::Request;
use crate::evidence::{CoverageSummary, coverage};
use crate::invocation::Invocation;
use crate::run;
use crate::run::summary::RunSummary;
use crate::services::Services;

/// Time left in the invocation. Lambda gives the deadline in epoch milliseconds; cargo-lambda's
/// runtime emulator (1.9) gives the function timeout itself (600000), which as an instant
/// would be 1970 and leave no time at all, so a "deadline" more than a day in the past is
/// read as a duration.
pub fn remaining_ms(deadline_ms: u64, now_ms: u64) -> u64 {
    const DAY_MS: u64 = 86_400_000;
    if deadline_ms + DAY_MS < now_ms {
        deadline_ms
    } else {
        deadline_ms.saturating_sub(now_ms)
    }
}

/// The account of the function's own ARN (`arn:aws:lambda:<region>:<account>:function:<name>`).
pub fn home_account(invoked_function_arn: &str) -> Option<String> {
    let account = invoked_function_arn.split(':').nth(4)?;
    crate::domain::ids::AccountId::is_valid(account).then(|| account.to_owned())
}

/// The partition of the function's own ARN (`aws`, `aws-cn`, `aws-us-gov`, ...): the member
/// roles it assumes are in the same one.
pub fn home_partition(invoked_function_arn: &str) -> Option<String> {
    let mut parts = invoked_function_arn.split(':');
    let partition = match (parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(p), Some("lambda")) => p,
        _ => return None,
    };
    crate::domain::arn::PARTITIONS
        .contains(&partition)
        .then(|| partition.to_owned())
}

/// What an invocation returns: a run's summary, or, for a batch of work items from the
/// fan-out queue, the batch item failures SQS reads.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Response {
    Run(Box<RunSummary>),
    Batch(SqsBatchResponse),
    Coverage(Box<CoverageSummary>),
}

pub async fn handle(services: &Services, event: LambdaEvent<Value>) -> Result<Response, RunError> {
    let (payload, context) = event.into_parts();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let remaining_ms = remaining_ms(context.deadline, now_ms);
    let invocation = Invocation {
        run_id: context.request_id.clone(),
        deadline: Instant::now() + std::time::Duration::from_millis(remaining_ms),
        reserve: Invocation::DEFAULT_RESERVE + Invocation::ALERTS_RESERVE,
        home_account: home_account(&context.invoked_function_arn),
        partition: home_partition(&context.invoked_function_arn),
    };
    services
        .s3
        .own_by_default(invocation.home_account.as_deref());
    if work_items::is_sqs_batch(&payload) {
        let batch: SqsEvent = serde_json::from_value(payload).map_err(|e| {
            RunError::InvalidRequest(RequestError::Malformed {
                shape: "SQS event",
                message: e.to_string(),
            })
        })?;
        return Ok(Response::Batch(
            work_items::work_items(services, batch, &invocation).await,
        ));
    }
    // The event is not logged whole: a manual request could carry anything.
    let request = match Request::from_value(payload) {
        Ok(Request::Run(run)) => run,
        Ok(Request::Coverage(period)) => {
            return answer_coverage(services, &period, &invocation).await;
        }
        Err(e) => {
            tracing::error!(run_id = context.request_id, "refused the event: {e}");
            return Err(e.into());
        }
    };
    tracing::info!(
        run_id = context.request_id,
        deadline_ms = context.deadline,
        remaining_ms,
        dry_run = request.dry_run,
        "run started"
    );
    let summary = run_and_report(services, &request, &invocation).await;
    verdict(summary).map(|s| Response::Run(Box::new(s)))
}

/// A coverage request: refused (nothing written) when its period is beyond the history's
/// retention; otherwise answered, logged and returned.
async fn answer_coverage(
    services: &Services,
    period: &CoverageRequest,
    invocation: &Invocation,
) -> Result<Response, RunError> {
    let now = services.clock.now();
    let settings = &services.settings;
    let lookback = settings.min_interval.duration() + settings.coverage_slack;
    period
        .check_retention(now, settings.history_retention, lookback)
        .map_err(RequestError::InvalidCoverage)
        .inspect_err(|e| tracing::error!(run_id = invocation.run_id, "refused the event: {e}"))?;
    tracing::info!(run_id = invocation.run_id, from = %period.from, to = %period.to, "coverage started");
    let summary = coverage::answer(services, period, invocation)
        .await
        .inspect_err(|e| tracing::error!(run_id = invocation.run_id, "{e}"))?;
    summary.log();
    Ok(Response::Coverage(Box::new(summary)))
}

pub(super) async fn run_and_report(
    services: &Services,
    request: &RunRequest,
    invocation: &Invocation,
) -> RunSummary {
    // Boxed: a run's future is deep (spans around nested async phases), and its layout,
    // inlined into the runtime's, passes the compiler's query depth limit on a cold build.
    let mut summary = Box::pin(run::run(services, request, invocation)).await;
    summary.log();
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    println!("{}", summary.metrics_document(&function));
    if let Some(all) = summary.cut_to_fit() {
        summary.outcomes_key = Box::pin(write_outcomes(services, &summary.run_id, &all)).await;
    }
    summary
}

/// Every CA's outcome of a run too large for its answer, as `evidence/runs/<run id>.json` in
/// the report bucket (the manifests' prefix and permissions); its key, or `None` when it could
/// not be written (logged: the answer still says how many it left out, and each CA's log line
/// has its outcome).
async fn write_outcomes(
    services: &Services,
    run_id: &str,
    all: &[crate::domain::outcome::CaOutcome],
) -> Option<String> {
    use crate::aws::multipart::EvidenceObject;
    let key = format!("evidence/runs/{run_id}.json");
    let bucket = &services.settings.report_bucket;
    let kms = services.settings.report_kms_key.as_deref();
    let write = async {
        let mut object =
            EvidenceObject::start(&services.s3, bucket, &key, "application/json", kms).await?;
        // One outcome at a time, so the whole list is never a second time in memory as JSON.
        object.write(b"[").await?;
        for (i, o) in all.iter().enumerate() {
            let mut row = if i == 0 { Vec::new() } else { b",".to_vec() };
            row.extend(serde_json::to_vec(o).unwrap_or_default());
            object.write(&row).await?;
        }
        object.write(b"]").await?;
        object.finish().await
    };
    match write.await {
        Ok(()) => Some(key),
        Err(e) => {
            tracing::error!(run_id, "every CA's outcome not written: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_an_instant_in_lambda_and_a_duration_in_the_emulator() {
        let now = 1_795_575_665_190;
        assert_eq!(remaining_ms(now + 900_000, now), 900_000);
        assert_eq!(
            remaining_ms(now - 5, now),
            0,
            "a passed deadline leaves nothing"
        );
        assert_eq!(remaining_ms(600_000, now), 600_000);
    }

    #[test]
    fn the_partition_comes_from_the_function_arn() {
        assert_eq!(
            home_partition("arn:aws-cn:lambda:cn-north-1:123456789012:function:audit").as_deref(),
            Some("aws-cn")
        );
        assert_eq!(
            home_partition("arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:a")
                .as_deref(),
            Some("aws-iso-b")
        );
        assert_eq!(home_partition(""), None);
        assert_eq!(home_partition("arn:nope:lambda:x:1:function:a"), None);
    }

    #[test]
    fn the_home_account_comes_from_the_function_arn() {
        assert_eq!(
            home_account("arn:aws:lambda:us-east-1:123456789012:function:audit"),
            Some("123456789012".into())
        );
        assert_eq!(home_account(""), None);
        assert_eq!(
            home_account("arn:aws:lambda:us-east-1:000:function:_"),
            None
        );
    }

    #[test]
    fn only_sqs_records_are_a_batch() {
        assert!(work_items::is_sqs_batch(
            &serde_json::json!({"Records": [{"eventSource": "aws:sqs"}]})
        ));
        assert!(!work_items::is_sqs_batch(
            &serde_json::json!({"Records": [{"eventSource": "aws:s3"}]})
        ));
        assert!(!work_items::is_sqs_batch(
            &serde_json::json!({"dryRun": true})
        ));
    }
}
