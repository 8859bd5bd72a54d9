//! The error codes this function gives, beside the AWS services' own: one list, so that a code
//! means one thing wherever it appears (summaries, the ledger's `last_error_code`, logs).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A CA or work item of an account outside `AUDIT_ACCOUNTS` (not listed; with
    /// `ORGANIZATION`, not an ACTIVE member, or not under `AUDIT_ORGANIZATIONAL_UNITS`).
    AccountNotAudited,
    /// A CA or work item of a region outside `AUDIT_REGIONS`.
    RegionNotAudited,
    /// An SQS record from another queue than the configured fan-out queue.
    NotTheFanOutQueue,
    /// The member role could not be assumed in an account.
    AssumeRoleFailed,
    /// No partition is known for the function's region, so no member role ARN can be named.
    UnknownPartition,
    /// A report the service accepted ended FAILED, or its object is missing or empty.
    AuditReportFailed,
    /// The service accepted a report that the ledger could not record.
    LedgerWriteFailed,
    /// The report bucket does not exist.
    NoSuchBucket,
    /// The report bucket refuses the function.
    AccessDenied,
    /// The report bucket is in another region than the function.
    BucketInAnotherRegion,
    /// The service accepted a create but answered without a report id or S3 key.
    IncompleteResponse,
    /// Refused before anything was done: an event the function cannot read (the invocation's
    /// error type), or a request this function built that the SDK refused before sending it.
    InvalidRequest,
    /// The invocation's error type when CAs (or accounts, or account-regions) of a run failed.
    CertificateAuthoritiesFailed,
    /// The invocation's error type when a coverage request could not be answered.
    CoverageFailed,
    /// A SUCCESS report whose contents could not be read (READ_REPORTS).
    ReportUnreadable,
    /// An object under a CA's `audit-report/` prefix that the service did not make (its
    /// DescribeCertificateAuthorityAuditReport does not vouch for it): never recorded.
    ReportNotMadeByService,
    /// BatchGetItem kept leaving keys unprocessed.
    UnprocessedKeys,
    /// A call timed out.
    Timeout,
    /// A service could not be reached.
    Unreachable,
    /// A service's answer could not be read.
    InvalidResponse,
    /// A call failed without a code of the service's.
    RequestFailed,
    /// A CA a manual request names is not among the CAs its account owns in its region (the
    /// service's own code for an unknown CA, given before any create).
    ResourceNotFoundException,
}

impl Code {
    /// Whether an error code says that what was asked for is outside the configured scope: it
    /// can never pass, so it is never retried.
    pub fn is_out_of_scope(code: &str) -> bool {
        [Self::AccountNotAudited, Self::RegionNotAudited]
            .iter()
            .any(|c| c.as_str() == code)
    }

    /// Whether a failure with this code may pass when tried again soon: the way to the
    /// service failed (a timeout, no connection, an answer lost or unreadable, the service's
    /// own 5xx or throttling), or the ledger could not be written. Anything else (a FAILED
    /// report, a refused create, a missing bucket, a CA not found) is the same on a retry.
    pub fn is_transient(code: &str) -> bool {
        let ours = [
            Self::Timeout,
            Self::Unreachable,
            Self::InvalidResponse,
            Self::RequestFailed,
            Self::LedgerWriteFailed,
            Self::UnprocessedKeys,
            Self::AssumeRoleFailed,
        ];
        ours.iter().any(|c| c.as_str() == code)
            || [
                "InternalFailure",
                "InternalServerError",
                "ServiceUnavailable",
                "ThrottlingException",
                "Throttling",
                "TooManyRequestsException",
                "RequestFailedException",
                "ProvisionedThroughputExceededException",
            ]
            .contains(&code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountNotAudited => "AccountNotAudited",
            Self::RegionNotAudited => "RegionNotAudited",
            Self::NotTheFanOutQueue => "NotTheFanOutQueue",
            Self::AssumeRoleFailed => "AssumeRoleFailed",
            Self::UnknownPartition => "UnknownPartition",
            Self::AuditReportFailed => "AuditReportFailed",
            Self::LedgerWriteFailed => "LedgerWriteFailed",
            Self::NoSuchBucket => "NoSuchBucket",
            Self::AccessDenied => "AccessDenied",
            Self::BucketInAnotherRegion => "BucketInAnotherRegion",
            Self::IncompleteResponse => "IncompleteResponse",
            Self::InvalidRequest => "InvalidRequest",
            Self::CertificateAuthoritiesFailed => "CertificateAuthoritiesFailed",
            Self::CoverageFailed => "CoverageFailed",
            Self::ReportUnreadable => "ReportUnreadable",
            Self::ReportNotMadeByService => "ReportNotMadeByService",
            Self::UnprocessedKeys => "UnprocessedKeys",
            Self::Timeout => "Timeout",
            Self::Unreachable => "Unreachable",
            Self::InvalidResponse => "InvalidResponse",
            Self::RequestFailed => "RequestFailed",
            Self::ResourceNotFoundException => "ResourceNotFoundException",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Code> for String {
    fn from(c: Code) -> Self {
        c.as_str().to_owned()
    }
}
