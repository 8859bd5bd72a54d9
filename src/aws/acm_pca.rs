//! ACM Private CA: listing the CAs and requesting their audit reports, within the quota.

use aws_sdk_acmpca::Client;
use aws_sdk_acmpca::config::retry::RetryConfig;
use aws_sdk_acmpca::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_acmpca::operation::create_certificate_authority_audit_report::CreateCertificateAuthorityAuditReportError;
use aws_sdk_acmpca::types::{AuditReportResponseFormat, AuditReportStatus, ResourceOwner};

use crate::aws::ServiceError;
use crate::domain::arn::CaArn;
use crate::domain::bucket::DescribedReport;
use crate::domain::code::Code;
use crate::domain::report::ReportFormat;
use crate::domain::scope::Authority;

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
                status: ca.status().cloned(),
                ca_type: ca.r#type().cloned(),
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

/// A create the service did not accept, or whose answer was lost: what it means for the CA,
/// read from the SDK's typed error while it is at hand, and what the service said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct CreateRefused {
    pub refusal: Refusal,
    pub error: ServiceError,
}

impl Refusal {
    /// Which answer to a create means what, from the operation's typed error. No public source
    /// says which error a second request inside the 30 minutes gets (AWS_FACTS.md):
    /// RequestInProgressException is the likely one. Throttling and LimitExceededException are
    /// not among the operation's modelled errors, so only their codes tell: the Private CA
    /// user guide's Java sample for CreateCertificateAuthorityAuditReport says the service
    /// answers LimitExceededException for a CA that issued more than 100 million
    /// certificates: permanent, so it fails the CA (the SDK's own retry classifier counts that
    /// code as throttling, which for this operation it is not).
    pub fn of_create(
        e: &SdkError<CreateCertificateAuthorityAuditReportError>,
        ambiguous: bool,
    ) -> Self {
        let Some(service) = e.as_service_error() else {
            return if ambiguous {
                Self::Ambiguous
            } else {
                Self::Failed
            };
        };
        if service.is_request_in_progress_exception() {
            return Self::TooSoon;
        }
        if service.is_invalid_state_exception() {
            return Self::State;
        }
        match service.code() {
            Some("ThrottlingException" | "TooManyRequestsException" | "Throttling") => {
                Self::Throttled
            }
            // "A networking problem in your AWS environment caused the request to fail. Retry
            // the request." (Private CA user guide, "Troubleshoot exception messages"): it may
            // or may not have been carried out, so it is read as a lost answer.
            Some("RequestFailedException") => Self::Ambiguous,
            Some("LimitExceededException") => Self::Limit,
            _ if ambiguous => Self::Ambiguous,
            _ => Self::Failed,
        }
    }
}

/// What a `Limit` refusal most likely means, for the CA's failure message.
pub const LIMIT_CAUSE: &str = "the service refuses this CA's audit report with a limit, \
    which means one of two things: AWS Private CA makes no audit report for a CA that has issued \
    more than 100 million certificates (Private CA user guide, audit reports and the \
    CreateCertificateAuthorityAuditReport Java sample), which will not pass by itself; or a \
    report of this CA was already requested in the last 30 minutes (outside this function, \
    which had none on record), which passes once they are over";

/// The create refused because its caller may not write to the bucket: "If the IAM principal
/// making the call does not have permission to write to the bucket, then an exception is
/// thrown" (API reference, CreateCertificateAuthorityAuditReport, as the seed page has it).
fn refused_the_callers_write(error: &ServiceError) -> bool {
    error.code.starts_with("AccessDenied") && error.message.contains("s3:")
}

/// What to do about it. Which objects the service's check writes is not documented: the stack
/// grants the callers the two permission-test objects only (the likely ones, AWS_FACTS.md),
/// and says here how to widen the grant if AWS checks more.
pub fn caller_write_hint(bucket: &str) -> String {
    format!(
        "the caller of CreateCertificateAuthorityAuditReport must be allowed to write to bucket \
         {bucket}: the stack grants the function role and the member roles s3:PutObject on its \
         two permission-test objects (acm-pca-permission-test-key, \
         acm-pca-permission-test-key-private) only; if AWS checks more, deploy template.yaml and \
         member-role.yaml with CallerWriteGrant=AuditReports, which widens the grant to \
         audit-report/* (docs/deploying.md, \"Who can write the evidence, and Object Lock\")"
    )
}

pub async fn request_report(
    client: &Client,
    arn: &CaArn,
    bucket: &str,
    format: ReportFormat,
) -> Result<AuditReport, CreateRefused> {
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
        // One attempt, so it may take the whole operation's time: the service checks the
        // caller's write to the bucket before it answers. A create that times out is
        // ambiguous (it may have been carried out): retried in its next slot, and the bucket
        // searched for its report should the service say "too soon".
        .config_override(
            aws_sdk_acmpca::config::Builder::default()
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(super::timeouts::OPERATION_TIMEOUT)
                        .operation_timeout(super::timeouts::OPERATION_TIMEOUT)
                        .build(),
                ),
        )
        .send()
        .await
        .map_err(|e| {
            let mut error = ServiceError::from_sdk(&e);
            if refused_the_callers_write(&error) {
                error.message = format!("{}; {}", error.message, caller_write_hint(bucket));
            }
            // "A resource such as a private CA, S3 bucket, ... cannot be found": the CA was
            // listed a moment ago, so say which bucket was asked for.
            if error.code == "ResourceNotFoundException" && !error.message.contains(bucket) {
                error.message = format!("{} (report bucket: {bucket})", error.message);
            }
            let refusal = Refusal::of_create(&e, error.ambiguous);
            error.ambiguous |= refusal == Refusal::Ambiguous;
            CreateRefused { refusal, error }
        })?;
    match (out.audit_report_id, out.s3_key) {
        (Some(id), Some(s3_key)) => Ok(AuditReport { id, s3_key }),
        // Both are optional in the model; a report we cannot find again is no evidence.
        // Accepted, so a report may exist: the bucket will show it.
        _ => Err(CreateRefused {
            refusal: Refusal::Ambiguous,
            error: ServiceError {
                code: Code::IncompleteResponse.into(),
                message: "the service accepted the request but returned no report id or S3 key"
                    .into(),
                ambiguous: true,
            },
        }),
    }
}

