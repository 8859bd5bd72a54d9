//! A CA's gaps in a period, judged from its history: each stretch longer than the threshold
//! (the configured interval plus the schedule's slack) without a SUCCESS report, each FAILED
//! report, and a CA with no report at all (never audited). Pure: the history and "now" are
//! passed in.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::{CaCoverage, HistoryReport, ReportCounts};
use crate::domain::alerts::longer_than;
use crate::domain::arn::CaArn;
use crate::domain::bucket::EvidenceChange;
use crate::domain::outcome::{AccountError, RegionError};
use crate::domain::report::ReportStatus;
use crate::domain::request::CoverageRequest;
use crate::domain::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GapKind {
    /// Longer than the threshold without a SUCCESS report.
    NoSuccess,
    /// A report the service could not write.
    FailedReport,
    /// No report at all in the period (nor within the threshold before it).
    NeverAudited,
    /// A SUCCESS report whose object is no longer what the follow-up pinned (`verifyObjects`):
    /// missing, its version gone, another written over it, or its ETag or checksum changed.
    /// It covers nothing.
    EvidenceChanged,
}

impl GapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSuccess => "noSuccess",
            Self::FailedReport => "failedReport",
            Self::NeverAudited => "neverAudited",
            Self::EvidenceChanged => "evidenceChanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    pub kind: GapKind,
    pub from: Timestamp,
    pub to: Timestamp,
    /// The report an `evidenceChanged` gap is about, and what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ChangedReport>,
    /// For `failedReport`: how many FAILED reports in a row, with no SUCCESS between, the gap
    /// stands for (`from` the first, `to` the last): a month of failures is one gap, not 1,488.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_reports: Option<usize>,
}

/// A report whose object changed since it was pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedReport {
    pub report_id: String,
    pub s3_key: String,
    pub change: String,
}

impl Gap {
    fn stretch(kind: GapKind, from: Timestamp, to: Timestamp) -> Self {
        Self {
            kind,
            from,
            to,
            report: None,
            failed_reports: None,
        }
    }
}

/// A CA's gaps in `[from, end]`. `reports` (oldest first) may start up to `threshold` before
/// `from`: a SUCCESS there covers the period's start. A CA no longer listed (deleted since)
/// is judged only up to its last report: when it was deleted is not known, so the stretch
/// after is not called a gap.
pub fn gaps(
    reports: &[HistoryReport],
    from: Timestamp,
    end: Timestamp,
    threshold: Duration,
    listed_now: bool,
) -> Vec<Gap> {
    gaps_after_checks(reports, (from, end), threshold, listed_now, &HashMap::new())
}

/// `gaps`, with the SUCCESS reports whose objects changed (`changed`, by report id, from
/// `verifyObjects`) taken as covering nothing, each an `evidenceChanged` gap of its own.
pub fn gaps_after_checks(
    reports: &[HistoryReport],
    (from, end): (Timestamp, Timestamp),
    threshold: Duration,
    listed_now: bool,
    changed: &HashMap<String, EvidenceChange>,
) -> Vec<Gap> {
    let mut found = Vec::new();
    if reports.is_empty() {
        if listed_now {
            found.push(Gap::stretch(GapKind::NeverAudited, from, end));
        }
        return found;
    }
    let end = if listed_now {
        end
    } else {
        reports
            .iter()
            .map(|r| r.requested_at)
            .max()
            .map_or(end, |last| last.clamp(from, end))
    };
    // The rule a run's overdue check follows too: one home.
    let longer = |a: Timestamp, b: Timestamp| longer_than(a, b, threshold);
    // The stretch runs from the last SUCCESS (or the period's start) to the next one.
    let mut since = from;
    // The FAILED reports since the last SUCCESS: one gap (`failed_in_a_row`).
    let mut failing: Option<usize> = None;
    for r in reports.iter().filter(|r| r.requested_at <= end) {
        if r.status == ReportStatus::Failed && r.requested_at >= from {
            failed_in_a_row(&mut found, &mut failing, r.requested_at);
        }
        if r.status != ReportStatus::Success {
            continue;
        }
        failing = None;
        if let Some(change) = changed.get(&r.report_id) {
            found.push(Gap {
                report: Some(ChangedReport {
                    report_id: r.report_id.clone(),
                    s3_key: r.s3_key.clone(),
                    change: change.describe().to_owned(),
                }),
                ..Gap::stretch(GapKind::EvidenceChanged, r.requested_at, r.requested_at)
            });
            continue;
        }
        if r.requested_at > from && longer(since, r.requested_at) {
            let stretch = Gap::stretch(GapKind::NoSuccess, since.max(from), r.requested_at);
            found.push(stretch);
        }
        since = r.requested_at;
    }
    if longer(since, end) {
        found.push(Gap::stretch(GapKind::NoSuccess, since.max(from), end));
    }
    found.sort_by_key(|g| (g.from, g.to));
    found
}

