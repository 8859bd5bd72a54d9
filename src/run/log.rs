//! Each CA's log lines, written when they are known: the outcome when the CA has one, the
//! report's line when its follow-up ends. A run killed half-way has logged what it finished.

use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::outcome::{CaOutcome, Outcome};
use crate::domain::report::{CheckLimit, ReportCheck, ReportStatus};

/// The CA's outcome line (and its report's, when the outcome came with one), inside a `ca`
/// span that carries the CA's ARN and region.
pub(crate) fn outcome_line(ca: &CaOutcome) {
    let span =
        tracing::info_span!("ca", ca_arn = %ca.certificate_authority_arn, region = %ca.region);
    let _ca = span.enter();
    if let Some(r) = &ca.report {
        log_report(r);
    }
    let error_code = Code::ReportNotMadeByService.as_str();
    for r in &ca.rejected_objects {
        tracing::error!(
            error_code,
            s3_key = r.s3_key,
            "not recorded: an object the service did not make is where it writes this CA's \
             reports ({}); whoever can write to the bucket put it there",
            r.reason
        );
    }
    log_outcome(&ca.outcome);
}

/// Every outcome's line, in order.
pub(crate) fn outcome_lines(outcomes: &[CaOutcome]) {
    outcomes.iter().for_each(outcome_line);
}

/// The line of a report's follow-up, as it ends (or is left for the next run).
pub(crate) fn report_line(arn: &CaArn, check: &ReportCheck) {
    let span = tracing::info_span!("ca", ca_arn = %arn, region = %arn.region());
    let _ca = span.enter();
    log_report(check);
}

/// The CA's log line of what its report says, or why it could not be read (inside the run's
/// `ca` span).
fn log_contents(r: &ReportCheck) {
    let report_id = r.report_id.as_str();
    if let Some(c) = &r.contents {
        tracing::info!(
            report_id,
            certificates = c.certificates,
            certificates_issued = c.issued_since,
            certificates_revoked = c.revoked_since,
            first_issued = ?c.first_issued,
            first_revoked = ?c.first_revoked,
            sha256 = r.pin.as_ref().and_then(|p| p.sha256.as_deref()),
            "audit report read"
        );
    } else if let (CheckLimit::Unreadable, Some(detail)) = (r.limit, &r.detail) {
        let error_code = Code::ReportUnreadable.as_str();
        tracing::error!(report_id, error_code, "{detail}");
    }
}

/// The follow-up of a CA's report, as one log line.
fn log_report(r: &ReportCheck) {
    let detail = r.detail.as_deref().unwrap_or("");
    let (report_id, report_status) = (r.report_id.as_str(), r.status.as_str());
    match r.status {
        ReportStatus::Failed => {
            tracing::error!(report_id, report_status, "audit report failed: {detail}")
        }
        _ => tracing::info!(
            report_id,
            report_status,
            size_bytes = r.size_bytes,
            "audit report checked"
        ),
    }
    log_contents(r);
}

/// What became of a CA, as one log line.
fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Requested {
            report_id, s3_key, ..
        } => tracing::info!(
            outcome = "requested",
            report_id,
            s3_key,
            "audit report requested"
        ),
        Outcome::WouldRequest => tracing::info!(
            outcome = "wouldRequest",
            "dry run: audit report would be requested"
        ),
        Outcome::Skipped {
            reason,
            detail,
            next_eligible_at,
        } => tracing::info!(
            outcome = "skipped",
            reason = reason.as_str(),
            next_eligible_at = next_eligible_at.map(|t| t.to_string()),
            "{detail}"
        ),
        Outcome::Recovered {
            report_id,
            s3_key,
            detail,
            ..
        } => tracing::warn!(
            outcome = "recovered",
            report_id,
            s3_key,
            "audit report found in the bucket and recorded: {detail}"
        ),
        Outcome::Deferred { detail } => tracing::warn!(outcome = "deferred", "{detail}"),
        Outcome::Failed {
            error_code,
            error_message,
        } => tracing::error!(outcome = "failed", error_code, "{error_message}"),
    }
}
