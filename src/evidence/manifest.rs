//! The coverage manifest: `evidence/coverage-<from>-<to>.csv` and `.json` in the report
//! bucket, one row per report of the period, then one per gap. The CSV is written by
//! `csv::Writer` (RFC 4180 quoting), the JSON rows by serde.

use serde::Serialize;

use super::{CaCoverage, CoverageError, CoverageSummary, HistoryReport, Manifest};
use crate::aws::multipart::{EvidenceError, EvidenceObject};
use crate::domain::time::Timestamp;
use crate::evidence::gaps::GapKind;
use crate::services::Services;

/// The CSV's header row.
pub const CSV_COLUMNS: &str = "row,account,region,ca_arn,report_id,s3_key,format,requested_at,status,size_bytes,gap_kind,gap_from,gap_to";

/// One CSV row, a report's or a gap's, in the order of `CSV_COLUMNS`; `None` is an empty field.
#[derive(Serialize)]
struct CsvRow<'a> {
    row: &'static str,
    account: &'a str,
    region: &'a str,
    ca_arn: &'a str,
    report_id: Option<&'a str>,
    s3_key: Option<&'a str>,
    format: Option<&'a str>,
    requested_at: Option<Timestamp>,
    status: Option<&'a str>,
    size_bytes: Option<u64>,
    gap_kind: Option<GapKind>,
    gap_from: Option<Timestamp>,
    gap_to: Option<Timestamp>,
}

impl<'a> CsvRow<'a> {
    /// A row of the CA's with every report and gap field empty.
    fn of(row: &'static str, ca: &'a CaCoverage) -> Self {
        Self {
            row,
            account: &ca.account_id,
            region: &ca.region,
            ca_arn: &ca.certificate_authority_arn,
            report_id: None,
            s3_key: None,
            format: None,
            requested_at: None,
            status: None,
            size_bytes: None,
            gap_kind: None,
            gap_from: None,
            gap_to: None,
        }
    }
}

// The JSON rows' fields are declared in the order of their names, as the manifest has always
// listed them.

/// A report's row of the JSON manifest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReportRow<'a> {
    account: &'a str,
    ca_arn: &'a str,
    format: &'a str,
    region: &'a str,
    report_id: &'a str,
    requested_at: Timestamp,
    row: &'static str,
    s3_key: &'a str,
    size_bytes: Option<u64>,
    status: &'a str,
}

/// A gap's row of the JSON manifest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonGapRow<'a> {
    account: &'a str,
    ca_arn: &'a str,
    gap_from: Timestamp,
    gap_kind: GapKind,
    gap_to: Timestamp,
    region: &'a str,
    row: &'static str,
}

/// The JSON manifest's fields before its rows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestHead {
    pub from: Timestamp,
    pub generated_at: Timestamp,
    pub threshold_minutes: u64,
    pub to: Timestamp,
}

/// Bytes written by a `csv::Writer` (RFC 4180 quoting, `\n` after each row).
fn csv_bytes(
    write: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> Result<(), csv::Error>,
) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    write(&mut writer)?;
    writer.into_inner().map_err(|e| e.into_error().into())
}

fn csv_header() -> Result<Vec<u8>, csv::Error> {
    csv_bytes(|w| w.write_record(CSV_COLUMNS.split(',')))
}

fn csv_rows<'a>(mut rows: impl Iterator<Item = CsvRow<'a>>) -> Result<Vec<u8>, csv::Error> {
    csv_bytes(|w| rows.try_for_each(|row| w.serialize(row)))
}

/// A CA's reports as CSV rows of the manifest.
fn csv_report_rows(ca: &CaCoverage, reports: &[HistoryReport]) -> Result<Vec<u8>, csv::Error> {
    csv_rows(reports.iter().map(|r| CsvRow {
        report_id: Some(&r.report_id),
        s3_key: Some(&r.s3_key),
        format: Some(&r.format),
        requested_at: Some(r.requested_at),
        status: Some(r.status.as_str()),
        size_bytes: r.size_bytes,
        ..CsvRow::of("report", ca)
    }))
}

