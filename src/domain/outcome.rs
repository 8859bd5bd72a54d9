//! What became of each CA in a run: the outcome, the follow-up of its report, the errors of
//! an account or account-region, and the builders every phase uses to say so.

use serde::Serialize;

use crate::domain::arn::CaArn;
use crate::domain::bucket::RejectedObject;
use crate::domain::report::{ReportCheck, ReportFormat, ReportStatus};
use crate::domain::time::Timestamp;

/// Why a CA was left alone this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// The CA's state is not among those audited (AUDIT_CA_STATES).
    CaState,
    /// The ledger's window has not passed since the CA's last report.
    InsideWindow,
    /// Another run holds the CA's claim and its lease has not expired.
    ClaimedByAnotherRun,
    /// The service said the CA is inside its own 30 minutes (a report made outside this function).
    ServiceWindow,
    /// The service refused the CA's state (InvalidStateException).
    ServiceRefusedState,
    /// Listed in EXEMPT_CA_ARNS.
    Exempt,
    /// Its type (ROOT, SUBORDINATE) is not among AUDIT_CA_TYPES.
    CaType,
    /// It lacks a tag of REQUIRED_TAGS.
    MissingTag,
    /// The service accepted a create whose answer was lost, and the report is not in the
    /// bucket yet: the next run looks for it there before any new request.
    LostReportPending,
}

impl SkipReason {
    /// The name the summary gives it, for the log lines to say the same.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaState => "caState",
            Self::InsideWindow => "insideWindow",
            Self::ClaimedByAnotherRun => "claimedByAnotherRun",
            Self::ServiceWindow => "serviceWindow",
            Self::ServiceRefusedState => "serviceRefusedState",
            Self::Exempt => "exempt",
            Self::CaType => "caType",
            Self::MissingTag => "missingTag",
            Self::LostReportPending => "lostReportPending",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Outcome {
    Requested {
        report_id: String,
        s3_bucket: String,
        s3_key: String,
        format: ReportFormat,
        requested_at: Timestamp,
    },
    /// Dry run: this CA would have been requested.
    WouldRequest,
    Skipped {
        reason: SkipReason,
        detail: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_eligible_at: Option<Timestamp>,
    },
    /// Not started for lack of time (or quota); the next run takes it first.
    Deferred { detail: String },
    /// A report whose id was never recorded (a run died after requesting it, or the
    /// service's answer to the create was lost): found in the bucket and recorded now,
    /// without a new request.
    Recovered {
        /// How the report's id came to be lost.
        detail: String,
        report_id: String,
        s3_bucket: String,
        s3_key: String,
        format: ReportFormat,
        /// When the object was written (the request itself was a little earlier).
        requested_at: Timestamp,
        size_bytes: u64,
    },
    Failed {
        error_code: String,
        error_message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaOutcome {
    pub certificate_authority_arn: String,
    pub account_id: String,
    pub region: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The follow-up of a report requested in this run or an earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportCheck>,
    /// Objects found where the service writes this CA's reports that it did not make: never
    /// recorded (someone with write access to the bucket put them there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_objects: Vec<RejectedObject>,
}

impl CaOutcome {
    /// A failed CA, for the counts, the metrics and the invocation's verdict: its outcome
    /// failed, or a report of it ended FAILED.
    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
            || self
                .report
                .as_ref()
                .is_some_and(|r| r.status == ReportStatus::Failed)
    }
}

/// An account-region whose CAs could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionError {
    pub account_id: String,
    pub region: String,
    pub error_code: String,
    pub error_message: String,
}

/// An account the function could not enter (its role could not be assumed), or the
/// organization whose accounts could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountError {
    pub account_id: String,
    pub error_code: String,
    pub error_message: String,
}

/// The outcome of one CA, named by its ARN.
pub fn outcome(arn: &CaArn, outcome: Outcome) -> CaOutcome {
    CaOutcome {
        certificate_authority_arn: arn.to_string(),
        account_id: arn.account().to_owned(),
        region: arn.region().to_owned(),
        outcome,
        report: None,
        rejected_objects: Vec::new(),
    }
}

/// A failure with its code (an AWS service's, or one of `Code`) and message.
pub fn failed(code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Failed {
        error_code: code.to_owned(),
        error_message: message.into(),
    }
}

/// Left alone for `reason`, due again at `next`.
pub fn skipped(reason: SkipReason, detail: String, next: Timestamp) -> Outcome {
    Outcome::Skipped {
        reason,
        detail,
        next_eligible_at: Some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_flat_with_camel_case_fields() {
        let o = CaOutcome {
            certificate_authority_arn: "arn:x".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            report: None,
            rejected_objects: Vec::new(),
            outcome: Outcome::Skipped {
                reason: SkipReason::InsideWindow,
                detail: "last report 2026-11-25T01:00:00Z".into(),
                next_eligible_at: Some(Timestamp::from_epoch_seconds(1_800)),
            },
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["outcome"], "skipped");
        assert_eq!(v["reason"], "insideWindow");
        assert_eq!(v["nextEligibleAt"], "1970-01-01T00:30:00Z");
        assert_eq!(v["certificateAuthorityArn"], "arn:x");
        let f = serde_json::to_value(Outcome::Failed {
            error_code: "ResourceNotFoundException".into(),
            error_message: "gone".into(),
        })
        .unwrap();
        assert_eq!(f["errorCode"], "ResourceNotFoundException");
    }

    #[test]
    fn skip_reasons_are_named_alike_in_the_summary_and_the_logs() {
        use SkipReason::*;
        for r in [
            CaState,
            InsideWindow,
            ClaimedByAnotherRun,
            ServiceWindow,
            ServiceRefusedState,
            Exempt,
            CaType,
            MissingTag,
            LostReportPending,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
