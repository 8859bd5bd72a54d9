//! ACM Private CA: listing the CAs and requesting their audit reports, within the quota.

use std::time::Duration;

use aws_sdk_acmpca::Client;
use aws_sdk_acmpca::config::retry::RetryConfig;
use aws_sdk_acmpca::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_acmpca::types::{AuditReportResponseFormat, ResourceOwner};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::arn::CaArn;
use crate::codes::Code;
use crate::format::ReportFormat;

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

/// A CA as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub arn: CaArn,
    pub status: String,
    /// `ROOT` or `SUBORDINATE`.
    pub ca_type: String,
}

/// Every CA the account owns in the client's region, all pages (the service returns at most
/// 100 a page). DELETED CAs in their restore period are listed too, and skipped by state.
pub async fn list(client: &Client) -> Result<Vec<Authority>, ServiceError> {
    let mut pages = client
        .list_certificate_authorities()
        .resource_owner(ResourceOwner::SelfValue)
        .into_paginator()
        .page_size(100)
        .items()
        .send();
    let mut found = Vec::new();
    while let Some(ca) = pages.next().await {
        let ca = ca.map_err(|e| ServiceError::from_sdk(&e))?;
        let Some(text) = ca.arn() else { continue };
        match CaArn::parse(text) {
            Ok(arn) => found.push(Authority {
                arn,
                status: ca
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                ca_type: ca
                    .r#type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
            }),
            Err(e) => tracing::warn!(
                ca_arn = text,
                "listing returned an ARN this function cannot use: {e}"
            ),
        }
    }
    Ok(found)
}

/// A CA's tags, as key and value.
pub type Tags = Vec<(String, String)>;

/// The CA's tags, all pages.
pub async fn tags(client: &Client, arn: &CaArn) -> Result<Tags, ServiceError> {
    let mut pages = client
        .list_tags()
        .certificate_authority_arn(arn.as_str())
        .into_paginator()
        .items()
        .send();
    let mut tags = Vec::new();
    while let Some(tag) = pages.next().await {
        let tag = tag.map_err(|e| ServiceError::from_sdk(&e))?;
        tags.push((
            tag.key().to_owned(),
            tag.value().unwrap_or_default().to_owned(),
        ));
    }
    Ok(tags)
}

/// What the service answered to a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub id: String,
    pub s3_key: String,
}

/// How the scheduler should take a failed create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The CA is inside the service's own 30 minutes: try again later, not a failure.
    TooSoon,
    /// Over the quota: retried in the pacer's next slot, then the CA waits for the next run.
    Throttled,
    /// The service will not audit the CA in its current state.
    State,
    /// No answer that says what happened (5xx, timeout, connection lost): the report may
    /// exist. Retried in the next slot; a "too soon" after it means it does.
    Ambiguous,
    /// The CA can never get a report as it is (LimitExceededException): fail it, loudly,
    /// every run, rather than skip it quietly.
    Limit,
    /// Any other certain refusal: the CA failed this run.
    Failed,
}

/// Which error means what. No public source says which error a second request inside the
/// 30 minutes gets (AWS_FACTS.md): RequestInProgressException is the likely one.
/// LimitExceededException is not among the operation's modelled errors, but the Private CA
/// user guide's Java sample for CreateCertificateAuthorityAuditReport says the service
/// answers it for a CA that issued more than 100 million certificates: permanent, so it
/// fails the CA.
pub fn refusal(e: &ServiceError) -> Refusal {
    match e.code.as_str() {
        "RequestInProgressException" => Refusal::TooSoon,
        "ThrottlingException" | "TooManyRequestsException" | "Throttling" => Refusal::Throttled,
        "InvalidStateException" => Refusal::State,
        "LimitExceededException" => Refusal::Limit,
        _ if e.ambiguous => Refusal::Ambiguous,
        _ => Refusal::Failed,
    }
}

/// What a `Limit` refusal most likely means, for the CA's failure message.
pub const LIMIT_CAUSE: &str = "the service refuses this CA's audit reports with a limit: \
    AWS Private CA makes no audit report for a CA that has issued more than 100 million \
    certificates (Private CA user guide, audit reports and the CreateCertificateAuthorityAuditReport \
    Java sample); this will not pass by itself";

pub async fn request_report(
    client: &Client,
    arn: &CaArn,
    bucket: &str,
    format: ReportFormat,
) -> Result<AuditReport, ServiceError> {
    let out = client
        .create_certificate_authority_audit_report()
        .certificate_authority_arn(arn.as_str())
        .s3_bucket_name(bucket)
        .audit_report_response_format(match format {
            ReportFormat::Json => AuditReportResponseFormat::Json,
            ReportFormat::Csv => AuditReportResponseFormat::Csv,
        })
        .customize()
        // Every attempt of this call must take a slot of the pacer: an SDK retry would go
        // out between the paced calls and be throttled again, pulling the next ones with it.
        // The scheduler retries a throttled create in its next slot instead.
        .config_override(
            aws_sdk_acmpca::config::Builder::default().retry_config(RetryConfig::disabled()),
        )
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    match (out.audit_report_id, out.s3_key) {
        (Some(id), Some(s3_key)) => Ok(AuditReport { id, s3_key }),
        // Both are optional in the model; a report we cannot find again is no evidence.
        _ => Err(ServiceError {
            code: Code::IncompleteResponse.into(),
            message: "the service accepted the request but returned no report id or S3 key".into(),
            // Accepted, so a report may exist: the bucket will show it.
            ambiguous: true,
        }),
    }
}

