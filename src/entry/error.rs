//! The boundary's errors: a refused event (`RequestError`, nothing done), and what an
//! invocation fails with (`RunError`), as the `Diagnostic` Lambda reports.

use lambda_runtime::Diagnostic;

use crate::domain::arn::InvalidArn;
use crate::domain::code::Code;
use crate::domain::outcome::Outcome;
use crate::entry::events::MAX_REQUESTED_ARNS;
use crate::evidence::CoverageError;
use crate::run::summary::RunSummary;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the event is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the event must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error(
        "unsupported event from source `{event_source}` (detail-type `{detail_type}`): expected a Scheduled Event from aws.events or aws.scheduler"
    )]
    UnsupportedEvent {
        event_source: String,
        detail_type: String,
    },
    #[error("invalid {shape}: {message}")]
    Malformed {
        shape: &'static str,
        message: String,
    },
    #[error("invalid manual request: certificateAuthorityArns[{index}]: {source}")]
    InvalidArn { index: usize, source: InvalidArn },
    #[error(
        "invalid manual request: certificateAuthorityArns is empty; leave it out to audit every CA"
    )]
    NoArns,
    #[error(
        "invalid manual request: certificateAuthorityArns has {0} entries, at most {MAX_REQUESTED_ARNS} are accepted"
    )]
    TooManyArns(usize),
    #[error("invalid work item: {0}")]
    InvalidWorkItem(String),
    #[error("invalid coverage request: {0}")]
    InvalidCoverage(#[source] crate::domain::request::CoverageRequestError),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    /// Everything else was done and recorded; these CAs (or regions) failed.
    #[error("{0}")]
    Failed(String),
    /// A coverage request that could not be answered (ledger, deadline, manifest).
    #[error(transparent)]
    Coverage(#[from] CoverageError),
}

impl From<RunError> for Diagnostic {
    fn from(e: RunError) -> Self {
        let error_type = match e {
            RunError::InvalidRequest(_) => Code::InvalidRequest,
            RunError::Failed(_) => Code::CertificateAuthoritiesFailed,
            RunError::Coverage(_) => Code::CoverageFailed,
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
            // The rest failed through their report.
            _ => format!("{} (AuditReportFailed)", o.certificate_authority_arn),
        })
        .chain(
            summary
                .account_errors
                .iter()
                .map(|a| format!("account {} ({})", a.account_id, a.error_code)),
        )
        .chain(summary.region_errors.iter().map(|r| {
            format!(
                "account {} region {} ({})",
                r.account_id, r.region, r.error_code
            )
        }))
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
