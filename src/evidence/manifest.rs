//! The coverage manifest: `evidence/coverage/<from>_<to>/<generated at>_<run id>.csv` and
//! `.json` in the report bucket, one row per report of the period, then one per gap. The CSV is written by
//! `csv::Writer` (RFC 4180 quoting), the JSON rows by serde.

use serde::Serialize;

use super::rows::{csv_gap_rows, csv_header, csv_report_rows, json_gap_rows, json_report_rows};
use super::{CaCoverage, CoverageError, CoverageSummary, HistoryReport, Manifest};
use crate::aws::multipart::{EvidenceError, EvidenceObject};
use crate::domain::time::Timestamp;
use crate::domain::version::ToolVersion;
use crate::services::Services;

/// The JSON manifest's fields before its rows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestHead {
    /// The tool's version that wrote the manifest.
    pub version: ToolVersion,
    pub from: Timestamp,
    pub generated_at: Timestamp,
    pub threshold_minutes: u64,
    pub to: Timestamp,
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