/// A CA's gaps as CSV rows of the manifest.
fn csv_gap_rows(ca: &CaCoverage) -> Result<Vec<u8>, csv::Error> {
    csv_rows(ca.gaps.iter().map(|g| CsvRow {
        gap_kind: Some(g.kind),
        gap_from: Some(g.from),
        gap_to: Some(g.to),
        ..CsvRow::of("gap", ca)
    }))
}

/// A CA's reports as rows of the JSON manifest's `rows` array.
fn json_report_rows(
    ca: &CaCoverage,
    reports: &[HistoryReport],
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    reports
        .iter()
        .map(|r| {
            serde_json::to_vec(&JsonReportRow {
                account: &ca.account_id,
                ca_arn: &ca.certificate_authority_arn,
                format: &r.format,
                region: &ca.region,
                report_id: &r.report_id,
                requested_at: r.requested_at,
                row: "report",
                s3_key: &r.s3_key,
                size_bytes: r.size_bytes,
                status: r.status.as_str(),
            })
        })
        .collect()
}

/// A CA's gaps as rows of the JSON manifest's `rows` array.
fn json_gap_rows(ca: &CaCoverage) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    ca.gaps
        .iter()
        .map(|g| {
            serde_json::to_vec(&JsonGapRow {
                account: &ca.account_id,
                ca_arn: &ca.certificate_authority_arn,
                gap_from: g.from,
                gap_kind: g.kind,
                gap_to: g.to,
                region: &ca.region,
                row: "gap",
            })
        })
        .collect()
}

/// The manifest's two objects, written while the histories are read: the rows of each CA's
/// reports as soon as its history is in (then dropped), its gaps once every CA's reports are
/// written, and last (JSON) the counts, known only then. Memory holds a part of each object
/// and the gaps, never a whole manifest.
pub struct ManifestWriter<'a> {
    csv: EvidenceObject<'a>,
    json: EvidenceObject<'a>,
    rows_written: bool,
}

