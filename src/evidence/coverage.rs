//! Coverage of a period: was every CA audited in every window of it? Answered from the
//! ledger's history and today's listing, without claiming or requesting anything, and written
//! as a manifest (`evidence/coverage-<from>-<to>.csv` and `.json`) into the report bucket.
//!
//! A CA's *gaps* in the period: each stretch longer than the threshold (the configured
//! interval plus the schedule's slack) without a SUCCESS report, each FAILED report, and a CA
//! with no report at all (never audited). The schedule's slack is how late after its window
//! opens a CA may be requested: one period of the schedule (`COVERAGE_SLACK_MINUTES`,
//! default 60 for the template's default `rate(1 hour)`).

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::aws::accounts;
use crate::aws::acm_pca::{self, ServiceError};
use crate::aws::ledger::{PARTITION_KEY, SORT_KEY};
use crate::aws::multipart::{EvidenceError, EvidenceObject};
use crate::domain::arn::CaArn;
use crate::domain::outcome::{AccountError, RegionError};
use crate::domain::time::Timestamp;
use crate::invocation::Invocation;
use crate::services::Services;

/// The ledger's sparse index of window items: only they carry `account_id` (written by every
/// claim), so a Scan of it reads one small item per CA the ledger knows instead of every
/// history item (a Scan of the table at 1,000 CAs × a year reads 365,000 items to find 1,000).
pub const CA_INDEX: &str = "ca-windows";
/// The index's partition key (the window item's account).
pub const CA_INDEX_KEY: &str = "account_id";

