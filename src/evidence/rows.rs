//! The coverage manifest's rows: one per report of the period (with the version, ETag,
//! checksum and SHA-256 its object was pinned at), then one per gap, as CSV (`csv::Writer`,
//! RFC 4180 quoting) and as the JSON manifest's `rows` (serde).

use serde::Serialize;

use super::{CaCoverage, HistoryReport};
use crate::domain::time::Timestamp;
use crate::evidence::gaps::{Gap, GapKind};

/// The CSV's header row.
pub const CSV_COLUMNS: &str = "row,account,region,ca_arn,report_id,s3_key,format,requested_at,status,size_bytes,version_id,etag,checksum,sha256,gap_kind,gap_from,gap_to,gap_detail";

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
    version_id: Option<&'a str>,
    etag: Option<&'a str>,
    checksum: Option<&'a str>,
    sha256: Option<&'a str>,
    gap_kind: Option<GapKind>,
    gap_from: Option<Timestamp>,
    gap_to: Option<Timestamp>,
    gap_detail: Option<&'a str>,
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
            version_id: None,
            etag: None,
            checksum: None,
            sha256: None,
            gap_kind: None,
            gap_from: None,
            gap_to: None,
            gap_detail: None,
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
    checksum: Option<&'a str>,
    etag: Option<&'a str>,
    format: &'a str,
    region: &'a str,
    report_id: &'a str,
    requested_at: Timestamp,
    row: &'static str,
    s3_key: &'a str,
    sha256: Option<&'a str>,
    size_bytes: Option<u64>,
    status: &'a str,
    version_id: Option<&'a str>,
}

/// A gap's row of the JSON manifest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonGapRow<'a> {
    account: &'a str,
    ca_arn: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    gap_detail: Option<&'a str>,
    gap_from: Timestamp,
    gap_kind: GapKind,
    gap_to: Timestamp,
    region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_id: Option<&'a str>,
    row: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    s3_key: Option<&'a str>,
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

pub(super) fn csv_header() -> Result<Vec<u8>, csv::Error> {
    csv_bytes(|w| w.write_record(CSV_COLUMNS.split(',')))
}

fn csv_rows<'a>(mut rows: impl Iterator<Item = CsvRow<'a>>) -> Result<Vec<u8>, csv::Error> {
    csv_bytes(|w| rows.try_for_each(|row| w.serialize(row)))
}

/// A CA's reports as CSV rows of the manifest.
pub(super) fn csv_report_rows(
    ca: &CaCoverage,
    reports: &[HistoryReport],
) -> Result<Vec<u8>, csv::Error> {
    csv_rows(reports.iter().map(|r| CsvRow {
        report_id: Some(&r.report_id),
        s3_key: Some(&r.s3_key),
        format: Some(&r.format),
        requested_at: Some(r.requested_at),
        status: Some(r.status.as_str()),
        size_bytes: r.size_bytes,
        version_id: r.pin.version_id.as_deref(),
        etag: r.pin.etag.as_deref(),
        checksum: r.pin.checksum.as_deref(),
        sha256: r.pin.sha256.as_deref(),
        ..CsvRow::of("report", ca)
    }))
}

/// A CA's gaps as CSV rows of the manifest.
pub(super) fn csv_gap_rows(ca: &CaCoverage) -> Result<Vec<u8>, csv::Error> {
    let details: Vec<Option<String>> = ca.gaps.iter().map(gap_detail).collect();
    csv_rows(ca.gaps.iter().zip(&details).map(|(g, detail)| CsvRow {
        report_id: g.report.as_ref().map(|r| r.report_id.as_str()),
        s3_key: g.report.as_ref().map(|r| r.s3_key.as_str()),
        gap_kind: Some(g.kind),
        gap_from: Some(g.from),
        gap_to: Some(g.to),
        gap_detail: detail.as_deref(),
        ..CsvRow::of("gap", ca)
    }))
}

/// What a gap row says beyond its kind and stretch: what changed of a report's object, or how
/// many FAILED reports in a row a `failedReport` gap stands for.
fn gap_detail(g: &Gap) -> Option<String> {
    match (&g.report, g.failed_reports) {
        (Some(r), _) => Some(r.change.clone()),
        (None, Some(n)) => Some(format!(
            "{n} FAILED report{} in a row",
            if n == 1 { "" } else { "s" }
        )),
        (None, None) => None,
    }
}

/// A CA's reports as rows of the JSON manifest's `rows` array.
pub(super) fn json_report_rows(
    ca: &CaCoverage,
    reports: &[HistoryReport],
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    reports
        .iter()
        .map(|r| {
            serde_json::to_vec(&JsonReportRow {
                account: &ca.account_id,
                ca_arn: &ca.certificate_authority_arn,
                checksum: r.pin.checksum.as_deref(),
                etag: r.pin.etag.as_deref(),
                format: &r.format,
                region: &ca.region,
                report_id: &r.report_id,
                requested_at: r.requested_at,
                row: "report",
                s3_key: &r.s3_key,
                sha256: r.pin.sha256.as_deref(),
                size_bytes: r.size_bytes,
                status: r.status.as_str(),
                version_id: r.pin.version_id.as_deref(),
            })
        })
        .collect()
}

