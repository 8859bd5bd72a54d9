//! The coverage request, `{"coverage": {"from": ..., "to": ...}}`: read strictly where it
//! enters, like every other request (`request.rs`), and answered by `coverage.rs`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::ids::shorten;
use crate::domain::request::{CoverageRequest, CoverageRequestError};
use crate::domain::time::Timestamp;

const DAY: Duration = Duration::from_secs(86_400);

/// The longest instant text taken: nanoseconds, `Z`.
const INSTANT_MAX: usize = 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    coverage: RawPeriod,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct RawPeriod {
    from: String,
    to: String,
    #[serde(default)]
    verify_objects: bool,
}

/// A date (`2026-07-01`, its midnight UTC) or an RFC 3339 instant.
fn instant(field: &'static str, text: &str, end: bool) -> Result<Timestamp, CoverageRequestError> {
    let t = text.trim();
    // `YYYY-MM-DDThh:mm:ss.sssssssssZ` is 30 characters: anything longer is no instant the
    // request means, and the text goes into the manifest's key (S3 allows 1,024 bytes).
    if t.len() > INSTANT_MAX {
        return Err(CoverageRequestError::NotAnInstant {
            field,
            text: shorten(t),
        });
    }
    let date = t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-';
    let parsed = if date {
        Timestamp::parse(&format!("{t}T00:00:00Z")).map(|d| if end { d.plus(DAY) } else { d })
    } else {
        Timestamp::parse(t)
    };
    parsed.ok_or_else(|| CoverageRequestError::NotAnInstant {
        field,
        text: shorten(t),
    })
}

