//! Settings, read from the environment once at cold start and checked there.
//!
//! A missing or invalid setting stops start-up with a message naming it, so a bad deploy
//! fails on its first invocation instead of auditing the wrong thing.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::arn::is_region;
pub use crate::format::ReportFormat;
use crate::window::{AUDITABLE_STATES, Interval};

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
    /// Whose CAs are audited, and how the function reaches the other accounts.
    pub accounts: Accounts,
    pub member_role: MemberRole,
    /// Which CAs are left out whatever their state.
    pub scope: Scope,
    /// Where a run too large for one invocation sends its work items.
    pub fan_out: Option<FanOut>,
}

/// The accounts whose CAs are audited (`AUDIT_ACCOUNTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    /// The function's own account, with its own credentials.
    Own,
    /// These accounts, each through the member role.
    List(Vec<String>),
    /// Every active account of the organization, or of these OUs and roots (nested OUs too).
    Organization { units: Vec<String> },
}

/// The role the function assumes in a member account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    pub name: String,
    pub external_id: Option<String>,
}

impl MemberRole {
    pub fn arn(&self, partition: &str, account: &str) -> String {
        format!("arn:{partition}:iam::{account}:role/{}", self.name)
    }
}

/// A tag a CA must carry; a bare key accepts any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredTag {
    pub key: String,
    pub value: Option<String>,
}

/// CAs left out of the audit whatever their state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    pub exempt: BTreeSet<String>,
    pub required_tags: Vec<RequiredTag>,
    /// `ROOT`, `SUBORDINATE`: the CA types audited.
    pub types: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    pub queue_url: String,
    /// A scheduled run covering more account-regions than this sends them to the queue.
    pub threshold: usize,
}