impl<'a> ManifestWriter<'a> {
    /// Starts both uploads and writes the CSV's header and the JSON's `head` fields.
    pub async fn start(
        services: &'a Services,
        manifest: &Manifest,
        head: &ManifestHead,
    ) -> Result<Self, CoverageError> {
        // `{...head..., "rows": [` now; `], "counts": {...}}` once the rows are written.
        let mut opening = serde_json::to_vec(head)?;
        opening.pop(); // the head's closing `}`
        opening.extend_from_slice(br#","rows":["#);
        let header = csv_header()?;
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
        let mut writer = Self {
            csv,
            json,
            rows_written: false,
        };
        let started = async {
            writer.csv.write(&header).await?;
            writer.json.write(&opening).await
        };
        match started.await {
            Ok(()) => Ok(writer),
            Err(e) => {
                writer.abort().await;
                Err(e.into())
            }
        }
    }

    /// A CA's reports in the period, as rows of both objects.
    pub async fn reports(
        &mut self,
        ca: &CaCoverage,
        reports: &[HistoryReport],
    ) -> Result<(), CoverageError> {
        let (csv, json) = (
            csv_report_rows(ca, reports)?,
            json_report_rows(ca, reports)?,
        );
        self.rows(&csv, json).await
    }

    async fn rows(&mut self, csv: &[u8], json: Vec<Vec<u8>>) -> Result<(), CoverageError> {
        self.csv.write(csv).await?;
        let mut text = Vec::with_capacity(json.iter().map(|r| r.len() + 2).sum());
        for row in json {
            text.extend_from_slice(if self.rows_written { b",\n" } else { b"\n" });
            self.rows_written = true;
            text.extend_from_slice(&row);
        }
        self.json.write(&text).await?;
        Ok(())
    }

    /// The gaps, the counts, and both objects completed.
    pub async fn finish(mut self, summary: &CoverageSummary) -> Result<(), CoverageError> {
        let written = async {
            for ca in &summary.certificate_authorities {
                self.rows(&csv_gap_rows(ca)?, json_gap_rows(ca)?).await?;
            }
            let mut closing = b"\n],\"counts\":".to_vec();
            serde_json::to_writer(&mut closing, &summary.counts)?;
            closing.extend_from_slice(b"}\n");
            self.json.write(&closing).await?;
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

    /// Both uploads aborted: nothing of a request that failed half-way is left in the bucket.
    pub async fn abort(self) {
        futures::future::join(self.csv.abort(), self.json.abort()).await;
    }
}

impl From<EvidenceError> for CoverageError {
    fn from(e: EvidenceError) -> Self {
        CoverageError::Manifest {
            bucket: e.bucket,
            key: e.key,
            source: e.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report::ReportStatus;
    use crate::evidence::ReportCounts;
    use crate::evidence::gaps::Gap;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn ca(arn: &str, gaps: Vec<Gap>) -> CaCoverage {
        CaCoverage {
            certificate_authority_arn: arn.into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            listed_now: true,
            coverage: "gaps",
            report_counts: ReportCounts::default(),
            gaps,
        }
    }

    fn report() -> HistoryReport {
        HistoryReport {
            requested_at: at("2026-07-01T00:00:00Z"),
            report_id: "id-2026-07-01T00:00:00Z".into(),
            s3_key: "audit-report/a,b.json".into(),
            format: "JSON".into(),
            status: ReportStatus::Success,
            size_bytes: Some(10),
        }
    }

    fn never_audited() -> Gap {
        Gap {
            kind: GapKind::NeverAudited,
            from: at("2026-07-01T00:00:00Z"),
            to: at("2026-07-04T00:00:00Z"),
        }
    }

    #[test]
    fn the_csv_lists_reports_then_gaps_and_quotes_what_needs_it() {
        // As the manifest is written: the header, each CA's reports, then every CA's gaps.
        let (a, b) = (ca("arn:a", vec![]), ca("arn:b", vec![never_audited()]));
        let csv = [
            csv_header().unwrap(),
            csv_report_rows(&a, &[report()]).unwrap(),
            csv_report_rows(&b, &[]).unwrap(),
            csv_gap_rows(&a).unwrap(),
            csv_gap_rows(&b).unwrap(),
        ]
        .concat();
        let csv = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "row,account,region,ca_arn,report_id,s3_key,format,requested_at,status,size_bytes,gap_kind,gap_from,gap_to"
        );
        assert_eq!(
            lines[1],
            "report,123456789012,us-east-1,arn:a,id-2026-07-01T00:00:00Z,\"audit-report/a,b.json\",JSON,2026-07-01T00:00:00Z,SUCCESS,10,,,"
        );
        assert_eq!(
            lines[2],
            "gap,123456789012,us-east-1,arn:b,,,,,,,neverAudited,2026-07-01T00:00:00Z,2026-07-04T00:00:00Z"
        );
        assert_eq!(lines.len(), 3);
        assert!(csv.ends_with("Z\n") && !csv.contains('\r'), "{csv:?}");
    }

    #[test]
    fn the_csv_doubles_quotes_and_quotes_line_breaks() {
        let mut r = report();
        r.s3_key = "audit-report/say \"hi\".json".into();
        r.format = "a\nb".into();
        let csv = String::from_utf8(csv_report_rows(&ca("arn:a", vec![]), &[r]).unwrap()).unwrap();
        assert!(
            csv.contains(",\"audit-report/say \"\"hi\"\".json\",\"a\nb\","),
            "{csv:?}"
        );
    }

    #[test]
    fn the_json_rows_keep_their_fields_and_order() {
        let a = ca("arn:a", vec![]);
        let mut r = report();
        r.size_bytes = None;
        let rows = json_report_rows(&a, &[r]).unwrap();
        assert_eq!(
            String::from_utf8(rows[0].clone()).unwrap(),
            r#"{"account":"123456789012","caArn":"arn:a","format":"JSON","region":"us-east-1","reportId":"id-2026-07-01T00:00:00Z","requestedAt":"2026-07-01T00:00:00Z","row":"report","s3Key":"audit-report/a,b.json","sizeBytes":null,"status":"SUCCESS"}"#
        );
        let rows = json_gap_rows(&ca("arn:b", vec![never_audited()])).unwrap();
        assert_eq!(
            String::from_utf8(rows[0].clone()).unwrap(),
            r#"{"account":"123456789012","caArn":"arn:b","gapFrom":"2026-07-01T00:00:00Z","gapKind":"neverAudited","gapTo":"2026-07-04T00:00:00Z","region":"us-east-1","row":"gap"}"#
        );
    }
}