/// One WARN line for a CA with gaps (not one per gap: a month of failures would be thousands):
/// how many, of which kinds, and the stretch from the first to the last.
pub fn log_gaps(ca: &CaCoverage) {
    let (Some(first), Some(last)) = (ca.gaps.first(), ca.gaps.iter().map(|g| g.to).max()) else {
        return;
    };
    let mut kinds: Vec<&str> = ca.gaps.iter().map(|g| g.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let span =
        tracing::info_span!("ca", ca_arn = %ca.certificate_authority_arn, region = %ca.region);
    let _ca = span.enter();
    tracing::warn!(
        outcome = "gap",
        gap_kind = kinds.join(","),
        gap_from = %first.from,
        gap_to = %last,
        gaps = ca.gaps.len(),
        "coverage gaps: {} ({}) from {} to {}",
        ca.gaps.len(),
        kinds.join(", "),
        first.from,
        last
    );
}

/// A FAILED report at `at`: the gap of the FAILED reports since the last SUCCESS grows to it,
/// or one begins.
fn failed_in_a_row(found: &mut Vec<Gap>, failing: &mut Option<usize>, at: Timestamp) {
    match failing.and_then(|i| found.get_mut(i)) {
        Some(gap) => {
            gap.to = at;
            *gap.failed_reports.get_or_insert(1) += 1;
        }
        None => {
            *failing = Some(found.len());
            found.push(Gap {
                failed_reports: Some(1),
                ..Gap::stretch(GapKind::FailedReport, at, at)
            });
        }
    }
}

/// What a coverage request compares each CA's history with.
pub struct Judging<'a> {
    pub request: &'a CoverageRequest,
    /// The period's end, or now if it has not ended.
    pub end: Timestamp,
    pub threshold: Duration,
    pub listed_now: &'a BTreeSet<CaArn>,
    pub account_errors: &'a [AccountError],
    pub region_errors: &'a [RegionError],
}

