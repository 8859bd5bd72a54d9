//! The run's summary: what it returns, CA by CA, with its counts.

use serde::Serialize;

use crate::domain::alerts::Alert;
use crate::domain::code::Code;
use crate::domain::outcome::{AccountError, CaOutcome, Outcome, RegionError};
use crate::domain::report::ReportStatus;
use crate::domain::request::{Trigger, WorkItem};
use crate::domain::time::Timestamp;
use crate::domain::version::ToolVersion;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub requested: usize,
    pub would_request: usize,
    pub skipped: usize,
    pub deferred: usize,
    /// CAs whose outcome failed or whose report ended FAILED.
    pub failed: usize,
    pub recovered: usize,
    /// Reports followed up in this run, by what they came to.
    pub reports_succeeded: usize,
    pub reports_failed: usize,
    pub reports_pending: usize,
    /// Objects found where the service writes reports that it did not make (never recorded).
    pub rejected_objects: usize,
    /// CAs and work items refused as outside the configured accounts or regions.
    pub out_of_scope: usize,
    /// Audited CAs without a SUCCESS report for longer than the coverage threshold.
    pub overdue: usize,
    /// The run's events EventBridge took, and those it did not (or that had no time left).
    pub events_sent: usize,
    pub events_not_sent: usize,
    /// The run's Security Hub findings imported (and, for a CA audited again, resolved), and
    /// those that were not (`SECURITY_HUB_FINDINGS`).
    pub findings_imported: usize,
    pub findings_not_imported: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The tool's version (`Cargo.toml`).
    pub version: ToolVersion,
    pub run_id: String,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The accounts audited, by id (the function's own is `self` when its id is not known).
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub counts: Counts,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_errors: Vec<AccountError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub region_errors: Vec<RegionError>,
    /// Account-regions sent to the fan-out queue, each done by an invocation of its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fanned_out: Vec<WorkItem>,
    /// Every CA's outcome, the problems first; cut to `MAX_OUTCOMES_IN_ANSWER` when there are
    /// more (`cut_to_fit`), the whole list then in the bucket at `outcomes_key`.
    pub certificate_authorities: Vec<CaOutcome>,
    /// CAs left out of `certificateAuthorities` (the counts are of all of them).
    #[serde(skip_serializing_if = "is_zero")]
    pub certificate_authorities_omitted: usize,
    /// Where every CA's outcome is, when the answer lists only some:
    /// `evidence/runs/<run id>.json` in the report bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes_key: Option<String>,
    /// The alerts the run raised, sent as events (`run::notify`); not in the answer.
    #[serde(skip)]
    pub alerts: Vec<Alert>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The most CA outcomes a run's answer lists: an outcome with its report and the longest
/// messages is about 1.5 KB of JSON, so 2,000 stay near 3 MB, under Lambda's 6 MB response
/// ("Lambda quotas": "6 MB each for request and response (synchronous)").
pub const MAX_OUTCOMES_IN_ANSWER: usize = 2000;

impl RunSummary {
    /// The counts of a run: its CAs' outcomes, and the work items refused as outside the
    /// configured scope (an account error, with no CA).
    pub fn counts_of(outcomes: &[CaOutcome], account_errors: &[AccountError]) -> Counts {
        let mut c = Self::count(outcomes);
        c.out_of_scope += (account_errors.iter())
            .filter(|a| Code::is_out_of_scope(&a.error_code))
            .count();
        c
    }

    pub fn count(outcomes: &[CaOutcome]) -> Counts {
        let mut c = Counts::default();
        for o in outcomes {
            match o.outcome {
                Outcome::Requested { .. } => c.requested += 1,
                Outcome::WouldRequest => c.would_request += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
                Outcome::Deferred { .. } => c.deferred += 1,
                Outcome::Recovered { .. } => c.recovered += 1,
                Outcome::Failed { .. } => {}
            }
            if o.is_failure() {
                c.failed += 1;
            }
            match o.report.as_ref().map(|r| r.status) {
                Some(ReportStatus::Success) => c.reports_succeeded += 1,
                Some(ReportStatus::Failed) => c.reports_failed += 1,
                Some(ReportStatus::Creating) => c.reports_pending += 1,
                None => {}
            }
            c.rejected_objects += o.rejected_objects.len();
            if let Outcome::Failed { error_code, .. } = &o.outcome {
                c.out_of_scope += usize::from(Code::is_out_of_scope(error_code));
            }
        }
        c
    }

    /// Cuts the answer to what Lambda can return: the failed CAs first, then the deferred, then
    /// the rest, at most `MAX_OUTCOMES_IN_ANSWER`. Returns the whole list when it cut it, for
    /// the bucket; `None` when everything fits.
    pub fn cut_to_fit(&mut self) -> Option<Vec<CaOutcome>> {
        let cas = &mut self.certificate_authorities;
        if cas.len() <= MAX_OUTCOMES_IN_ANSWER {
            return None;
        }
        let rank = |o: &CaOutcome| match o.outcome {
            _ if o.is_failure() => 0,
            Outcome::Deferred { .. } => 1,
            _ => 2,
        };
        cas.sort_by_key(rank);
        let all = cas.clone();
        self.certificate_authorities_omitted = cas.len() - MAX_OUTCOMES_IN_ANSWER;
        cas.truncate(MAX_OUTCOMES_IN_ANSWER);
        Some(all)
    }

    /// Whether trying the run again soon could do more: an account not entered or an
    /// account-region not listed (not for being outside the scope), a CA deferred, or a CA
    /// that failed on the way to a service. A CA that failed for good (a FAILED report, a
    /// refused create) is recorded and alarmed, and a retry would only fail it again.
    pub fn retry_would_help(&self) -> bool {
        let accounts = (self.account_errors.iter()).any(|a| !Code::is_out_of_scope(&a.error_code));
        let cas = self
            .certificate_authorities
            .iter()
            .any(|o| match &o.outcome {
                Outcome::Deferred { .. } => true,
                Outcome::Failed { error_code, .. } => Code::is_transient(error_code),
                _ => false,
            });
        accounts || !self.region_errors.is_empty() || cas
    }

    pub fn failed(&self) -> impl Iterator<Item = &CaOutcome> {
        self.certificate_authorities
            .iter()
            .filter(|o| o.is_failure())
    }
}

/// A manual run with nothing in it (started at 1 s, finished at 2 s), for tests to fill in.
#[cfg(test)]
impl RunSummary {
    pub(crate) fn empty_for_tests() -> Self {
        Self {
            version: Default::default(),
            run_id: "r".into(),
            trigger: Trigger::Manual,
            dry_run: false,
            started_at: Timestamp::from_epoch_seconds(1),
            finished_at: Timestamp::from_epoch_seconds(2),
            accounts: vec![],
            regions: vec![],
            counts: Counts::default(),
            account_errors: vec![],
            region_errors: vec![],
            fanned_out: vec![],
            certificate_authorities: vec![],
            certificate_authorities_omitted: 0,
            outcomes_key: None,
            alerts: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outcome::SkipReason;
    use crate::domain::report::{CheckLimit, ObjectPin, ReportCheck};

    #[test]
    fn a_failed_report_counts_as_a_failed_ca() {
        let check = |status| ReportCheck {
            report_id: "r-1".into(),
            status,
            size_bytes: None,
            detail: None,
            limit: CheckLimit::None,
            contents: None,
            pin: None,
        };
        let skipped = Outcome::Skipped {
            reason: SkipReason::InsideWindow,
            detail: "d".into(),
            next_eligible_at: None,
        };
        let ca = |report| CaOutcome {
            certificate_authority_arn: "arn:x".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            outcome: skipped.clone(),
            report,
            rejected_objects: Vec::new(),
        };
        let c = RunSummary::count(&[
            ca(Some(check(ReportStatus::Failed))),
            ca(Some(check(ReportStatus::Success))),
            ca(Some(check(ReportStatus::Creating))),
            ca(None),
        ]);
        assert_eq!(c.skipped, 4);
        assert_eq!(c.failed, 1);
        assert_eq!(
            (c.reports_succeeded, c.reports_failed, c.reports_pending),
            (1, 1, 1)
        );
        let v = serde_json::to_value(ca(Some(check(ReportStatus::Failed)))).unwrap();
        assert_eq!(v["report"]["status"], "FAILED");
    }

    #[test]
    fn a_report_check_shows_its_objects_sha256_when_known() {
        // `printf 'hello' | sha256sum`.
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let mut check = ReportCheck {
            report_id: "r-1".into(),
            status: ReportStatus::Success,
            size_bytes: Some(5),
            detail: None,
            limit: CheckLimit::None,
            contents: None,
            pin: Some(ObjectPin {
                version_id: Some("v1".into()),
                checksum: Some("CRC64NVME:AAAAAAAAAAA=".into()),
                sha256: Some(hello.into()),
                ..ObjectPin::default()
            }),
        };
        let v = serde_json::to_value(&check).unwrap();
        assert_eq!(v["sizeBytes"], 5);
        assert_eq!(v["object"]["checksum"], "CRC64NVME:AAAAAAAAAAA=");
        assert_eq!(v["object"]["sha256"], hello);
        check.pin.as_mut().unwrap().sha256 = None;
        let v = serde_json::to_value(&check).unwrap();
        assert!(v["object"].get("sha256").is_none(), "{v}");
    }

    /// A manual run's summary of these outcomes and account errors.
    fn summary(cas: Vec<CaOutcome>, account_errors: Vec<AccountError>) -> RunSummary {
        RunSummary {
            counts: RunSummary::counts_of(&cas, &account_errors),
            account_errors,
            certificate_authorities: cas,
            ..RunSummary::empty_for_tests()
        }
    }

    #[test]
    fn a_retry_helps_only_where_the_way_to_a_service_failed() {
        let ca = |outcome| CaOutcome {
            certificate_authority_arn: "arn:x".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            outcome,
            report: None,
            rejected_objects: Vec::new(),
        };
        let failed = |code: &str| {
            ca(Outcome::Failed {
                error_code: code.into(),
                error_message: "m".into(),
            })
        };

        let for_good = [
            "AuditReportFailed",
            "LimitExceededException",
            "NoSuchBucket",
        ];
        let s = summary(for_good.iter().map(|c| failed(c)).collect(), vec![]);
        assert!(!s.retry_would_help(), "the same on a retry");
        for transient in ["Timeout", "InternalFailure", "LedgerWriteFailed"] {
            assert!(
                summary(vec![failed(transient)], vec![]).retry_would_help(),
                "{transient}"
            );
        }
        let deferred = ca(Outcome::Deferred { detail: "d".into() });
        assert!(summary(vec![deferred], vec![]).retry_would_help());
        let error = |code: &str| AccountError {
            account_id: "222222222222".into(),
            error_code: code.into(),
            error_message: "m".into(),
        };
        assert!(summary(vec![], vec![error("AssumeRoleFailed")]).retry_would_help());
        let outside = summary(vec![], vec![error("AccountNotAudited")]);
        assert!(!outside.retry_would_help());
    }

    #[test]
    fn a_run_too_large_for_its_answer_keeps_the_problems_and_gives_back_the_rest() {
        let ca = |i: usize, outcome| CaOutcome {
            certificate_authority_arn: format!("arn:{i:05}"),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            outcome,
            report: None,
            rejected_objects: Vec::new(),
        };
        let skipped = || Outcome::Skipped {
            reason: SkipReason::InsideWindow,
            detail: "d".into(),
            next_eligible_at: None,
        };
        let mut cas: Vec<CaOutcome> = (0..MAX_OUTCOMES_IN_ANSWER + 10)
            .map(|i| ca(i, skipped()))
            .collect();
        let last = cas.len() - 1;
        cas[last].outcome = Outcome::Failed {
            error_code: "AuditReportFailed".into(),
            error_message: "m".into(),
        };
        cas[last - 1].outcome = Outcome::Deferred { detail: "d".into() };
        let mut s = summary(cas, vec![]);
        let all = s.cut_to_fit().expect("cut");
        assert_eq!(all.len(), MAX_OUTCOMES_IN_ANSWER + 10);
        assert_eq!(s.certificate_authorities.len(), MAX_OUTCOMES_IN_ANSWER);
        assert_eq!(s.certificate_authorities_omitted, 10);
        assert!(
            s.certificate_authorities[0].is_failure(),
            "the failed first"
        );
        assert!(matches!(
            s.certificate_authorities[1].outcome,
            Outcome::Deferred { .. }
        ));
        assert_eq!(s.counts.failed, 1, "the counts are of every CA");
        assert_eq!(s.cut_to_fit(), None, "what fits is left alone");
    }
}
