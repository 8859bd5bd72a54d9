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

pub async fn handle(
    services: &Services,
    event: LambdaEvent<Value>,
) -> Result<RunSummary, RunError> {
    let (payload, context) = event.into_parts();
    // The event is not logged whole: a manual request could carry anything.
    let request = RunRequest::from_value(payload).inspect_err(|e| {
        tracing::error!(run_id = context.request_id, "refused the event: {e}");
    })?;
    let remaining_ms = context.deadline.saturating_sub(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
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