impl Judging<'_> {
    /// One CA's coverage from its history (from `threshold` before the period), and its
    /// reports in the period; `None` for a CA only the ledger knows that has no report in it.
    /// `changed`: the reports whose objects `verifyObjects` found changed, by report id.
    pub fn judge(
        &self,
        arn: &CaArn,
        reports: &[HistoryReport],
        changed: &HashMap<String, EvidenceChange>,
    ) -> Option<(CaCoverage, Vec<HistoryReport>)> {
        let request = self.request;
        // Where the listing failed, a CA missing from it is not taken as deleted: its
        // stretch to the period's end is judged as a listed CA's.
        let unlisted_here = self
            .account_errors
            .iter()
            .any(|e| e.account_id == arn.account() || e.account_id == "organization")
            || self
                .region_errors
                .iter()
                .any(|e| e.account_id == arn.account() && e.region == arn.region());
        let listed = self.listed_now.contains(arn) || unlisted_here;
        let in_period: Vec<HistoryReport> = reports
            .iter()
            .filter(|r| r.requested_at >= request.from && r.requested_at < request.to)
            .cloned()
            .collect();
        // A CA only the ledger knows counts when it was audited in the period.
        if !listed && in_period.is_empty() {
            return None;
        }
        let period = (request.from, self.end);
        let gaps = gaps_after_checks(reports, period, self.threshold, listed, changed);
        let coverage = CaCoverage {
            certificate_authority_arn: arn.as_str().to_owned(),
            account_id: arn.account().to_owned(),
            region: arn.region().to_owned(),
            listed_now: self.listed_now.contains(arn),
            coverage: if gaps.is_empty() { "covered" } else { "gaps" },
            report_counts: ReportCounts::of(&in_period),
            gaps,
            gaps_omitted: 0,
        };
        Some((coverage, in_period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn report(when: &str, status: &str) -> HistoryReport {
        HistoryReport {
            requested_at: at(when),
            report_id: format!("id-{when}"),
            s3_key: format!("audit-report/{when}.json"),
            format: "JSON".into(),
            status: ReportStatus::parse(status).expect("a status"),
            size_bytes: (status == "SUCCESS").then_some(10),
            pin: Default::default(),
        }
    }

    /// A period of three days, a daily interval with an hour of slack.
    fn judge(reports: &[HistoryReport], listed: bool) -> Vec<(GapKind, String, String)> {
        gaps(
            reports,
            at("2026-07-01T00:00:00Z"),
            at("2026-07-04T00:00:00Z"),
            24 * HOUR + HOUR,
            listed,
        )
        .into_iter()
        .map(|g| (g.kind, g.from.to_string(), g.to.to_string()))
        .collect()
    }

    fn gap(kind: GapKind, from: &str, to: &str) -> (GapKind, String, String) {
        (kind, from.into(), to.into())
    }

    /// Coverage and a run's overdue check give one answer for one ledger: a coverage request
    /// of the threshold up to now ends in an open `noSuccess` (or `neverAudited`) gap exactly
    /// when the run calls the CA overdue.
    #[test]
    fn coverage_to_now_ends_in_a_gap_exactly_when_the_run_calls_the_ca_overdue() {
        use crate::domain::alerts::is_overdue;
        let threshold = 24 * HOUR + HOUR;
        let now = at("2026-07-10T12:00:00Z");
        let histories: [&[(&str, &str)]; 6] = [
            &[],
            &[("2026-07-09T11:00:00Z", "SUCCESS")],
            &[("2026-07-09T10:59:59Z", "SUCCESS")],
            &[
                ("2026-07-09T12:00:00Z", "SUCCESS"),
                ("2026-07-10T11:00:00Z", "FAILED"),
            ],
            &[
                ("2026-07-08T12:00:00Z", "SUCCESS"),
                ("2026-07-10T11:00:00Z", "FAILED"),
            ],
            &[("2026-07-10T11:00:00Z", "FAILED")],
        ];
        for h in histories {
            let reports: Vec<HistoryReport> = h.iter().map(|(w, st)| report(w, st)).collect();
            let from = now.minus(threshold * 2);
            let open_gap = gaps(&reports, from, now, threshold, true).iter().any(|g| {
                g.to == now && matches!(g.kind, GapKind::NoSuccess | GapKind::NeverAudited)
            });
            let last_success = (reports.iter().rev())
                .find(|r| r.status == ReportStatus::Success)
                .map(|r| r.requested_at);
            assert_eq!(open_gap, is_overdue(last_success, now, threshold), "{h:?}");
        }
    }

    #[test]
    fn daily_successes_cover_the_period() {
        let r = [
            report("2026-06-30T23:30:00Z", "SUCCESS"),
            report("2026-07-01T23:30:00Z", "SUCCESS"),
            report("2026-07-03T00:00:00Z", "SUCCESS"),
        ];
        assert_eq!(judge(&r, true), []);
    }

    #[test]
    fn a_report_exactly_at_interval_plus_slack_is_no_gap_and_one_second_later_is() {
        let on_time = [
            report("2026-07-01T00:00:00Z", "SUCCESS"),
            report("2026-07-02T01:00:00Z", "SUCCESS"),
            report("2026-07-03T02:00:00Z", "SUCCESS"),
        ];
        assert_eq!(judge(&on_time, true), []);
        let late = [
            report("2026-07-01T00:00:00Z", "SUCCESS"),
            report("2026-07-02T01:00:01Z", "SUCCESS"),
            report("2026-07-03T02:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&late, true),
            [gap(
                GapKind::NoSuccess,
                "2026-07-01T00:00:00Z",
                "2026-07-02T01:00:01Z"
            )]
        );
    }

    #[test]
    fn the_period_start_is_covered_only_by_a_success_within_the_threshold_before_it() {
        let first_late = [
            report("2026-07-01T02:00:00Z", "SUCCESS"),
            report("2026-07-02T02:00:00Z", "SUCCESS"),
            report("2026-07-03T02:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&first_late, true),
            [],
            "two hours into the period is in time"
        );
        let none_before = [
            report("2026-07-02T02:00:00Z", "SUCCESS"),
            report("2026-07-03T02:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&none_before, true),
            [gap(
                GapKind::NoSuccess,
                "2026-07-01T00:00:00Z",
                "2026-07-02T02:00:00Z"
            )]
        );
    }

    #[test]
    fn the_stretch_to_the_period_end_is_a_gap_for_a_listed_ca() {
        let r = [
            report("2026-07-01T00:00:00Z", "SUCCESS"),
            report("2026-07-02T00:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&r, true),
            [gap(
                GapKind::NoSuccess,
                "2026-07-02T00:00:00Z",
                "2026-07-04T00:00:00Z"
            )]
        );
    }

    #[test]
    fn a_failed_report_is_a_gap_and_does_not_cover() {
        let r = [
            report("2026-07-01T00:00:00Z", "SUCCESS"),
            report("2026-07-02T00:00:00Z", "FAILED"),
            report("2026-07-02T12:00:00Z", "SUCCESS"),
            report("2026-07-03T12:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&r, true),
            [
                gap(
                    GapKind::NoSuccess,
                    "2026-07-01T00:00:00Z",
                    "2026-07-02T12:00:00Z"
                ),
                gap(
                    GapKind::FailedReport,
                    "2026-07-02T00:00:00Z",
                    "2026-07-02T00:00:00Z"
                ),
            ]
        );
    }

    #[test]
    fn a_pending_report_does_not_cover() {
        let r = [
            report("2026-07-01T00:00:00Z", "SUCCESS"),
            report("2026-07-02T00:00:00Z", "CREATING"),
            report("2026-07-03T00:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&r, true),
            [gap(
                GapKind::NoSuccess,
                "2026-07-01T00:00:00Z",
                "2026-07-03T00:00:00Z"
            )]
        );
    }

    #[test]
    fn a_listed_ca_without_reports_was_never_audited() {
        assert_eq!(
            judge(&[], true),
            [gap(
                GapKind::NeverAudited,
                "2026-07-01T00:00:00Z",
                "2026-07-04T00:00:00Z"
            )]
        );
    }

    #[test]
    fn a_ca_deleted_since_is_judged_up_to_its_last_report() {
        let r = [
            report("2026-07-01T00:00:00Z", "SUCCESS"),
            report("2026-07-02T00:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&r, false),
            [],
            "no trailing gap: when it was deleted is unknown"
        );
        let late = [
            report("2026-07-01T00:00:00Z", "SUCCESS"),
            report("2026-07-03T00:00:00Z", "SUCCESS"),
        ];
        assert_eq!(
            judge(&late, false),
            [gap(
                GapKind::NoSuccess,
                "2026-07-01T00:00:00Z",
                "2026-07-03T00:00:00Z"
            )]
        );
    }

    #[test]
    fn a_ca_the_ledger_alone_knows_counts_only_when_audited_in_the_period_or_unlisted_here() {
        let arn = CaArn::parse(
            "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555",
        )
        .unwrap();
        let request = CoverageRequest {
            from: at("2026-07-01T00:00:00Z"),
            to: at("2026-07-04T00:00:00Z"),
            verify_objects: false,
        };
        let listed_now = BTreeSet::new();
        let mut judging = Judging {
            request: &request,
            end: request.to,
            threshold: 24 * HOUR + HOUR,
            listed_now: &listed_now,
            account_errors: &[],
            region_errors: &[],
        };
        let before = [report("2026-06-30T12:00:00Z", "SUCCESS")];
        assert!(
            judging.judge(&arn, &before, &HashMap::new()).is_none(),
            "deleted before the period"
        );
        let (ca, in_period) = judging
            .judge(
                &arn,
                &[report("2026-07-01T12:00:00Z", "FAILED")],
                &HashMap::new(),
            )
            .expect("audited in the period");
        assert_eq!((ca.listed_now, ca.coverage), (false, "gaps"));
        assert_eq!((ca.report_counts.failed, in_period.len()), (1, 1));
        // Its region could not be listed: not taken as deleted, so never audited is a gap.
        let errors = [RegionError {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            error_code: "AccessDenied".into(),
            error_message: "no".into(),
        }];
        judging.region_errors = &errors;
        let (ca, _) = judging
            .judge(&arn, &[], &HashMap::new())
            .expect("judged as listed");
        assert_eq!(ca.gaps.len(), 1);
        assert_eq!(ca.gaps[0].kind, GapKind::NeverAudited);
    }

    #[test]
    fn a_report_whose_object_changed_covers_nothing() {
        let r = [
            report("2026-07-01T00:30:00Z", "SUCCESS"),
            report("2026-07-02T00:30:00Z", "SUCCESS"),
            report("2026-07-03T00:30:00Z", "SUCCESS"),
        ];
        let period = (at("2026-07-01T00:00:00Z"), at("2026-07-04T00:00:00Z"));
        let threshold = 24 * HOUR + HOUR;
        assert_eq!(
            gaps_after_checks(&r, period, threshold, true, &HashMap::new()),
            []
        );
        let changed = HashMap::from([(r[1].report_id.clone(), EvidenceChange::Overwritten)]);
        let found = gaps_after_checks(&r, period, threshold, true, &changed);
        let kinds: Vec<(GapKind, String, String)> = found
            .iter()
            .map(|g| (g.kind, g.from.to_string(), g.to.to_string()))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    GapKind::NoSuccess,
                    "2026-07-01T00:30:00Z".into(),
                    "2026-07-03T00:30:00Z".into()
                ),
                (
                    GapKind::EvidenceChanged,
                    "2026-07-02T00:30:00Z".into(),
                    "2026-07-02T00:30:00Z".into()
                ),
            ]
        );
        let named = found[1].report.as_ref().expect("the report named");
        assert_eq!(named.report_id, r[1].report_id);
        assert!(named.change.contains("written over"), "{}", named.change);
    }

    #[test]
    fn failed_reports_in_a_row_are_one_gap_with_their_count() {
        let r = [
            report("2026-07-01T00:30:00Z", "FAILED"),
            report("2026-07-01T01:30:00Z", "FAILED"),
            report("2026-07-01T02:30:00Z", "FAILED"),
            report("2026-07-01T03:30:00Z", "SUCCESS"),
            report("2026-07-02T03:00:00Z", "SUCCESS"),
            report("2026-07-03T02:30:00Z", "FAILED"),
            report("2026-07-03T03:00:00Z", "SUCCESS"),
        ];
        let period = (at("2026-07-01T00:00:00Z"), at("2026-07-04T00:00:00Z"));
        let found = gaps_after_checks(&r, period, 24 * HOUR + HOUR, true, &HashMap::new());
        let failed: Vec<(String, String, Option<usize>)> = found
            .iter()
            .filter(|g| g.kind == GapKind::FailedReport)
            .map(|g| (g.from.to_string(), g.to.to_string(), g.failed_reports))
            .collect();
        assert_eq!(
            failed,
            [
                (
                    "2026-07-01T00:30:00Z".into(),
                    "2026-07-01T02:30:00Z".into(),
                    Some(3)
                ),
                (
                    "2026-07-03T02:30:00Z".into(),
                    "2026-07-03T02:30:00Z".into(),
                    Some(1)
                ),
            ]
        );
    }
}
