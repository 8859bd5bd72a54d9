//! What an audit report says (READ_REPORTS): how many certificates it lists, and which of them
//! the CA issued or revoked since its previous report, read as a stream so that memory does
//! not grow with the report; and the SHA-256 of the object's bytes, hashed as they stream.
//!
//! The format is the one the Private CA user guide documents ("Use audit reports with your
//! private CA", https://docs.aws.amazon.com/privateca/latest/userguide/PcaAuditReport.html):
//! JSON is one array of objects, CSV has a header row; both carry `awsAccountId`,
//! `requestedByServicePrincipal`, `certificateArn`, `serial`, `subject`, `notBefore`,
//! `notAfter`, `issuedAt`, `revokedAt`, `revocationReason`, `templateArn`, instants written
//! `2020-03-02T21:43:57+0000`. Anything else (another instant form, a missing column) is an
//! error naming the row and value: the guide shows no other form, so guessing would risk
//! counting wrong without anyone seeing it.

use std::io::{BufReader, Read};

use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::domain::ids::bounded;
use crate::domain::report::{ReadReport, ReportContents, ReportFormat, sha256_hex};
use crate::domain::time::Timestamp;

/// How many ARNs of the issued (and of the revoked) certificates are kept: enough to start
/// looking, few enough for a DynamoDB item and a log line whatever the report's size.
pub const FIRST_ARNS: usize = 5;

/// A certificate's ARN is about 150 characters (`arn:aws:acm-pca:<region>:<account>:
/// certificate-authority/<uuid>/certificate/<32 hex>`); a longer value is kept cut.
const CERTIFICATE_ARN_MAX: usize = 256;

/// The documented CSV header, in the guide's order.
pub const CSV_COLUMNS: [&str; 11] = [
    "awsAccountId",
    "requestedByServicePrincipal",
    "certificateArn",
    "serial",
    "subject",
    "notBefore",
    "notAfter",
    "issuedAt",
    "revokedAt",
    "revocationReason",
    "templateArn",
];

/// Buffer between the S3 body and the parsers: the stream is read in pieces this large.
const READ_BUFFER: usize = 64 * 1024;

// "Since" is strictly after the previous report's requested-at instant (whole seconds, the
// ledger's); with no previous report, everything counts.

#[derive(Debug, thiserror::Error)]
pub enum ContentsError {
    #[error("could not get s3://{bucket}/{key}: {code}: {message}")]
    Get {
        bucket: String,
        key: String,
        code: String,
        message: String,
    },
    #[error("could not read s3://{bucket}/{key} as a {format} audit report: {source}")]
    Parse {
        bucket: String,
        key: String,
        format: ReportFormat,
        #[source]
        source: ParseError,
    },
}

/// Why a report's body is not an audit report of the documented form, naming the row.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(
        "row {row}: {column} `{value}` is not an instant of the documented form 2020-03-02T21:43:57+0000"
    )]
    BadInstant {
        row: u64,
        column: &'static str,
        value: String,
    },
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    #[error("{0}")]
    Csv(#[source] csv::Error),
    #[error("row {row}: {source}")]
    CsvRow {
        row: u64,
        #[source]
        source: csv::Error,
    },
    #[error("the header `{header}` lacks the documented column(s) {missing}")]
    MissingColumns { header: String, missing: String },
    #[error("the reader stopped: {0}")]
    Stopped(#[source] tokio::task::JoinError),
    #[error("reading the rest of the object: {0}")]
    Rest(#[source] std::io::Error),
}

/// One row, only the fields counted. The other documented fields are not read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    certificate_arn: String,
    issued_at: String,
    #[serde(default)]
    revoked_at: Option<String>,
}

/// Adds rows one at a time; holds nothing of a row once counted.
struct Tally {
    since: Option<Timestamp>,
    contents: ReportContents,
}

impl Tally {
    fn new(since: Option<Timestamp>) -> Self {
        Self {
            since,
            contents: ReportContents::default(),
        }
    }

    fn add(&mut self, row: Row) -> Result<(), ParseError> {
        let n = self.contents.certificates + 1;
        let issued = report_instant(&row.issued_at)
            .ok_or_else(|| bad_instant(n, "issuedAt", &row.issued_at))?;
        // CSV leaves an unrevoked certificate's revokedAt empty; JSON leaves the key out.
        let revoked = match row.revoked_at.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(report_instant(t).ok_or_else(|| bad_instant(n, "revokedAt", t))?),
        };
        let c = &mut self.contents;
        c.certificates = n;
        let new = |t: Timestamp| self.since.is_none_or(|since| t > since);
        if new(issued) {
            c.issued_since += 1;
            if c.first_issued.len() < FIRST_ARNS {
                c.first_issued
                    .push(bounded(&row.certificate_arn, CERTIFICATE_ARN_MAX));
            }
        }
        if revoked.is_some_and(new) {
            c.revoked_since += 1;
            if c.first_revoked.len() < FIRST_ARNS {
                c.first_revoked
                    .push(bounded(&row.certificate_arn, CERTIFICATE_ARN_MAX));
            }
        }
        Ok(())
    }
}