/// The index as template.yaml declares it, for the tables tests and the benchmark make.
pub fn ca_index() -> (
    aws_sdk_dynamodb::types::AttributeDefinition,
    aws_sdk_dynamodb::types::GlobalSecondaryIndex,
) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
        ProjectionType, ScalarAttributeType,
    };
    let key = |name: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .expect("name and type are set")
    };
    (
        AttributeDefinition::builder()
            .attribute_name(CA_INDEX_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set"),
        GlobalSecondaryIndex::builder()
            .index_name(CA_INDEX)
            .key_schema(key(CA_INDEX_KEY, KeyType::Hash))
            .key_schema(key(PARTITION_KEY, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .expect("name and keys are set"),
    )
}

/// History queries in flight at once: on-demand DynamoDB serves far more, this keeps one
/// invocation from taking the table's burst from a scheduled run beside it.
const QUERIES_IN_FLIGHT: usize = 16;

pub use crate::domain::request::CoverageRequest;

/// One history item, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryReport {
    pub requested_at: Timestamp,
    pub report_id: String,
    pub s3_key: String,
    pub format: String,
    /// CREATING, SUCCESS or FAILED.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GapKind {
    /// Longer than the threshold without a SUCCESS report.
    NoSuccess,
    /// A report the service could not write.
    FailedReport,
    /// No report at all in the period (nor within the threshold before it).
    NeverAudited,
}

impl GapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSuccess => "noSuccess",
            Self::FailedReport => "failedReport",
            Self::NeverAudited => "neverAudited",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    pub kind: GapKind,
    pub from: Timestamp,
    pub to: Timestamp,
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
    let mut found = Vec::new();
    if reports.is_empty() {
        if listed_now {
            found.push(Gap {
                kind: GapKind::NeverAudited,
                from,
                to: end,
            });
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
    let longer =
        |a: Timestamp, b: Timestamp| b.epoch_seconds() > a.epoch_seconds() + threshold.as_secs();
    // The stretch runs from the last SUCCESS (or the period's start) to the next one.
    let mut since = from;
    for r in reports.iter().filter(|r| r.requested_at <= end) {
        if r.status == "FAILED" && r.requested_at >= from {
            found.push(Gap {
                kind: GapKind::FailedReport,
                from: r.requested_at,
                to: r.requested_at,
            });
        }
        if r.status != "SUCCESS" {
            continue;
        }
        if r.requested_at > from && longer(since, r.requested_at) {
            found.push(Gap {
                kind: GapKind::NoSuccess,
                from: since.max(from),
                to: r.requested_at,
            });
        }
        since = r.requested_at;
    }
    if longer(since, end) {
        found.push(Gap {
            kind: GapKind::NoSuccess,
            from: since.max(from),
            to: end,
        });
    }
    found.sort_by_key(|g| (g.from, g.to));
    found
}

/// One CA's coverage, as the summary gives it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCoverage {
    pub certificate_authority_arn: String,
    pub account_id: String,
    pub region: String,
    /// Listed (and audited) now; false for a CA only the ledger knows (deleted since).
    pub listed_now: bool,
    /// `covered`, or `gaps`.
    pub coverage: &'static str,
    /// Reports requested in the period, by status.
    pub report_counts: ReportCounts,
    /// The reports themselves are in the manifest only: a year of 1,000 CAs' reports would
    /// pass Lambda's 6 MB response limit many times over.
    pub gaps: Vec<Gap>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportCounts {
    pub total: usize,
    pub success: usize,
    pub failed: usize,
    /// CREATING: not followed up yet.
    pub pending: usize,
}

impl ReportCounts {
    fn of(reports: &[HistoryReport]) -> Self {
        let n = |s: &str| reports.iter().filter(|r| r.status == s).count();
        Self {
            total: reports.len(),
            success: n("SUCCESS"),
            failed: n("FAILED"),
            pending: n("CREATING"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageCounts {
    pub certificate_authorities: usize,
    pub covered: usize,
    pub with_gaps: usize,
    pub reports: usize,
    pub gaps: usize,
    pub failed_reports: usize,
    pub never_audited: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub bucket: String,
    pub csv_key: String,
    pub json_key: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageSummary {
    pub run_id: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    /// Interval plus slack: a longer stretch without a SUCCESS report is a gap.
    pub threshold_minutes: u64,
    pub counts: CoverageCounts,
    pub manifest: Manifest,
    pub certificate_authorities: Vec<CaCoverage>,
    /// Accounts or regions whose CAs could not be listed: the answer is incomplete there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_errors: Vec<AccountError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub region_errors: Vec<RegionError>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    #[error("coverage: {0}")]
    Settings(String),
    #[error("coverage: reading the ledger: {0}")]
    Ledger(String),
    #[error(
        "coverage: the invocation's deadline came after {read} of {total} CAs' histories were read; ask for a shorter period"
    )]
    Deadline { read: usize, total: usize },
    #[error(
        "coverage: the manifest could not be written to s3://{bucket}/{key}: {code}: {message}"
    )]
    Manifest {
        bucket: String,
        key: String,
        code: String,
        message: String,
    },
}

impl CoverageSummary {
    /// One WARN line per gap, inside span `ca`, then the counts.
    pub fn log(&self) {
        let run = tracing::info_span!("coverage", run_id = %self.run_id);
        let _run = run.enter();
        for ca in &self.certificate_authorities {
            let span = tracing::info_span!("ca", ca_arn = %ca.certificate_authority_arn, region = %ca.region);
            let _ca = span.enter();
            for g in &ca.gaps {
                tracing::warn!(
                    outcome = "gap",
                    gap_kind = g.kind.as_str(),
                    gap_from = %g.from,
                    gap_to = %g.to,
                    "coverage gap: {} from {} to {}",
                    g.kind.as_str(),
                    g.from,
                    g.to
                );
            }
        }
        crate::telemetry::log_errors(&self.account_errors, &self.region_errors);
        let c = self.counts;
        tracing::info!(
            certificate_authorities = c.certificate_authorities,
            covered = c.covered,
            with_gaps = c.with_gaps,
            reports = c.reports,
            gaps = c.gaps,
            "coverage of {} to {} written to s3://{}/{}",
            self.from,
            self.to,
            self.manifest.bucket,
            self.manifest.csv_key
        );
    }

    fn count(&mut self) {
        let mut c = CoverageCounts {
            certificate_authorities: self.certificate_authorities.len(),
            ..CoverageCounts::default()
        };
        for ca in &self.certificate_authorities {
            if ca.gaps.is_empty() {
                c.covered += 1;
            } else {
                c.with_gaps += 1;
            }
            c.reports += ca.report_counts.total;
            c.gaps += ca.gaps.len();
            for g in &ca.gaps {
                match g.kind {
                    GapKind::FailedReport => c.failed_reports += 1,
                    GapKind::NeverAudited => c.never_audited += 1,
                    GapKind::NoSuccess => {}
                }
            }
        }
        self.counts = c;
    }
}

const CSV_HEADER: &str = "row,account,region,ca_arn,report_id,s3_key,format,requested_at,status,size_bytes,gap_kind,gap_from,gap_to\n";

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

fn csv_row(out: &mut String, fields: [&str; 13]) {
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&line.join(","));
    out.push('\n');
}

/// A CA's reports as CSV rows of the manifest.
fn csv_report_rows(ca: &CaCoverage, reports: &[HistoryReport]) -> String {
    let mut out = String::with_capacity(reports.len() * 270);
    for r in reports {
        let (at, size) = (
            r.requested_at.to_string(),
            r.size_bytes.map(|s| s.to_string()),
        );
        csv_row(
            &mut out,
            [
                "report",
                &ca.account_id,
                &ca.region,
                &ca.certificate_authority_arn,
                &r.report_id,
                &r.s3_key,
                &r.format,
                &at,
                &r.status,
                size.as_deref().unwrap_or(""),
                "",
                "",
                "",
            ],
        );
    }
    out
}

/// A CA's gaps as CSV rows of the manifest.
fn csv_gap_rows(ca: &CaCoverage) -> String {
    let mut out = String::new();
    for g in &ca.gaps {
        let (from, to) = (g.from.to_string(), g.to.to_string());
        csv_row(
            &mut out,
            [
                "gap",
                &ca.account_id,
                &ca.region,
                &ca.certificate_authority_arn,
                "",
                "",
                "",
                "",
                "",
                "",
                g.kind.as_str(),
                &from,
                &to,
            ],
        );
    }
    out
}

/// A CA's reports as rows of the JSON manifest's `rows` array, each on a line of its own.
fn json_report_rows(ca: &CaCoverage, reports: &[HistoryReport]) -> Vec<String> {
    reports
        .iter()
        .map(|r| {
            json_row(&serde_json::json!({
                "row": "report", "account": ca.account_id, "region": ca.region,
                "caArn": ca.certificate_authority_arn, "reportId": r.report_id, "s3Key": r.s3_key,
                "format": r.format, "requestedAt": r.requested_at, "status": r.status,
                "sizeBytes": r.size_bytes,
            }))
        })
        .collect()
}

fn json_gap_rows(ca: &CaCoverage) -> Vec<String> {
    ca.gaps
        .iter()
        .map(|g| {
            json_row(&serde_json::json!({
                "row": "gap", "account": ca.account_id, "region": ca.region,
                "caArn": ca.certificate_authority_arn, "gapKind": g.kind, "gapFrom": g.from,
                "gapTo": g.to,
            }))
        })
        .collect()
}

fn json_row(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The manifest's two objects, written while the histories are read: the rows of each CA's
/// reports as soon as its history is in (then dropped), its gaps once every CA's reports are
/// written, and last (JSON) the counts, known only then. Memory holds a part of each object
/// and the gaps, never a whole manifest.
struct ManifestWriter<'a> {
    csv: EvidenceObject<'a>,
    json: EvidenceObject<'a>,
    rows_written: bool,
}

impl<'a> ManifestWriter<'a> {
    async fn start(
        services: &'a Services,
        manifest: &Manifest,
        head: Value,
    ) -> Result<Self, CoverageError> {
        let kms_key = services.settings.report_kms_key.as_deref();
        let start = |key, content_type| {
            EvidenceObject::start(&services.s3, &manifest.bucket, key, content_type, kms_key)
        };
        let csv = start(&manifest.csv_key, "text/csv").await?;
        let json = match start(&manifest.json_key, "application/json").await {
            Ok(json) => json,
            Err(e) => {
                csv.abort().await;
                return Err(e.into());
            }
        };
        // `{...head..., "rows": [` now; `], "counts": {...}}` once the rows are written.
        let head = json_row(&head);
        let opening = format!("{},\"rows\":[", head.trim_end_matches('}'));
        let mut writer = Self {
            csv,
            json,
            rows_written: false,
        };
        let started = async {
            writer.csv.write(CSV_HEADER.as_bytes()).await?;
            writer.json.write(opening.as_bytes()).await
        };
        match started.await {
            Ok(()) => Ok(writer),
            Err(e) => {
                writer.abort().await;
                Err(e.into())
            }
        }
    }

    async fn rows(&mut self, csv: String, json: Vec<String>) -> Result<(), CoverageError> {
        self.csv.write(csv.as_bytes()).await?;
        let mut text = String::with_capacity(json.iter().map(|r| r.len() + 2).sum());
        for row in json {
            text.push_str(if self.rows_written { ",\n" } else { "\n" });
            self.rows_written = true;
            text.push_str(&row);
        }
        self.json.write(text.as_bytes()).await?;
        Ok(())
    }

    /// The gaps, the counts, and both objects completed.
    async fn finish(mut self, summary: &CoverageSummary) -> Result<(), CoverageError> {
        let written = async {
            for ca in &summary.certificate_authorities {
                self.rows(csv_gap_rows(ca), json_gap_rows(ca)).await?;
            }
            let counts = serde_json::to_string(&summary.counts).unwrap_or_default();
            let closing = format!("\n],\"counts\":{counts}}}\n");
            self.json.write(closing.as_bytes()).await?;
            Ok::<(), CoverageError>(())
        };
        if let Err(e) = written.await {
            self.abort().await;
            return Err(e);
        }
        let ManifestWriter { csv, json, .. } = self;
        match csv.finish().await {
            Ok(()) => json.finish().await.map_err(Into::into),
            Err(e) => {
                json.abort().await;
                Err(e.into())
            }
        }
    }

    async fn abort(self) {
        futures::future::join(self.csv.abort(), self.json.abort()).await;
    }
}

impl From<EvidenceError> for CoverageError {
    fn from(e: EvidenceError) -> Self {
        CoverageError::Manifest {
            bucket: e.bucket,
            key: e.key,
            code: e.error.code,
            message: e.error.message,
        }
    }
}

fn history_report(
    item: &std::collections::HashMap<String, AttributeValue>,
) -> Option<HistoryReport> {
    let text = |n: &str| item.get(n).and_then(|v| v.as_s().ok()).cloned();
    Some(HistoryReport {
        requested_at: Timestamp::parse(&text("requested_at")?)?,
        report_id: text("report_id")?,
        s3_key: text("s3_key").unwrap_or_default(),
        format: text("format").unwrap_or_default(),
        status: text("status").unwrap_or_default(),
        size_bytes: item
            .get("size_bytes")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
    })
}

/// A CA's history items from `since` to `until`, oldest first: one Query, all pages,
/// strongly consistent so a report recorded a moment ago is counted.
pub async fn history(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    arn: &str,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<HistoryReport>, String> {
    let mut pages = client
        .query()
        .table_name(table)
        .consistent_read(true)
        .key_condition_expression("#pk = :arn AND #record BETWEEN :lo AND :hi")
        .expression_attribute_names("#pk", PARTITION_KEY)
        .expression_attribute_names("#record", SORT_KEY)
        .expression_attribute_values(":arn", AttributeValue::S(arn.to_owned()))
        .expression_attribute_values(":lo", AttributeValue::S(format!("report#{since}")))
        // `$` sorts after `#`, so every report id of the last second is in.
        .expression_attribute_values(":hi", AttributeValue::S(format!("report#{until}$")))
        .into_paginator()
        .items()
        .send();
    let mut found = Vec::new();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| {
            let e = ServiceError::from_sdk(&e);
            format!("{}: {}", e.code, e.message)
        })?;
        found.extend(history_report(&item));
    }
    Ok(found)
}

/// Every CA the ledger has a window for: a Scan of the sparse index, all pages.
pub async fn ledger_cas(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<CaArn>, String> {
    let mut pages = client
        .scan()
        .table_name(table)
        .index_name(CA_INDEX)
        .into_paginator()
        .items()
        .send();
    let mut found = Vec::new();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| {
            let e = ServiceError::from_sdk(&e);
            format!("{}: {}", e.code, e.message)
        })?;
        if let Some(arn) = item.get(PARTITION_KEY).and_then(|v| v.as_s().ok()) {
            found.extend(CaArn::parse(arn).ok());
        }
    }
    Ok(found)
}