/// What the service says of one audit report (DescribeCertificateAuthorityAuditReport): its
/// status, `None` when the answer has none.
pub async fn report_status(
    client: &Client,
    arn: &CaArn,
    report_id: &str,
) -> Result<Option<AuditReportStatus>, ServiceError> {
    let described = client
        .describe_certificate_authority_audit_report()
        .certificate_authority_arn(arn.as_str())
        .audit_report_id(report_id)
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    Ok(described.audit_report_status().cloned())
}

/// What the service says of a report id of this CA (DescribeCertificateAuthorityAuditReport):
/// `None` when it answers that it has no such report (`ResourceNotFoundException`: "A
/// resource such as a private CA, S3 bucket, certificate, audit report, or policy cannot be
/// found", API reference, DescribeCertificateAuthorityAuditReport).
pub async fn describe_report(
    client: &Client,
    arn: &CaArn,
    report_id: &str,
) -> Result<Option<DescribedReport>, ServiceError> {
    let answer = client
        .describe_certificate_authority_audit_report()
        .certificate_authority_arn(arn.as_str())
        .audit_report_id(report_id)
        .send()
        .await;
    match answer {
        Ok(d) => Ok(Some(DescribedReport {
            status: d.audit_report_status().cloned(),
            s3_bucket: d.s3_bucket_name().map(str::to_owned),
            s3_key: d.s3_key().map(str::to_owned),
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(ServiceError::from_sdk(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK error a create gets for an answer with this code and HTTP status.
    fn answered(code: &str, status: u16) -> SdkError<CreateCertificateAuthorityAuditReportError> {
        use aws_sdk_acmpca::error::ErrorMetadata;
        use aws_sdk_acmpca::operation::create_certificate_authority_audit_report::CreateCertificateAuthorityAuditReportError as E;
        use aws_sdk_acmpca::types::error::{InvalidStateException, RequestInProgressException};
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let typed = match code {
            "RequestInProgressException" => E::RequestInProgressException(
                RequestInProgressException::builder().meta(meta).build(),
            ),
            "InvalidStateException" => {
                E::InvalidStateException(InvalidStateException::builder().meta(meta).build())
            }
            _ => E::generic(meta),
        };
        let raw = aws_smithy_runtime_api::http::Response::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(typed, raw)
    }

    fn refusal(code: &str, status: u16) -> Refusal {
        let e = answered(code, status);
        Refusal::of_create(&e, ServiceError::from_sdk(&e).ambiguous)
    }

    #[test]
    fn each_answer_means_what_the_service_documents() {
        assert_eq!(refusal("RequestInProgressException", 400), Refusal::TooSoon);
        assert_eq!(refusal("ThrottlingException", 400), Refusal::Throttled);
        assert_eq!(refusal("InvalidStateException", 400), Refusal::State);
        assert_eq!(refusal("ResourceNotFoundException", 400), Refusal::Failed);
        assert_eq!(refusal("AccessDeniedException", 400), Refusal::Failed);
        assert_eq!(
            refusal("RequestFailedException", 400),
            Refusal::Ambiguous,
            "retryable, and maybe carried out"
        );
    }

    #[test]
    fn a_refused_write_check_says_which_parameter_widens_the_grant() {
        let said = |code: &str, message: &str| ServiceError {
            code: code.into(),
            message: message.into(),
            ambiguous: false,
        };
        let s3 = said(
            "AccessDeniedException",
            "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: s3:PutObject",
        );
        assert!(refused_the_callers_write(&s3));
        let hint = caller_write_hint("evidence");
        assert!(hint.contains("bucket evidence") && hint.contains("CallerWriteGrant=AuditReports"));
        let own = said(
            "AccessDeniedException",
            "not authorized to perform: acm-pca:CreateCertificateAuthorityAuditReport",
        );
        assert!(
            !refused_the_callers_write(&own),
            "the role's own permission"
        );
        assert!(!refused_the_callers_write(&said(
            "InvalidArgsException",
            "s3: bucket"
        )));
    }

    #[test]
    fn a_limit_is_a_failure_never_a_quiet_skip() {
        assert_eq!(refusal("LimitExceededException", 400), Refusal::Limit);
    }

    #[test]
    fn only_answers_that_say_nothing_are_ambiguous() {
        assert_eq!(refusal("InternalFailure", 500), Refusal::Ambiguous);
        let timeout: SdkError<CreateCertificateAuthorityAuditReportError> =
            SdkError::timeout_error("no answer in time");
        assert!(ServiceError::from_sdk(&timeout).ambiguous);
        assert_eq!(Refusal::of_create(&timeout, true), Refusal::Ambiguous);
        // A certain 4xx stays certain, and "too soon" keeps its meaning after a 5xx.
        assert_eq!(refusal("InvalidArgsException", 400), Refusal::Failed);
        assert_eq!(refusal("RequestInProgressException", 500), Refusal::TooSoon);
    }
}
