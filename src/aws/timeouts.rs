//! The timeouts of every AWS call the function makes.

use std::time::Duration;

use aws_config::SdkConfig;

/// How long one attempt of an AWS call may take before it is given up (and, but for a
/// create, retried). The SDK sets none of its own but the connect timeout: "The SDK doesn't
/// have any default maximum wait-time set for receiving a response for a request attempt or
/// for the entire request" (SDK for Rust developer guide, "Configuring timeouts"); "It is a
/// good practice to set timeouts for both the individual attempt and the entire request"
/// ("Best practices"). Every call of this function is a small request answered in well under
/// a second in-region (the largest, a manifest's 8 MiB part, too); a report's body is read
/// after its call has answered, outside these timeouts.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// The whole call, retries included: under the invocation's reserve (`Invocation::DEFAULT_RESERVE`),
/// so a call started before the cutoff has ended, one way or the other, before the deadline,
/// and the invocation still returns its summary and writes its metric line.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(9);
/// The SDK's own connect timeout, kept.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The SDK configuration with the function's timeouts: every client made from it (and every
/// member account's, made from it in turn) has them.
pub fn with_timeouts(sdk: &SdkConfig) -> SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    sdk.to_builder().timeout_config(timeouts).build()
}