/// The CAs audited now, every audited account and configured region, as a run would list them
/// (state, exemptions and types; required tags are not read here).
async fn listed(
    services: &Services,
    invocation: &Invocation,
) -> (BTreeSet<CaArn>, Vec<AccountError>, Vec<RegionError>) {
    let settings = &services.settings;
    let home = invocation.home_account.as_deref();
    let mut found = BTreeSet::new();
    let (mut account_errors, mut region_errors) = (Vec::new(), Vec::new());
    let audited = match accounts::audited(&settings.accounts, &services.sdk, home).await {
        Ok(a) => a,
        Err(e) => return (found, vec![e], region_errors),
    };
    for account in audited {
        let sdk = match services
            .account_sdk(&account, invocation.partition.as_deref())
            .await
        {
            Ok(sdk) => sdk,
            Err(e) => {
                account_errors.push(e);
                continue;
            }
        };
        let id = account.id(home).to_owned();
        for region in &settings.regions {
            let target = services.target(&account, &id, region.as_str(), &sdk);
            match audited_in(services, &target, invocation.cutoff()).await {
                Ok(cas) => found.extend(cas),
                Err(e) => region_errors.push(RegionError {
                    account_id: id.clone(),
                    region: region.to_string(),
                    error_code: e.code,
                    error_message: e.message,
                }),
            }
        }
    }
    (found, account_errors, region_errors)
}