impl CoverageRequest {
    /// Reads the request; the period's order is checked here, its age against the history's
    /// retention by `check_retention`.
    pub fn from_value(event: Value) -> Result<Self, CoverageRequestError> {
        let raw: Raw = serde_path_to_error::deserialize(event).map_err(|e| {
            CoverageRequestError::Malformed {
                path: shorten(&e.path().to_string()),
                // serde quotes the value it refused: cut, so a field of any size cannot grow
                // the answer or the log line.
                message: shorten(&e.into_inner().to_string()),
            }
        })?;
        let from = instant("from", &raw.coverage.from, false)?;
        let to = instant("to", &raw.coverage.to, true)?;
        if from >= to {
            return Err(CoverageRequestError::OutOfOrder { from, to });
        }
        Ok(Self {
            from,
            to,
            verify_objects: raw.coverage.verify_objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn dates_take_whole_days_and_instants_are_kept() {
        let r = CoverageRequest::from_value(
            json!({"coverage": {"from": "2026-07-01", "to": "2026-09-30"}}),
        )
        .unwrap();
        assert_eq!(r.from, at("2026-07-01T00:00:00Z"));
        assert_eq!(
            r.to,
            at("2026-10-01T00:00:00Z"),
            "the `to` date is included whole"
        );
        let generated = at("2026-10-02T08:30:00Z");
        assert_eq!(
            r.manifest_stem(generated, "8f3c-run/1:x"),
            "evidence/coverage/20260701T000000Z_20261001T000000Z/20261002T083000Z_8f3c-run-1-x"
        );
        assert_ne!(
            r.manifest_stem(generated, "a"),
            r.manifest_stem(generated, "b"),
            "two requests for one period: two manifests"
        );
        let r = CoverageRequest::from_value(
            json!({"coverage": {"from": "2026-07-01T06:00:00Z", "to": "2026-07-02T06:00:00Z"}}),
        )
        .unwrap();
        assert_eq!(r.to, at("2026-07-02T06:00:00Z"));
        assert!(!r.verify_objects, "off unless asked for");
        let r = CoverageRequest::from_value(
            json!({"coverage": {"from": "2026-07-01", "to": "2026-07-02", "verifyObjects": true}}),
        )
        .unwrap();
        assert!(r.verify_objects);
    }

    #[test]
    fn bad_periods_are_refused_naming_the_field() {
        let err = |v: Value| CoverageRequest::from_value(v).unwrap_err().to_string();
        let e = err(json!({"coverage": {"from": "2026-09-30", "to": "2026-07-01"}}));
        assert!(
            e.contains("coverage.from") && e.contains("before coverage.to"),
            "{e}"
        );
        let e = err(
            json!({"coverage": {"from": "2026-07-01T12:00:00Z", "to": "2026-07-01T12:00:00Z"}}),
        );
        assert!(e.contains("must be before"), "{e}");
        assert!(
            CoverageRequest::from_value(
                json!({"coverage": {"from": "2026-07-01", "to": "2026-07-01"}})
            )
            .is_ok(),
            "one whole day"
        );
    }

    #[test]
    fn unparsable_dates_and_unknown_fields_are_refused_naming_the_field() {
        let err = |v: Value| CoverageRequest::from_value(v).unwrap_err().to_string();
        let e = err(json!({"coverage": {"from": "July 1st", "to": "2026-09-30"}}));
        assert!(e.contains("coverage.from `July 1st`"), "{e}");
        let e = err(json!({"coverage": {"from": "2026-07-01", "to": "2026-13-01"}}));
        assert!(e.contains("coverage.to"), "{e}");
        let e = err(json!({"coverage": {"from": "2026-07-01", "to": "2026-09-30", "until": 1}}));
        assert!(e.contains("until"), "{e}");
        let e =
            err(json!({"coverage": {"from": "2026-07-01", "to": "2026-09-30"}, "dryRun": true}));
        assert!(e.contains("dryRun"), "{e}");
        let e = err(json!({"coverage": {"from": "2026-07-01"}}));
        assert!(e.contains("coverage") && e.contains("to"), "{e}");
        let e = err(
            json!({"coverage": {"from": "2026-07-01", "to": "2026-07-02", "verifyObjects": "yes"}}),
        );
        assert!(e.contains("coverage.verifyObjects"), "{e}");
        let e = err(
            json!({"coverage": {"from": "2026-07-01", "to": "2026-07-02", "verify_objects": true}}),
        );
        assert!(e.contains("verify_objects"), "{e}");
    }

    #[test]
    fn a_field_of_any_size_is_refused_in_a_few_words() {
        let long = format!("2026-07-01T00:00:00.{}Z", "1".repeat(5_000));
        let e =
            CoverageRequest::from_value(json!({"coverage": {"from": long, "to": "2026-07-02"}}))
                .unwrap_err()
                .to_string();
        assert!(e.starts_with("coverage.from"), "{e}");
        assert!(e.len() < 400, "{} bytes: {e}", e.len());
        let e =
            CoverageRequest::from_value(json!({"coverage": {"from": 7, "to": "x".repeat(9_000)}}))
                .unwrap_err()
                .to_string();
        assert!(e.len() < 400, "{} bytes", e.len());
        let ok = CoverageRequest::from_value(
            json!({"coverage": {"from": "2026-07-01T00:00:00.123456789Z", "to": "2026-07-02"}}),
        );
        assert!(ok.is_ok(), "nanoseconds are an instant: {ok:?}");
    }

    #[test]
    fn a_period_beyond_the_retention_is_refused() {
        let r = CoverageRequest::from_value(
            json!({"coverage": {"from": "2026-07-01", "to": "2026-09-30"}}),
        )
        .unwrap();
        let now = at("2027-07-02T00:00:00Z");
        let hour = Duration::from_secs(3_600);
        let e = r
            .check_retention(now, 365 * DAY, hour)
            .unwrap_err()
            .to_string();
        assert!(e.contains("coverage.from") && e.contains("365 days"), "{e}");
        assert!(
            r.check_retention(at("2027-06-30T00:00:00Z"), 365 * DAY, hour)
                .is_ok()
        );
        // 2026-07-01 is 365 days before 2027-07-01: its first report may be 25 h older, and
        // that history is the TTL's to delete any time now.
        let edge = at("2027-07-01T00:00:00Z");
        let e = r
            .check_retention(edge, 365 * DAY, 25 * hour)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2026-07-02T01:00:00Z"),
            "the earliest answerable start: {e}"
        );
        assert!(
            r.check_retention(edge.minus(25 * hour), 365 * DAY, 25 * hour)
                .is_ok()
        );
        let e = r
            .check_retention(at("2026-06-30T00:00:00Z"), 365 * DAY, hour)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("coverage.from") && e.contains("not in the past"),
            "{e}"
        );
    }
}