/// A CA's gaps as rows of the JSON manifest's `rows` array.
pub(super) fn json_gap_rows(ca: &CaCoverage) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    ca.gaps
        .iter()
        .map(|g| {
            let report = g.report.as_ref();
            let detail = gap_detail(g);
            serde_json::to_vec(&JsonGapRow {
                account: &ca.account_id,
                ca_arn: &ca.certificate_authority_arn,
                gap_detail: detail.as_deref(),
                gap_from: g.from,
                gap_kind: g.kind,
                gap_to: g.to,
                region: &ca.region,
                report_id: report.map(|r| r.report_id.as_str()),
                row: "gap",
                s3_key: report.map(|r| r.s3_key.as_str()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report::{ObjectPin, ReportStatus};
    use crate::evidence::ReportCounts;
    use crate::evidence::gaps::Gap;

    // `printf 'hello' | sha256sum`.
    const SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

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
            gaps_omitted: 0,
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
            pin: ObjectPin {
                version_id: Some("v1".into()),
                etag: Some("\"e1\"".into()),
                checksum: Some("CRC64NVME:AAAAAAAAAAA=".into()),
                sha256: Some(SHA256.into()),
            },
        }
    }

    fn never_audited() -> Gap {
        Gap {
            kind: GapKind::NeverAudited,
            from: at("2026-07-01T00:00:00Z"),
            to: at("2026-07-04T00:00:00Z"),
            report: None,
            failed_reports: None,
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
            "row,account,region,ca_arn,report_id,s3_key,format,requested_at,status,size_bytes,version_id,etag,checksum,sha256,gap_kind,gap_from,gap_to,gap_detail"
        );
        assert_eq!(
            lines[1],
            format!(
                "report,123456789012,us-east-1,arn:a,id-2026-07-01T00:00:00Z,\"audit-report/a,b.json\",JSON,2026-07-01T00:00:00Z,SUCCESS,10,v1,\"\"\"e1\"\"\",CRC64NVME:AAAAAAAAAAA=,{SHA256},,,,"
            )
        );
        assert_eq!(
            lines[2],
            "gap,123456789012,us-east-1,arn:b,,,,,,,,,,,neverAudited,2026-07-01T00:00:00Z,2026-07-04T00:00:00Z,"
        );
        assert_eq!(lines.len(), 3);
        assert!(csv.ends_with(",\n") && !csv.contains('\r'), "{csv:?}");
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
    fn a_report_without_a_sha256_leaves_its_field_empty() {
        let mut r = report();
        r.pin.sha256 = None;
        let csv = String::from_utf8(csv_report_rows(&ca("arn:a", vec![]), &[r]).unwrap()).unwrap();
        assert!(csv.ends_with(",CRC64NVME:AAAAAAAAAAA=,,,,,\n"), "{csv:?}");
    }

    #[test]
    fn the_json_rows_keep_their_fields_and_order() {
        let a = ca("arn:a", vec![]);
        let mut r = report();
        r.size_bytes = None;
        r.pin.checksum = None;
        r.pin.sha256 = None;
        let rows = json_report_rows(&a, std::slice::from_ref(&r)).unwrap();
        assert_eq!(
            String::from_utf8(rows[0].clone()).unwrap(),
            r#"{"account":"123456789012","caArn":"arn:a","checksum":null,"etag":"\"e1\"","format":"JSON","region":"us-east-1","reportId":"id-2026-07-01T00:00:00Z","requestedAt":"2026-07-01T00:00:00Z","row":"report","s3Key":"audit-report/a,b.json","sha256":null,"sizeBytes":null,"status":"SUCCESS","versionId":"v1"}"#
        );
        r.pin.sha256 = Some(SHA256.into());
        let rows = json_report_rows(&a, &[r]).unwrap();
        let row = String::from_utf8(rows[0].clone()).unwrap();
        assert!(
            row.contains(&format!(
                r#""s3Key":"audit-report/a,b.json","sha256":"{SHA256}","sizeBytes""#
            )),
            "{row}"
        );
        let rows = json_gap_rows(&ca("arn:b", vec![never_audited()])).unwrap();
        assert_eq!(
            String::from_utf8(rows[0].clone()).unwrap(),
            r#"{"account":"123456789012","caArn":"arn:b","gapFrom":"2026-07-01T00:00:00Z","gapKind":"neverAudited","gapTo":"2026-07-04T00:00:00Z","region":"us-east-1","row":"gap"}"#
        );
    }
}
