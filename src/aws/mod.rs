//! The adapters: the only code that sends AWS SDK requests, turning SDK types into the
//! domain's and back. Tests point them at the local stack.
//!
//! `ServiceError`, here, is the error any AWS service (or the way to it) gives, in one shape
//! for summaries, logs and the ledger: the service's own code, its message, and whether the
//! call may have been carried out all the same.

pub mod accounts;
pub mod acm_pca;
pub mod events;
pub mod ledger;
pub mod multipart;
pub mod s3;
pub mod security_hub;
pub mod sqs;
pub mod timeouts;

use aws_sdk_acmpca::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::domain::code::Code;

/// An error the service (or the way to it) gave, with the service's own code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    pub code: String,
    pub message: String,
    /// The request may have been carried out all the same: the service answered 5xx, the
    /// call timed out, or the connection was lost after the request went out. Only the
    /// service knows; for a create, the bucket tells later (`verify::find_unrecorded`).
    pub ambiguous: bool,
}

impl ServiceError {
    pub fn from_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
        e: &SdkError<E>,
    ) -> Self {
        let service = e.as_service_error();
        let ambiguous = match e {
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            // A connection lost may have carried the request; a request never built (bad
            // credentials, bad input) is certain.
            SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
            SdkError::ServiceError(s) => s.raw().status().is_server_error(),
            _ => false,
        };
        Self {
            ambiguous,
            code: service
                .and_then(|s| s.code())
                .unwrap_or(match e {
                    SdkError::TimeoutError(_) => Code::Timeout.as_str(),
                    SdkError::DispatchFailure(_) => Code::Unreachable.as_str(),
                    SdkError::ResponseError(_) => Code::InvalidResponse.as_str(),
                    _ => Code::RequestFailed.as_str(),
                })
                .to_owned(),
            message: service
                .and_then(|s| s.message())
                .map(str::to_owned)
                .unwrap_or_else(|| DisplayErrorContext(e).to_string()),
        }
    }
}