/// Spaces calls of one operation in one account and region at the service's quota (creates:
/// one a second). Slots are handed out in the order they are asked for, so the CAs that
/// waited longest (asked first) are requested first.
///
/// The quota is counted where the service receives the calls, so calls spaced exactly here
/// can arrive closer there when one is delayed on the way. A throttled call widens the
/// spacing a little (`throttled`), and accepted calls narrow it back (`accepted`), so a
/// path with jitter costs a few milliseconds a call rather than a whole slot per throttle.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    state: Mutex<PacerState>,
}

#[derive(Debug, Default)]
struct PacerState {
    next_slot: Option<Instant>,
    /// Added to `period` after throttling; shrinks again as calls are accepted.
    extra: Duration,
}

/// Attempts of one CA's create while the quota throttles it or its answers are lost (each in
/// a slot of its own). Eight: with three answers in ten lost, all eight are lost for one CA
/// in 15,000.
pub const CREATE_ATTEMPTS: u32 = 8;

/// Spacing of the read calls of one account and region (DescribeCertificateAuthorityAuditReport,
/// ListTags): 16 a second, under the service's 20 a second for each.
pub const READ_PERIOD: Duration = Duration::from_millis(60);

/// A little over one second: the margin absorbs most of the jitter between here and the
/// service; `Pacer::throttled` takes care of the rest.
pub const CREATE_PERIOD: Duration = Duration::from_millis(1020);

/// How much a throttled call widens the spacing, how far it can widen, and how much each
/// accepted call narrows it back.
const WIDEN: Duration = Duration::from_millis(20);
const MAX_EXTRA: Duration = Duration::from_millis(200);
const NARROW: Duration = Duration::from_millis(1);

impl Pacer {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            state: Mutex::new(PacerState::default()),
        }
    }

    /// Waits for the next slot. Returns `false` at once, taking no slot, if that slot would
    /// come after `cutoff`.
    pub async fn wait_turn(&self, cutoff: Instant) -> bool {
        let slot = {
            let mut state = self.state.lock().await;
            let now = Instant::now();
            let slot = state.next_slot.map_or(now, |n| n.max(now));
            if slot > cutoff {
                return false;
            }
            state.next_slot = Some(slot + self.period + state.extra);
            slot
        };
        tokio::time::sleep_until(slot).await;
        true
    }

    /// The service throttled a call made in a slot of this pacer: space the next ones wider.
    pub async fn throttled(&self) {
        let mut state = self.state.lock().await;
        state.extra = (state.extra + WIDEN).min(MAX_EXTRA);
    }

    /// The service accepted a call: narrow the spacing back towards `period`.
    pub async fn accepted(&self) {
        let mut state = self.state.lock().await;
        state.extra = state.extra.saturating_sub(NARROW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str, ambiguous: bool) -> ServiceError {
        ServiceError {
            code: code.into(),
            message: String::new(),
            ambiguous,
        }
    }

    #[test]
    fn each_answer_means_what_the_service_documents() {
        let refused = |code| refusal(&error(code, false));
        assert_eq!(refused("RequestInProgressException"), Refusal::TooSoon);
        assert_eq!(refused("ThrottlingException"), Refusal::Throttled);
        assert_eq!(refused("InvalidStateException"), Refusal::State);
        assert_eq!(refused("ResourceNotFoundException"), Refusal::Failed);
        assert_eq!(refused("AccessDeniedException"), Refusal::Failed);
    }

    #[test]
    fn a_limit_is_a_failure_never_a_quiet_skip() {
        assert_eq!(
            refusal(&error("LimitExceededException", false)),
            Refusal::Limit
        );
    }

    #[test]
    fn only_answers_that_say_nothing_are_ambiguous() {
        assert_eq!(refusal(&error("InternalFailure", true)), Refusal::Ambiguous);
        assert_eq!(refusal(&error("Timeout", true)), Refusal::Ambiguous);
        // A certain 4xx stays certain, and "too soon" keeps its meaning after a 5xx.
        assert_eq!(
            refusal(&error("InvalidArgsException", false)),
            Refusal::Failed
        );
        assert_eq!(
            refusal(&error("RequestInProgressException", false)),
            Refusal::TooSoon
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_slots_and_refuses_past_the_cutoff() {
        let pacer = Pacer::new(Duration::from_secs(1));
        let start = Instant::now();
        let cutoff = start + Duration::from_millis(2500);
        assert!(pacer.wait_turn(cutoff).await);
        assert!(pacer.wait_turn(cutoff).await);
        assert!(pacer.wait_turn(cutoff).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        assert!(
            !pacer.wait_turn(cutoff).await,
            "the fourth slot is at 3 s, past the cutoff"
        );
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(2),
            "a refused turn does not wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_widens_the_spacing_and_acceptance_narrows_it_back() {
        let pacer = Pacer::new(Duration::from_secs(1));
        let far = Instant::now() + Duration::from_secs(60);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert!(pacer.wait_turn(far).await);
        pacer.throttled().await;
        pacer.throttled().await;
        // The slot handed out before the throttling keeps its place; the ones after widen.
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(1000));
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(2040));
        for _ in 0..100 {
            pacer.accepted().await;
        }
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(3080));
        assert!(pacer.wait_turn(far).await);
        assert_eq!(Instant::now(), at(4080), "back to the period");
        for _ in 0..100 {
            pacer.throttled().await;
        }
        assert_eq!(pacer.state.lock().await.extra, MAX_EXTRA);
    }
}
