//! Settings, read from the environment once at cold start and checked there.
//!
//! A missing or invalid setting stops start-up with a message naming it, so a bad deploy
//! fails on its first invocation instead of auditing the wrong thing.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arn::is_region;

/// The service's own limit: one audit report per CA every 30 minutes.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("setting {name} is missing: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("setting {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Audit report file format, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReportFormat {
    #[default]
    Json,
    Csv,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Csv => "CSV",
        }
    }
}

impl FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "JSON" => Ok(Self::Json),
            "CSV" => Ok(Self::Csv),
            _ => Err("must be JSON or CSV".into()),
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The time between two reports of one CA; never shorter than the service allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(Duration);

impl Interval {
    pub fn new(d: Duration) -> Result<Self, String> {
        if d < SERVICE_WINDOW {
            Err(format!(
                "{} minutes is below the service's one report per CA every 30 minutes",
                d.as_secs() / 60
            ))
        } else {
            Ok(Self(d))
        }
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

impl Default for Interval {
    fn default() -> Self {
        Self(SERVICE_WINDOW)
    }
}

/// The CA states ListCertificateAuthorities reports.
pub const CA_STATES: [&str; 7] = [
    "CREATING",
    "PENDING_CERTIFICATE",
    "ACTIVE",
    "DELETED",
    "DISABLED",
    "EXPIRED",
    "FAILED",
];

/// States a report can be made for (AWS_FACTS.md: ACTIVE and DISABLED documented, EXPIRED assumed).
const DEFAULT_STATES: [&str; 3] = ["ACTIVE", "DISABLED", "EXPIRED"];

/// Bucket names as S3 allows them (3–63 of lowercase letters, digits, dots and hyphens).
pub fn is_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub ledger_table: String,
    pub report_bucket: String,
    pub report_format: ReportFormat,
    pub min_interval: Interval,
    /// Regions whose CAs are audited, in the order given.
    pub regions: Vec<String>,
    pub audit_states: BTreeSet<String>,
    pub history_retention: Duration,
    /// CAs handled at once per region; creates are paced separately.
    pub max_concurrency: usize,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get`, so tests can pass a map instead of the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let invalid = |name: &'static str, value: &str, reason: String| ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason,
        };

        let ledger_table = get("LEDGER_TABLE").ok_or(ConfigError::Missing {
            name: "LEDGER_TABLE",
            hint: "the DynamoDB table that holds each CA's window and report history",
        })?;
        if !(3..=255).contains(&ledger_table.len())
            || !ledger_table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(invalid(
                "LEDGER_TABLE",
                &ledger_table,
                "not a DynamoDB table name (3-255 of a-z, A-Z, 0-9, _ - .)".into(),
            ));
        }

        let report_bucket = get("REPORT_BUCKET").ok_or(ConfigError::Missing {
            name: "REPORT_BUCKET",
            hint: "the S3 bucket the audit reports are written to",
        })?;
        if !is_bucket_name(&report_bucket) {
            return Err(invalid(
                "REPORT_BUCKET",
                &report_bucket,
                "not an S3 bucket name (3-63 of a-z, 0-9, . and -)".into(),
            ));
        }

        let report_format = match get("REPORT_FORMAT") {
            None => ReportFormat::default(),
            Some(v) => v.parse().map_err(|e| invalid("REPORT_FORMAT", &v, e))?,
        };

        let min_interval = match get("MIN_INTERVAL_MINUTES") {
            None => Interval::default(),
            Some(v) => {
                let minutes: u64 = v.parse().map_err(|_| {
                    invalid(
                        "MIN_INTERVAL_MINUTES",
                        &v,
                        "not a whole number of minutes".into(),
                    )
                })?;
                let d = Duration::from_secs(minutes.saturating_mul(60));
                Interval::new(d).map_err(|e| invalid("MIN_INTERVAL_MINUTES", &v, e))?
            }
        };

        let regions = match get("AUDIT_REGIONS") {
            Some(v) => {
                let mut regions: Vec<String> = Vec::new();
                for r in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    if !is_region(r) {
                        return Err(invalid(
                            "AUDIT_REGIONS",
                            &v,
                            format!("`{r}` is not a region name"),
                        ));
                    }
                    if !regions.iter().any(|x| x == r) {
                        regions.push(r.to_owned());
                    }
                }
                if regions.is_empty() {
                    return Err(invalid("AUDIT_REGIONS", &v, "names no region".into()));
                }
                regions
            }
            // The function's own region, which Lambda always sets.
            None => match get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
                Some(r) if is_region(&r) => vec![r],
                Some(r) => return Err(invalid("AWS_REGION", &r, "not a region name".into())),
                None => {
                    return Err(ConfigError::Missing {
                        name: "AUDIT_REGIONS",
                        hint: "set it, or AWS_REGION, to the regions whose CAs are audited",
                    });
                }
            },
        };

        let audit_states = match get("AUDIT_CA_STATES") {
            None => DEFAULT_STATES.iter().map(|s| s.to_string()).collect(),
            Some(v) => {
                let mut states = BTreeSet::new();
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let upper = s.to_ascii_uppercase();
                    if !CA_STATES.contains(&upper.as_str()) {
                        return Err(invalid(
                            "AUDIT_CA_STATES",
                            &v,
                            format!("`{s}` is not a CA state (one of {})", CA_STATES.join(", ")),
                        ));
                    }
                    states.insert(upper);
                }
                if states.is_empty() {
                    return Err(invalid("AUDIT_CA_STATES", &v, "names no state".into()));
                }
                states
            }
        };

        let history_retention = match get("HISTORY_RETENTION_DAYS") {
            None => Duration::from_secs(400 * 86_400),
            Some(v) => match v.parse::<u64>() {
                Ok(days @ 1..=36_500) => Duration::from_secs(days * 86_400),
                _ => {
                    return Err(invalid(
                        "HISTORY_RETENTION_DAYS",
                        &v,
                        "must be a whole number of days from 1 to 36500".into(),
                    ));
                }
            },
        };

        let max_concurrency = match get("MAX_CONCURRENCY") {
            None => 8,
            Some(v) => match v.parse::<usize>() {
                Ok(n @ 1..=64) => n,
                _ => {
                    return Err(invalid(
                        "MAX_CONCURRENCY",
                        &v,
                        "must be a whole number from 1 to 64".into(),
                    ));
                }
            },
        };

        Ok(Self {
            ledger_table,
            report_bucket,
            report_format,
            min_interval,
            regions,
            audit_states,
            history_retention,
            max_concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("LEDGER_TABLE", "audit-ledger"),
        ("REPORT_BUCKET", "evidence-bucket"),
        ("AWS_REGION", "eu-west-1"),
    ];

    #[test]
    fn defaults_follow_the_service() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.report_format, ReportFormat::Json);
        assert_eq!(s.min_interval.duration(), Duration::from_secs(1800));
        assert_eq!(s.regions, vec!["eu-west-1"]);
        assert_eq!(
            s.audit_states.iter().cloned().collect::<Vec<_>>(),
            vec!["ACTIVE", "DISABLED", "EXPIRED"]
        );
        assert_eq!(s.max_concurrency, 8);
    }

    #[test]
    fn missing_table_is_named() {
        let err = settings(&[("REPORT_BUCKET", "b-b-b"), ("AWS_REGION", "eu-west-1")]).unwrap_err();
        assert!(err.to_string().contains("LEDGER_TABLE"), "{err}");
        let err = settings(&[("LEDGER_TABLE", "t-t"), ("AWS_REGION", "eu-west-1")]).unwrap_err();
        assert!(err.to_string().contains("REPORT_BUCKET"), "{err}");
    }

    #[test]
    fn interval_below_the_service_window_is_refused() {
        let mut pairs = BASE.to_vec();
        pairs.push(("MIN_INTERVAL_MINUTES", "29"));
        let err = settings(&pairs).unwrap_err();
        assert!(err.to_string().contains("MIN_INTERVAL_MINUTES"), "{err}");
        assert!(err.to_string().contains("30 minutes"), "{err}");
        pairs.pop();
        pairs.push(("MIN_INTERVAL_MINUTES", "60"));
        assert_eq!(
            settings(&pairs).unwrap().min_interval.duration(),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn each_invalid_setting_names_itself() {
        for (name, value) in [
            ("REPORT_FORMAT", "XML"),
            ("MIN_INTERVAL_MINUTES", "half an hour"),
            ("AUDIT_REGIONS", "eu-west-1,atlantis"),
            ("AUDIT_REGIONS", " , "),
            ("AUDIT_CA_STATES", "ACTIVE,SLEEPING"),
            ("HISTORY_RETENTION_DAYS", "0"),
            ("MAX_CONCURRENCY", "1000"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((name, value));
            let err = settings(&pairs).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = settings(&[
            ("LEDGER_TABLE", "t-t"),
            ("REPORT_BUCKET", "Bad_Bucket"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("REPORT_BUCKET"));
    }

    #[test]
    fn regions_are_deduplicated_in_order() {
        let mut pairs = BASE.to_vec();
        pairs.push(("AUDIT_REGIONS", "us-east-1, eu-west-1,us-east-1"));
        assert_eq!(
            settings(&pairs).unwrap().regions,
            vec!["us-east-1", "eu-west-1"]
        );
    }
}