fn bad_instant(row: u64, column: &'static str, value: &str) -> ParseError {
    ParseError::BadInstant {
        row,
        column,
        // The value goes into the ledger's detail: a row of any length must not push the
        // item past DynamoDB's 400 KB, which would leave the report CREATING.
        value: bounded(value, 64),
    }
}

/// `2020-03-02T21:43:57+0000`, the only form the user guide shows, and nothing else.
fn report_instant(text: &str) -> Option<Timestamp> {
    let utc = text.strip_suffix("+0000")?;
    (utc.len() == 19)
        .then(|| Timestamp::parse(&format!("{utc}Z")))
        .flatten()
}

/// A JSON report: one array, its elements counted as they are read, never collected.
pub fn read_json(r: impl Read, since: Option<Timestamp>) -> Result<ReportContents, ParseError> {
    let mut tally = Tally::new(since);
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(READ_BUFFER, r));
    Rows(&mut tally)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(ParseError::Json)?;
    Ok(tally.contents)
}

struct Rows<'a>(&'a mut Tally);

impl<'de> DeserializeSeed<'de> for Rows<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of certificates")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<Row>()? {
            self.0.add(row).map_err(A::Error::custom)?;
        }
        Ok(())
    }
}

/// A CSV report: the documented header, then one record per certificate.
pub fn read_csv(r: impl Read, since: Option<Timestamp>) -> Result<ReportContents, ParseError> {
    let mut reader = csv::ReaderBuilder::new()
        .buffer_capacity(READ_BUFFER)
        .from_reader(r);
    let header = reader.headers().map_err(ParseError::Csv)?.clone();
    let missing: Vec<&str> = CSV_COLUMNS
        .iter()
        .copied()
        .filter(|c| !header.iter().any(|h| h == *c))
        .collect();
    if !missing.is_empty() {
        return Err(ParseError::MissingColumns {
            header: bounded(&header.iter().collect::<Vec<_>>().join(","), 300),
            missing: missing.join(", "),
        });
    }
    let mut tally = Tally::new(since);
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(ParseError::Csv)? {
        let row: Row = record
            .deserialize(Some(&header))
            .map_err(|source| ParseError::CsvRow {
                row: tally.contents.certificates + 1,
                source,
            })?;
        tally.add(row)?;
    }
    Ok(tally.contents)
}

/// Passes bytes on, hashing each one on the way.
struct Hashing<R>(R, Sha256);

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }
}

/// A report parsed and hashed in one pass. What the parser leaves unread is read into the
/// hash too, so the SHA-256 is the whole object's, what `sha256sum` gives of it downloaded.
pub fn read_hashed(
    r: impl Read,
    format: ReportFormat,
    since: Option<Timestamp>,
) -> Result<ReadReport, ParseError> {
    let mut hashing = Hashing(r, Sha256::new());
    let contents = match format {
        ReportFormat::Json => read_json(&mut hashing, since),
        ReportFormat::Csv => read_csv(&mut hashing, since),
    }?;
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(ParseError::Rest)?;
    let sha256 = sha256_hex(&hashing.1.finalize());
    Ok(ReadReport { contents, sha256 })
}