pub const DEFAULT_MEMBER_ROLE: &str = "PcaAuditSchedulerMember";
pub const CA_TYPES: [&str; 2] = ["ROOT", "SUBORDINATE"];
pub const DEFAULT_FANOUT_THRESHOLD: usize = 8;

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `ou-<root 4-32>-<8-32>` or `r-<4-32>`, lowercase letters and digits, as Organizations shapes them.
fn is_parent_id(s: &str) -> bool {
    let part = |p: &str, min: usize| {
        (min..=32).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if let Some(rest) = s.strip_prefix("ou-") {
        matches!(rest.split_once('-'), Some((root, ou)) if part(root, 4) && part(ou, 8))
    } else if let Some(root) = s.strip_prefix("r-") {
        part(root, 4)
    } else {
        false
    }
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
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
                // Ten years: beyond that no audit cadence makes sense, and the instants
                // the ledger writes stay well inside the year 9999.
                const MAX_MINUTES: u64 = 3_660 * 24 * 60;
                if minutes > MAX_MINUTES {
                    return Err(invalid(
                        "MIN_INTERVAL_MINUTES",
                        &v,
                        format!("at most {MAX_MINUTES} minutes (ten years)"),
                    ));
                }
                let d = Duration::from_secs(minutes * 60);
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
            None => AUDITABLE_STATES.iter().map(|s| s.to_string()).collect(),
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
                    if !AUDITABLE_STATES.contains(&upper.as_str()) {
                        return Err(invalid(
                            "AUDIT_CA_STATES",
                            &v,
                            format!(
                                "AWS Private CA makes no audit report of a CA in state {upper} \
                                 (only {}: user guide, \"Understand AWS Private CA CA status\"), \
                                 so auditing it would only spend the create quota on a refusal",
                                AUDITABLE_STATES.join(" and ")
                            ),
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

        let accounts = match get("AUDIT_ACCOUNTS") {
            None => Accounts::Own,
            Some(v) if v.eq_ignore_ascii_case("ORGANIZATION") => {
                let mut units = Vec::new();
                if let Some(u) = get("AUDIT_ORGANIZATIONAL_UNITS") {
                    for id in list(&u) {
                        if !is_parent_id(id) {
                            return Err(invalid(
                                "AUDIT_ORGANIZATIONAL_UNITS",
                                &u,
                                format!("`{id}` is not an OU id (ou-...) or root id (r-...)"),
                            ));
                        }
                        if !units.iter().any(|x| x == id) {
                            units.push(id.to_owned());
                        }
                    }
                }
                Accounts::Organization { units }
            }
            Some(v) => {
                let mut ids: Vec<String> = Vec::new();
                for id in list(&v) {
                    if !is_account_id(id) {
                        return Err(invalid(
                            "AUDIT_ACCOUNTS",
                            &v,
                            format!(
                                "`{id}` is not a 12-digit account id (or give the single word ORGANIZATION)"
                            ),
                        ));
                    }
                    if !ids.iter().any(|x| x == id) {
                        ids.push(id.to_owned());
                    }
                }
                if ids.is_empty() {
                    return Err(invalid("AUDIT_ACCOUNTS", &v, "names no account".into()));
                }
                Accounts::List(ids)
            }
        };
        if get("AUDIT_ORGANIZATIONAL_UNITS").is_some()
            && !matches!(accounts, Accounts::Organization { .. })
        {
            return Err(invalid(
                "AUDIT_ORGANIZATIONAL_UNITS",
                &get("AUDIT_ORGANIZATIONAL_UNITS").unwrap_or_default(),
                "only applies with AUDIT_ACCOUNTS=ORGANIZATION".into(),
            ));
        }

        let role_name = get("MEMBER_ROLE_NAME").unwrap_or_else(|| DEFAULT_MEMBER_ROLE.into());
        if !(1..=64).contains(&role_name.len())
            || !role_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return Err(invalid(
                "MEMBER_ROLE_NAME",
                &role_name,
                "not an IAM role name (1-64 of letters, digits and +=,.@_-)".into(),
            ));
        }
        let external_id = get("MEMBER_ROLE_EXTERNAL_ID");
        let valid_external_id = |x: &str| {
            (2..=1224).contains(&x.len())
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/_-".contains(&b))
        };
        if external_id
            .as_deref()
            .is_some_and(|x| !valid_external_id(x))
        {
            // The value itself is a shared secret of sorts: not repeated in the message.
            return Err(ConfigError::Invalid {
                name: "MEMBER_ROLE_EXTERNAL_ID",
                value: "(not shown)".into(),
                reason: "must be 2-1224 of letters, digits and +=,.@:/_-".into(),
            });
        }
        let member_role = MemberRole {
            name: role_name,
            external_id,
        };

        let mut scope = Scope {
            types: CA_TYPES.iter().map(|t| t.to_string()).collect(),
            ..Scope::default()
        };
        if let Some(v) = get("EXEMPT_CA_ARNS") {
            for a in list(&v) {
                let arn = crate::arn::CaArn::parse(a).map_err(|e| {
                    invalid("EXEMPT_CA_ARNS", &v, format!("`{a}` is not a CA ARN: {e}"))
                })?;
                scope.exempt.insert(arn.to_string());
            }
        }
        if let Some(v) = get("REQUIRED_TAGS") {
            for t in list(&v) {
                let (key, value) = match t.split_once('=') {
                    Some((k, val)) => (k.trim(), Some(val.trim().to_owned())),
                    None => (t, None),
                };
                if key.is_empty()
                    || key.len() > 128
                    || value.as_ref().is_some_and(|v| v.len() > 256)
                {
                    return Err(invalid(
                        "REQUIRED_TAGS",
                        &v,
                        format!(
                            "`{t}` is not key or key=value (key 1-128, value up to 256 characters)"
                        ),
                    ));
                }
                scope.required_tags.push(RequiredTag {
                    key: key.to_owned(),
                    value,
                });
            }
        }
        if let Some(v) = get("AUDIT_CA_TYPES") {
            let mut types = BTreeSet::new();
            for t in list(&v) {
                let upper = t.to_ascii_uppercase();
                if !CA_TYPES.contains(&upper.as_str()) {
                    return Err(invalid(
                        "AUDIT_CA_TYPES",
                        &v,
                        format!("`{t}` is not a CA type (ROOT or SUBORDINATE)"),
                    ));
                }
                types.insert(upper);
            }
            if types.is_empty() {
                return Err(invalid("AUDIT_CA_TYPES", &v, "names no type".into()));
            }
            scope.types = types;
        }

        let fan_out = match get("FANOUT_QUEUE_URL") {
            None => None,
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(
                        "FANOUT_QUEUE_URL",
                        &url,
                        "not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)"
                            .into(),
                    ));
                }
                let threshold = match get("FANOUT_THRESHOLD") {
                    None => DEFAULT_FANOUT_THRESHOLD,
                    Some(v) => match v.parse::<usize>() {
                        Ok(n @ 0..=10_000) => n,
                        _ => {
                            return Err(invalid(
                                "FANOUT_THRESHOLD",
                                &v,
                                "must be a whole number of account-regions from 0 (always) to 10000".into(),
                            ));
                        }
                    },
                };
                Some(FanOut {
                    queue_url: url,
                    threshold,
                })
            }
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
            accounts,
            member_role,
            scope,
            fan_out,
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
            vec!["ACTIVE", "DISABLED"]
        );
        assert_eq!(s.max_concurrency, 8);
    }

    #[test]
    fn states_the_service_cannot_audit_are_refused_with_why() {
        for state in ["EXPIRED", "expired", "PENDING_CERTIFICATE", "DELETED"] {
            let mut pairs = BASE.to_vec();
            let value = format!("ACTIVE,{state}");
            pairs.push(("AUDIT_CA_STATES", &value));
            let err = settings(&pairs).expect_err(state).to_string();
            assert!(err.contains("AUDIT_CA_STATES"), "{err}");
            assert!(
                err.contains(&format!(
                    "no audit report of a CA in state {}",
                    state.to_uppercase()
                )),
                "{err}"
            );
            assert!(err.contains("only ACTIVE and DISABLED"), "{err}");
        }
        let mut pairs = BASE.to_vec();
        pairs.push(("AUDIT_CA_STATES", "DISABLED"));
        assert_eq!(
            settings(&pairs)
                .unwrap()
                .audit_states
                .iter()
                .collect::<Vec<_>>(),
            vec!["DISABLED"]
        );
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
            ("AUDIT_ACCOUNTS", "123456789012,12345"),
            ("AUDIT_ACCOUNTS", " , "),
            ("AUDIT_ORGANIZATIONAL_UNITS", "ou-abcd-12345678"),
            ("MEMBER_ROLE_NAME", "role/with/slashes"),
            ("EXEMPT_CA_ARNS", "arn:aws:s3:::bucket"),
            ("REQUIRED_TAGS", "=value"),
            ("AUDIT_CA_TYPES", "ROOT,INTERMEDIATE"),
            ("FANOUT_QUEUE_URL", "my-queue"),
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
    fn accounts_scope_and_fan_out_are_read() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.accounts, Accounts::Own);
        assert_eq!(s.member_role.name, DEFAULT_MEMBER_ROLE);
        assert_eq!(s.scope.types.len(), 2);
        assert_eq!(s.fan_out, None);

        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("AUDIT_ACCOUNTS", "ORGANIZATION"),
            ("AUDIT_ORGANIZATIONAL_UNITS", "ou-ab12-abcdefgh, r-ab12"),
            ("MEMBER_ROLE_EXTERNAL_ID", "s3cr3t-id"),
            ("REQUIRED_TAGS", "audit=yes, owner"),
            ("AUDIT_CA_TYPES", "subordinate"),
            (
                "FANOUT_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/work",
            ),
            ("FANOUT_THRESHOLD", "4"),
        ]);
        let s = settings(&pairs).unwrap();
        assert_eq!(
            s.accounts,
            Accounts::Organization {
                units: vec!["ou-ab12-abcdefgh".into(), "r-ab12".into()]
            }
        );
        assert_eq!(s.member_role.external_id.as_deref(), Some("s3cr3t-id"));
        assert_eq!(
            s.scope.required_tags,
            vec![
                RequiredTag {
                    key: "audit".into(),
                    value: Some("yes".into())
                },
                RequiredTag {
                    key: "owner".into(),
                    value: None
                },
            ]
        );
        assert_eq!(
            s.scope.types.iter().collect::<Vec<_>>(),
            vec!["SUBORDINATE"]
        );
        assert_eq!(s.fan_out.unwrap().threshold, 4);

        let mut pairs = BASE.to_vec();
        pairs.push(("AUDIT_ACCOUNTS", "111111111111,222222222222,111111111111"));
        assert_eq!(
            settings(&pairs).unwrap().accounts,
            Accounts::List(vec!["111111111111".into(), "222222222222".into()])
        );
    }

    #[test]
    fn an_invalid_external_id_is_named_but_not_shown() {
        let mut pairs = BASE.to_vec();
        pairs.push(("MEMBER_ROLE_EXTERNAL_ID", "x"));
        let err = settings(&pairs).unwrap_err().to_string();
        assert!(err.contains("MEMBER_ROLE_EXTERNAL_ID"), "{err}");
        assert!(!err.contains("\"x\""), "{err}");
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