/// The CAs of one account-region a run would audit: state, exemptions, types, and with
/// REQUIRED_TAGS one ListTags each at the read pace (a CA whose tags cannot be read is kept:
/// better a gap to look at than a CA silently left out).
async fn audited_in(
    services: &Services,
    target: &crate::services::TargetClient,
    cutoff: tokio::time::Instant,
) -> Result<Vec<CaArn>, ServiceError> {
    let settings = &services.settings;
    let listed = acm_pca::list(&target.acm_pca).await?;
    let (candidates, _) =
        crate::domain::scope::in_scope(listed, &settings.audit_states, &settings.scope);
    let required = &settings.scope.required_tags;
    if required.is_empty() {
        return Ok(candidates);
    }
    let kept: Vec<Option<CaArn>> = futures::stream::iter(candidates)
        .map(|arn| async move {
            // Out of time to read its tags: kept, as a CA whose tags cannot be read is.
            if !target.reads.wait_turn(cutoff).await {
                return Some(arn);
            }
            match acm_pca::tags(&target.acm_pca, &arn).await {
                Ok(tags) if crate::domain::scope::tag_outcome(&tags, required).is_some() => None,
                _ => Some(arn),
            }
        })
        .buffered(4)
        .collect()
        .await;
    Ok(kept.into_iter().flatten().collect())
}