/// Reads the report at `bucket`/`key` from S3, streaming: the body goes through a bounded
/// buffer to the parser on a blocking thread, so memory stays flat whatever the report's size.
pub async fn read(
    s3: &crate::aws::s3::Store,
    (bucket, key, pin): (&str, &str, Option<&crate::domain::report::ObjectPin>),
    format: ReportFormat,
    since: Option<Timestamp>,
) -> Result<ReadReport, ContentsError> {
    let object = crate::aws::s3::report_body(s3, bucket, key, pin)
        .await
        .map_err(|e| ContentsError::Get {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            code: e.code,
            message: e.message,
        })?;
    let body = tokio_util::io::SyncIoBridge::new(object.into_async_read());
    let parsed = tokio::task::spawn_blocking(move || read_hashed(body, format, since))
        .await
        .unwrap_or_else(|e| Err(ParseError::Stopped(e)));
    parsed.map_err(|source| ContentsError::Parse {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        format,
        source,
    })
}

/// How a SUCCESS report's detail starts when its contents could not be read.
pub const UNREADABLE: &str = "the report is SUCCESS but could not be read";
/// The detail of a SUCCESS report left unread: over the reading budget (READ_REPORTS_MAX_MIB,
/// READ_REPORTS_MAX_SECONDS). It is not read again.
pub const UNREAD: &str = "the report is SUCCESS but was not read";

#[cfg(test)]
mod tests {
    use super::*;

    // The user guide's sample rows (PcaAuditReport.html), shortened where the guide elides.
    const GUIDE_CSV: &str = "awsAccountId,requestedByServicePrincipal,certificateArn,serial,subject,notBefore,notAfter,issuedAt,revokedAt,revocationReason,templateArn
123456789012,,arn:aws:acm-pca:region:account:certificate-authority/CA_ID/certificate/certificate_ID,00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff,\"2.5.4.5=#012345678901,2.5.4.44=#0a1b3c4d,CN=www.example1.com,OU=Sales,O=Example Company,L=Seattle,ST=Washington,C=US\",2020-03-02T21:43:57+0000,2020-04-07T22:43:57+0000,2020-03-02T22:43:58+0000,,UNSPECIFIED,arn:aws:acm-pca:::template/EndEntityCertificate/V1
123456789012,acm.amazonaws.com,arn:aws:acm-pca:region:account:certificate-authority/CA_ID/certificate/certificate_ID2,ff:ee:dd:cc:bb:aa:99:88:77:66:55:44:33:22:11:00,\"2.5.4.5=#012345678901,CN=www.example2.com,OU=Sales,O=Example Company,L=Seattle,ST=Washington,C=US\",2020-03-02T21:45:57+0000,2020-04-07T22:45:57+0000,2020-03-02T22:45:58+0000,2020-03-02T22:46:58+0000,KEY_COMPROMISE,arn:aws:acm-pca:::template/EndEntityCertificate/V1
";

