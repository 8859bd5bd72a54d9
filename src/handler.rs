//! The Lambda boundary: event in, run, summary or a failed invocation out.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use tokio::time::Instant;

use crate::request::{RequestError, RunRequest};
use crate::scheduler::{self, Invocation, Services};
use crate::summary::{Outcome, RunSummary};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    /// Everything else was done and recorded; these CAs (or regions) failed.
    #[error("{0}")]
    Failed(String),
}

impl From<RunError> for Diagnostic {
    fn from(e: RunError) -> Self {
        let error_type = match e {
            RunError::InvalidRequest(_) => "InvalidRequest",
            RunError::Failed(_) => "CertificateAuthoritiesFailed",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// Turns a failed run into the invocation's error, naming what failed, so that Lambda's
/// retries, an on-failure destination and alarms see it.
pub fn verdict(summary: RunSummary) -> Result<RunSummary, RunError> {
    let failed: Vec<String> = summary
        .failed()
        .map(|o| match &o.outcome {
            Outcome::Failed { error_code, .. } => {
                format!("{} ({error_code})", o.certificate_authority_arn)
            }
            _ => unreachable!("failed() yields failed outcomes"),
        })
        .chain(
            summary
                .region_errors
                .iter()
                .map(|r| format!("region {} ({})", r.region, r.error_code)),
        )
        .collect();
    if failed.is_empty() {
        return Ok(summary);
    }
    const SHOWN: usize = 10;
    let more = failed.len().saturating_sub(SHOWN);
    let mut message = format!(
        "{} of {} certificate authorities failed in run {}: {}",
        summary.counts.failed,
        summary.certificate_authorities.len(),
        summary.run_id,
        failed[..failed.len().min(SHOWN)].join(", ")
    );
    if more > 0 {
        message.push_str(&format!(" and {more} more"));
    }
    Err(RunError::Failed(message))
}

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

pub async fn handle(
    services: &Services,
    event: LambdaEvent<Value>,
) -> Result<RunSummary, RunError> {
    let (payload, context) = event.into_parts();
    // The event is not logged whole: a manual request could carry anything.
    let request = RunRequest::from_value(payload).inspect_err(|e| {
        tracing::error!(run_id = context.request_id, "refused the event: {e}");
    })?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let remaining_ms = remaining_ms(context.deadline, now_ms);
    tracing::info!(
        run_id = context.request_id,
        deadline_ms = context.deadline,
        remaining_ms,
        dry_run = request.dry_run,
        "run started"
    );
    let invocation = Invocation {
        run_id: context.request_id.clone(),
        deadline: Instant::now() + std::time::Duration::from_millis(remaining_ms),
        reserve: Invocation::DEFAULT_RESERVE,
    };
    let summary = scheduler::run(services, &request, &invocation).await;
    summary.log();
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    println!("{}", summary.metrics_document(&function));
    verdict(summary)
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
}