/// What a coverage request compares each CA's history with.
struct Judging<'a> {
    request: &'a CoverageRequest,
    /// The period's end, or now if it has not ended.
    end: Timestamp,
    threshold: Duration,
    listed_now: &'a BTreeSet<CaArn>,
    account_errors: &'a [AccountError],
    region_errors: &'a [RegionError],
}

impl Judging<'_> {
    /// One CA's coverage from its history (from `threshold` before the period), and its
    /// reports in the period; `None` for a CA only the ledger knows that has no report in it.
    fn judge(
        &self,
        arn: &CaArn,
        reports: &[HistoryReport],
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
        let gaps = gaps(reports, request.from, self.end, self.threshold, listed);
        let coverage = CaCoverage {
            certificate_authority_arn: arn.as_str().to_owned(),
            account_id: arn.account().to_owned(),
            region: arn.region().to_owned(),
            listed_now: self.listed_now.contains(arn),
            coverage: if gaps.is_empty() { "covered" } else { "gaps" },
            report_counts: ReportCounts::of(&in_period),
            gaps,
        };
        Some((coverage, in_period))
    }
}

/// Each CA's history from `since` to the period's end, QUERIES_IN_FLIGHT at once and taken in
/// ARN order, judged and its reports written to the manifest as it comes, then dropped; none
/// is started after `cutoff` (the invocation's deadline less its reserve).
async fn read_and_judge(
    services: &Services,
    all: BTreeSet<CaArn>,
    judging: &Judging<'_>,
    manifest: &mut ManifestWriter<'_>,
    cutoff: tokio::time::Instant,
) -> Result<Vec<CaCoverage>, CoverageError> {
    let (client, table) = (services.ledger.client(), services.ledger.table());
    let since = judging.request.from.minus(judging.threshold);
    let until = judging.end;
    let total = all.len();
    let mut reads = futures::stream::iter(all.into_iter().map(|arn| async move {
        if tokio::time::Instant::now() >= cutoff {
            return (arn, Err(None));
        }
        let h = history(client, table, arn.as_str(), since, until).await;
        (arn, h.map_err(Some))
    }))
    .buffered(QUERIES_IN_FLIGHT);
    let (mut cas, mut read) = (Vec::new(), 0);
    while let Some((arn, h)) = reads.next().await {
        let reports = match h {
            Ok(h) => h,
            Err(Some(e)) => return Err(CoverageError::Ledger(e)),
            Err(None) => return Err(CoverageError::Deadline { read, total }),
        };
        read += 1;
        if let Some((ca, in_period)) = judging.judge(&arn, &reports) {
            let rows = (
                csv_report_rows(&ca, &in_period),
                json_report_rows(&ca, &in_period),
            );
            manifest.rows(rows.0, rows.1).await?;
            cas.push(ca);
        }
    }
    Ok(cas)
}