    const GUIDE_JSON: &str = r#"[{"awsAccountId":"123456789012","certificateArn":"arn:aws:acm-pca:region:account:certificate-authority/CA_ID/certificate/e8cbd2bedb122329f97706bcfec990f8","serial":"e8:cb:d2:be:db:12:23:29:f9:77:06:bc:fe:c9:90:f8","subject":"1.2.840.113549.1.9.1=#161173616c6573406578616d706c652e636f6d,,OU=Sales,O=Example Company,L=Seattle,ST=Washington,C=US","notBefore":"2018-02-26T18:39:57+0000","notAfter":"2019-02-26T19:39:57+0000","issuedAt":"2018-02-26T19:39:58+0000","revokedAt":"2018-02-26T20:00:36+0000","revocationReason":"KEY_COMPROMISE"},
{"awsAccountId":"123456789012","certificateArn":"arn:aws:acm-pca:region:account:certificate-authority/CA_ID/certificate/2bae9a75d71b42b4e41e36f8b4b488fc","serial":"2b:ae:9a:75:d7:1b:42:b4:e4:1e:36:f8:b4:b4:88:fc","subject":"1.2.840.113549.1.9.1=#161970726f64407777772e70616c6f75736573616c65732e636f6d,,OU=Sales,O=Example Company,L=Seattle,ST=Washington,C=US","notBefore":"2018-01-22T20:10:49+0000","notAfter":"2019-01-17T21:10:49+0000","issuedAt":"2018-01-22T21:10:49+0000"}]"#;

    fn at(t: &str) -> Option<Timestamp> {
        Timestamp::parse(t)
    }

    #[test]
    fn a_row_of_any_size_makes_an_error_of_a_few_words_and_arns_stay_bounded() {
        let huge = "9".repeat(1_000_000);
        let rows = format!(r#"[{{"certificateArn":"a","issuedAt":"{huge}"}}]"#);
        let e = read_json(rows.as_bytes(), None).unwrap_err().to_string();
        assert!(e.contains("issuedAt"), "{e}");
        assert!(e.len() < 300, "{} bytes", e.len());
        let arn = "x".repeat(100_000);
        let rows =
            format!(r#"[{{"certificateArn":"{arn}","issuedAt":"2020-03-02T21:43:57+0000"}}]"#);
        let c = read_json(rows.as_bytes(), None).unwrap();
        assert_eq!(c.first_issued.len(), 1);
        assert!(c.first_issued[0].len() < 300, "{}", c.first_issued[0].len());
    }

    #[test]
    fn guide_csv_rows_are_counted_with_escaped_commas_and_empty_revoked_at() {
        let c = read_csv(GUIDE_CSV.as_bytes(), None).unwrap();
        assert_eq!(c.certificates, 2);
        assert_eq!(c.issued_since, 2);
        assert_eq!(c.revoked_since, 1);
        assert!(c.first_revoked[0].ends_with("/certificate_ID2"));
        // Only the second row was issued (and revoked) after 22:44.
        let c = read_csv(GUIDE_CSV.as_bytes(), at("2020-03-02T22:44:00Z")).unwrap();
        assert_eq!((c.certificates, c.issued_since, c.revoked_since), (2, 1, 1));
        assert!(c.first_issued[0].ends_with("/certificate_ID2"));
    }

    #[test]
    fn guide_json_rows_are_counted_since_the_previous_report() {
        let c = read_json(GUIDE_JSON.as_bytes(), None).unwrap();
        assert_eq!((c.certificates, c.issued_since, c.revoked_since), (2, 2, 1));
        let c = read_json(GUIDE_JSON.as_bytes(), at("2018-02-01T00:00:00Z")).unwrap();
        assert_eq!((c.certificates, c.issued_since, c.revoked_since), (2, 1, 1));
        assert_eq!(c.first_issued, c.first_revoked);
        let c = read_json(GUIDE_JSON.as_bytes(), at("2018-03-01T00:00:00Z")).unwrap();
        assert_eq!((c.certificates, c.issued_since, c.revoked_since), (2, 0, 0));
        assert!(c.first_issued.is_empty());
    }

    #[test]
    fn an_empty_report_lists_nothing() {
        assert_eq!(
            read_json(&b"[]"[..], None).unwrap(),
            ReportContents::default()
        );
        let header = format!("{}\n", CSV_COLUMNS.join(","));
        assert_eq!(
            read_csv(header.as_bytes(), None).unwrap(),
            ReportContents::default()
        );
    }

    #[test]
    fn only_the_first_arns_are_kept() {
        let row = |i: u32| {
            format!(
                r#"{{"certificateArn":"arn:c/{i}","issuedAt":"2026-01-01T00:00:00+0000","revokedAt":"2026-01-02T00:00:00+0000"}}"#
            )
        };
        let rows: Vec<String> = (0..50).map(row).collect();
        let c = read_json(format!("[{}]", rows.join(",")).as_bytes(), None).unwrap();
        assert_eq!(
            (c.certificates, c.issued_since, c.revoked_since),
            (50, 50, 50)
        );
        assert_eq!(c.first_issued.len(), FIRST_ARNS);
        assert_eq!(c.first_revoked[0], "arn:c/0");
    }

    #[test]
    fn malformed_truncated_and_misshapen_reports_are_errors_naming_the_fault() {
        let truncated = &GUIDE_JSON[..GUIDE_JSON.len() / 2];
        assert!(
            read_json(truncated.as_bytes(), None)
                .unwrap_err()
                .to_string()
                .contains("EOF")
        );
        let err = read_json(&b"{\"not\":\"an array\"}"[..], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("an array of certificates"), "{err}");
        let err = read_json(&b"[{\"issuedAt\":\"2026-01-01T00:00:00+0000\"}]"[..], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificateArn"), "{err}");
        let other_form = GUIDE_JSON.replace("2018-01-22T21:10:49+0000", "2018-01-22T21:10:49Z");
        let err = read_json(other_form.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 2: issuedAt `2018-01-22T21:10:49Z`"),
            "{err}"
        );
        assert!(read_json(&b"[] trailing"[..], None).is_err());
    }

    #[test]
    fn csv_with_a_wrong_header_or_a_cut_row_is_an_error() {
        let wrong = GUIDE_CSV.replacen("issuedAt", "issued_at", 1);
        let err = read_csv(wrong.as_bytes(), None).unwrap_err().to_string();
        assert!(
            err.contains("lacks the documented column(s) issuedAt"),
            "{err}"
        );
        let cut = &GUIDE_CSV[..GUIDE_CSV.len() - 60];
        let err = read_csv(cut.as_bytes(), None).unwrap_err().to_string();
        assert!(err.contains("fields"), "{err}");
        let bad_time = GUIDE_CSV.replacen("2020-03-02T22:43:58+0000", "March 2nd", 1);
        let err = read_csv(bad_time.as_bytes(), None).unwrap_err().to_string();
        assert!(err.contains("row 1: issuedAt `March 2nd`"), "{err}");
    }

    #[test]
    fn a_report_read_to_its_end_has_the_sha256_sha256sum_gives() {
        // `printf '[]' | sha256sum`, and `printf '<CSV_COLUMNS joined by commas>\n' | sha256sum`.
        let read = read_hashed(&b"[]"[..], ReportFormat::Json, None).unwrap();
        assert_eq!(
            read.sha256,
            "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
        );
        assert_eq!(read.contents, ReportContents::default());
        let header = format!("{}\n", CSV_COLUMNS.join(","));
        let read = read_hashed(header.as_bytes(), ReportFormat::Csv, None).unwrap();
        assert_eq!(
            read.sha256,
            "f2c86677a9f505370bdc77de5ad1c12153406399c3d2fdcfdb45344a3303e25e"
        );
    }

    #[test]
    fn the_bytes_after_the_json_array_are_hashed_too() {
        // `printf '[]\n \n' | sha256sum`: not the digest of `[]` alone.
        let read = read_hashed(&b"[]\n \n"[..], ReportFormat::Json, None).unwrap();
        assert_eq!(
            read.sha256,
            "c4668d15907859e10a2be45f3b3348a556b03511d32929e476a2b7eaf49e2f16"
        );
        // Past the parsers' buffer: every piece is hashed once, in order, to the last byte.
        let row = r#"{"certificateArn":"arn:c","issuedAt":"2026-01-01T00:00:00+0000"}"#;
        let body = format!("[{}]\n\n", vec![row; 3_000].join(",\n"));
        assert!(body.len() > 2 * READ_BUFFER);
        let read = read_hashed(body.as_bytes(), ReportFormat::Json, None).unwrap();
        assert_eq!(read.contents.certificates, 3_000);
        assert_eq!(read.sha256, sha256_hex(&Sha256::digest(body.as_bytes())));
    }

    #[test]
    fn a_report_that_does_not_parse_has_no_sha256() {
        let cut = &GUIDE_JSON[..GUIDE_JSON.len() / 2];
        assert!(read_hashed(cut.as_bytes(), ReportFormat::Json, None).is_err());
        let read = read_hashed(GUIDE_CSV.as_bytes(), ReportFormat::Csv, None).unwrap();
        assert_eq!(read.contents.certificates, 2);
        assert_eq!(read.sha256.len(), 64);
    }

    #[test]
    fn report_instants_are_the_documented_form_only() {
        assert_eq!(
            report_instant("2020-03-02T21:43:57+0000"),
            Timestamp::parse("2020-03-02T21:43:57Z")
        );
        for other in [
            "2020-03-02T21:43:57Z",
            "2020-03-02T21:43:57+0100",
            "2020-03-02T21:43:57.5+0000",
            "",
        ] {
            assert_eq!(report_instant(other), None, "{other}");
        }
    }
}