/// Answers a coverage request: lists, reads each CA's history, computes gaps, writes the
/// manifest as it goes, returns the summary. Nothing is left in the bucket of a request that
/// fails half-way: the manifest's uploads are aborted.
pub async fn answer(
    services: &Services,
    request: &CoverageRequest,
    invocation: &Invocation,
) -> Result<CoverageSummary, CoverageError> {
    let threshold = services.settings.min_interval.duration() + services.settings.coverage_slack;
    let now = services.clock.now();
    let (listed_now, account_errors, region_errors) = listed(services, invocation).await;
    let known = ledger_cas(services.ledger.client(), services.ledger.table())
        .await
        .map_err(CoverageError::Ledger)?;
    let all: BTreeSet<CaArn> = listed_now.iter().cloned().chain(known).collect();
    let stem = request.manifest_stem();
    let mut summary = CoverageSummary {
        run_id: invocation.run_id.clone(),
        from: request.from,
        to: request.to,
        generated_at: now,
        threshold_minutes: threshold.as_secs() / 60,
        counts: CoverageCounts::default(),
        manifest: Manifest {
            bucket: services.settings.report_bucket.clone(),
            csv_key: format!("{stem}.csv"),
            json_key: format!("{stem}.json"),
        },
        certificate_authorities: Vec::new(),
        account_errors: Vec::new(),
        region_errors: Vec::new(),
    };
    let head = serde_json::json!({
        "from": summary.from, "to": summary.to, "generatedAt": summary.generated_at,
        "thresholdMinutes": summary.threshold_minutes,
    });
    let mut manifest = ManifestWriter::start(services, &summary.manifest, head).await?;
    let judging = Judging {
        request,
        end: request.to.min(now),
        threshold,
        listed_now: &listed_now,
        account_errors: &account_errors,
        region_errors: &region_errors,
    };
    let cutoff = invocation.cutoff();
    match read_and_judge(services, all, &judging, &mut manifest, cutoff).await {
        Ok(cas) => summary.certificate_authorities = cas,
        Err(e) => {
            manifest.abort().await;
            return Err(e);
        }
    }
    summary.account_errors = account_errors;
    summary.region_errors = region_errors;
    summary.count();
    manifest.finish(&summary).await?;
    Ok(summary)
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
            status: status.into(),
            size_bytes: (status == "SUCCESS").then_some(10),
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
    fn the_csv_lists_reports_then_gaps_and_quotes_what_needs_it() {
        let ca = |arn: &str, gaps| CaCoverage {
            certificate_authority_arn: arn.into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            listed_now: true,
            coverage: "gaps",
            report_counts: ReportCounts::default(),
            gaps,
        };
        let mut r = report("2026-07-01T00:00:00Z", "SUCCESS");
        r.s3_key = "audit-report/a,b.json".into();
        let g = Gap {
            kind: GapKind::NeverAudited,
            from: at("2026-07-01T00:00:00Z"),
            to: at("2026-07-04T00:00:00Z"),
        };
        // As the manifest is written: the header, each CA's reports, then every CA's gaps.
        let (a, b) = (ca("arn:a", vec![]), ca("arn:b", vec![g]));
        let csv = [
            CSV_HEADER.to_owned(),
            csv_report_rows(&a, &[r.clone()]),
            csv_report_rows(&b, &[]),
            csv_gap_rows(&a),
            csv_gap_rows(&b),
        ]
        .concat();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER.trim_end());
        assert_eq!(
            lines[1],
            "report,123456789012,us-east-1,arn:a,id-2026-07-01T00:00:00Z,\"audit-report/a,b.json\",JSON,2026-07-01T00:00:00Z,SUCCESS,10,,,"
        );
        assert_eq!(
            lines[2],
            "gap,123456789012,us-east-1,arn:b,,,,,,,neverAudited,2026-07-01T00:00:00Z,2026-07-04T00:00:00Z"
        );
        assert_eq!(lines.len(), 3);
    }
}
