//! Settings, read from the environment once at cold start and checked there.
//!
//! A missing or invalid setting stops start-up with a message naming it, so a bad deploy
//! fails on its first invocation instead of auditing the wrong thing.

use aws_sdk_acmpca::types::{CertificateAuthorityStatus, CertificateAuthorityType};
use std::collections::BTreeSet;
use std::time::Duration;

use crate::domain::ids::{AccountId, Region};
pub use crate::domain::ids::{Accounts, MemberRole};
pub use crate::domain::report::ReportFormat;
pub use crate::domain::scope::{RequiredTag, Scope};
use crate::domain::window::{AUDITABLE_STATES, Interval};

mod checks;
mod lookup;

use checks::*;
use lookup::{Lookup, invalid};

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
        reason: checks::Reason,
    },
}

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
    pub regions: Vec<Region>,
    pub audit_states: BTreeSet<CertificateAuthorityStatus>,
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
    /// Read each SUCCESS report and count what it lists (needs s3:GetObject on the reports).
    pub read_reports: bool,
    /// The budget of reading one report (READ_REPORTS): a larger report, or one whose reading
    /// takes longer, stays SUCCESS unread, with a detail saying why, and is not read again.
    pub read_budget: ReadBudget,
    /// How late after its window opens a CA may be requested: one period of the schedule.
    /// A coverage request calls a longer stretch than the interval plus this a gap.
    pub coverage_slack: Duration,
    /// The stack's own SSE-KMS key of the report bucket, with which the function encrypts
    /// the evidence it writes itself (the coverage manifests); unset, the bucket's default.
    pub report_kms_key: Option<String>,
    /// The account that must own the report bucket: every S3 call names it (S3's bucket owner
    /// condition), so a mistyped or re-created bucket of someone else is refused, not written
    /// to. Unset: the function's own account.
    pub report_bucket_owner: Option<String>,
    /// `EVENT_BUS`: where a run's events go; unset, the default bus; set empty, nowhere.
    pub event_bus: Option<String>,
    /// `SECURITY_HUB_FINDINGS` (true or false, default false): each failed or overdue CA a
    /// Security Hub finding of the function's own account, resolved when it is audited again.
    pub security_hub_findings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBudget {
    /// `READ_REPORTS_MAX_MIB`, default 256.
    pub max_bytes: u64,
    /// `READ_REPORTS_MAX_SECONDS`, default 60.
    pub max_time: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    pub queue_url: String,
    /// A scheduled run covering more account-regions than this sends them to the queue.
    pub threshold: usize,
}

pub const DEFAULT_MEMBER_ROLE: &str = "PcaAuditSchedulerMember";
pub const DEFAULT_FANOUT_THRESHOLD: usize = 8;

impl Settings {
    /// Interval plus slack: a longer stretch without a SUCCESS report is a coverage gap, and a
    /// CA in one now is overdue.
    pub fn coverage_threshold(&self) -> Duration {
        self.min_interval.duration() + self.coverage_slack
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `get`, one line a setting; the first invalid or missing
    /// one is the error, naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let l = Lookup(get);
        let days = |d: u64| Duration::from_secs(d * 86_400);
        Ok(Self {
            ledger_table: l.required("LEDGER_TABLE", LEDGER_HINT, table_name)?,
            report_bucket: l.required("REPORT_BUCKET", BUCKET_HINT, bucket_name)?,
            report_format: l.parsed("REPORT_FORMAT", ReportFormat::default(), |v| {
                v.parse().map_err(Reason::from)
            })?,
            min_interval: l.parsed(
                "MIN_INTERVAL_MINUTES",
                Interval::default(),
                interval_minutes,
            )?,
            regions: regions(&l)?,
            audit_states: l
                .list("AUDIT_CA_STATES", Some("state"), auditable_state)?
                .map_or_else(
                    || AUDITABLE_STATES.iter().cloned().collect(),
                    BTreeSet::from_iter,
                ),
            history_retention: l
                .parsed(
                    "HISTORY_RETENTION_DAYS",
                    400,
                    whole_in(1..=36_500, RETENTION),
                )
                .map(days)?,
            max_concurrency: l.parsed("MAX_CONCURRENCY", 8, whole_in(1..=64, CONCURRENCY))?
                as usize,
            accounts: accounts(&l)?,
            member_role: member_role(&l)?,
            scope: scope(&l)?,
            fan_out: fan_out(&l)?,
            read_reports: l.parsed("READ_REPORTS", false, boolean)?,
            read_budget: ReadBudget {
                max_bytes: l.parsed("READ_REPORTS_MAX_MIB", 256, whole_in(1..=10_240, MIB))?
                    * 1_048_576,
                max_time: l
                    .parsed(
                        "READ_REPORTS_MAX_SECONDS",
                        60,
                        whole_in(1..=600, READ_SECONDS),
                    )
                    .map(Duration::from_secs)?,
            },
            coverage_slack: l
                .parsed("COVERAGE_SLACK_MINUTES", 60, whole_in(0..=10_080, SLACK))
                .map(|m| Duration::from_secs(m * 60))?,
            report_kms_key: l.optional("REPORT_KMS_KEY_ARN", kms_key_arn)?,
            report_bucket_owner: l
                .optional("REPORT_BUCKET_OWNER", |v| {
                    AccountId::parse(v).map_err(|e| Reason(e.to_string()))
                })?
                .map(|a| a.as_str().to_owned()),
            event_bus: event_bus((l.0)("EVENT_BUS"))?,
            security_hub_findings: l.parsed("SECURITY_HUB_FINDINGS", false, boolean)?,
        })
    }
}

const LEDGER_HINT: &str = "the DynamoDB table that holds each CA's window and report history";
const BUCKET_HINT: &str = "the S3 bucket the audit reports are written to";
const RETENTION: &str = "must be a whole number of days from 1 to 36500";
const CONCURRENCY: &str = "must be a whole number from 1 to 64";
const MIB: &str = "must be a whole number of MiB from 1 to 10240";
const READ_SECONDS: &str = "must be a whole number of seconds from 1 to 600";
// The template's default schedule, `rate(1 hour)`, is 60; a week at most.
const SLACK: &str = "must be a whole number of minutes from 0 to 10080 (a week)";

/// `AUDIT_REGIONS`, or the function's own region, which Lambda always sets.
fn regions(l: &Lookup<impl Fn(&str) -> Option<String>>) -> Result<Vec<Region>, ConfigError> {
    if let Some(regions) = l.list("AUDIT_REGIONS", Some("region"), region)? {
        return Ok(regions);
    }
    match l.get("AWS_REGION").or_else(|| l.get("AWS_DEFAULT_REGION")) {
        Some(r) => Region::parse(&r)
            .map(|r| vec![r])
            .map_err(|_| invalid("AWS_REGION", &r, "not a region name".into())),
        None => Err(ConfigError::Missing {
            name: "AUDIT_REGIONS",
            hint: "set it, or AWS_REGION, to the regions whose CAs are audited",
        }),
    }
}

/// `AUDIT_ACCOUNTS`, and `AUDIT_ORGANIZATIONAL_UNITS`, which only goes with `ORGANIZATION`.
fn accounts(l: &Lookup<impl Fn(&str) -> Option<String>>) -> Result<Accounts, ConfigError> {
    let organization = l
        .get("AUDIT_ACCOUNTS")
        .is_some_and(|v| v.eq_ignore_ascii_case("ORGANIZATION"));
    if organization {
        let units = l.list("AUDIT_ORGANIZATIONAL_UNITS", None, parent_id)?;
        return Ok(Accounts::Organization {
            units: units.unwrap_or_default(),
        });
    }
    if let Some(units) = l.get("AUDIT_ORGANIZATIONAL_UNITS") {
        return Err(invalid(
            "AUDIT_ORGANIZATIONAL_UNITS",
            &units,
            "only applies with AUDIT_ACCOUNTS=ORGANIZATION".into(),
        ));
    }
    Ok(l.list("AUDIT_ACCOUNTS", Some("account"), account_id)?
        .map_or(Accounts::Own, Accounts::List))
}

fn member_role(l: &Lookup<impl Fn(&str) -> Option<String>>) -> Result<MemberRole, ConfigError> {
    let name = l
        .get("MEMBER_ROLE_NAME")
        .unwrap_or_else(|| DEFAULT_MEMBER_ROLE.into());
    role_name(&name).map_err(|reason| invalid("MEMBER_ROLE_NAME", &name, reason))?;
    let external_id = l.get("MEMBER_ROLE_EXTERNAL_ID");
    let valid = |x: &str| {
        (2..=1224).contains(&x.len())
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/_-".contains(&b))
    };
    if external_id.as_deref().is_some_and(|x| !valid(x)) {
        // The value itself is a shared secret of sorts: not repeated in the message.
        return Err(ConfigError::Invalid {
            name: "MEMBER_ROLE_EXTERNAL_ID",
            value: "(not shown)".into(),
            reason: "must be 2-1224 of letters, digits and +=,.@:/_-".into(),
        });
    }
    Ok(MemberRole { name, external_id })
}

fn scope(l: &Lookup<impl Fn(&str) -> Option<String>>) -> Result<Scope, ConfigError> {
    Ok(Scope {
        exempt: l
            .list("EXEMPT_CA_ARNS", None, exempt_arn)?
            .unwrap_or_default()
            .into_iter()
            .collect(),
        required_tags: l
            .list("REQUIRED_TAGS", None, required_tag)?
            .unwrap_or_default(),
        types: l
            .list("AUDIT_CA_TYPES", Some("type"), ca_type)?
            .map_or_else(
                || {
                    [
                        CertificateAuthorityType::Root,
                        CertificateAuthorityType::Subordinate,
                    ]
                    .into()
                },
                BTreeSet::from_iter,
            ),
    })
}

fn fan_out(l: &Lookup<impl Fn(&str) -> Option<String>>) -> Result<Option<FanOut>, ConfigError> {
    let Some(url) = l.get("FANOUT_QUEUE_URL") else {
        return Ok(None);
    };
    queue_url(&url).map_err(|reason| invalid("FANOUT_QUEUE_URL", &url, reason))?;
    let threshold = l.parsed(
        "FANOUT_THRESHOLD",
        DEFAULT_FANOUT_THRESHOLD as u64,
        whole_in(
            0..=10_000,
            "must be a whole number of account-regions from 0 (always) to 10000",
        ),
    )?;
    Ok(Some(FanOut {
        queue_url: url,
        threshold: threshold as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::AccountId;
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
            s.audit_states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
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
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
            vec!["DISABLED"]
        );
    }

    #[test]
    fn coverage_slack_and_the_report_key_are_read_and_checked() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.coverage_slack, Duration::from_secs(3600));
        assert_eq!(s.report_kms_key, None);
        let mut pairs = BASE.to_vec();
        pairs.push(("COVERAGE_SLACK_MINUTES", "15"));
        let key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        pairs.push(("REPORT_KMS_KEY_ARN", key));
        let s = settings(&pairs).unwrap();
        assert_eq!(s.coverage_slack, Duration::from_secs(900));
        assert_eq!(s.report_kms_key.as_deref(), Some(key));
        for (name, value, says) in [
            ("COVERAGE_SLACK_MINUTES", "soon", "whole number of minutes"),
            ("COVERAGE_SLACK_MINUTES", "20000", "a week"),
            ("REPORT_KMS_KEY_ARN", "alias/aws/s3", "not a KMS key ARN"),
            (
                "REPORT_KMS_KEY_ARN",
                "arn:aws:s3:::bucket",
                "not a KMS key ARN",
            ),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((name, value));
            let e = settings(&pairs).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn the_reading_budget_has_defaults_and_refuses_nonsense() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.read_budget.max_bytes, 256 * 1_048_576);
        assert_eq!(s.read_budget.max_time, Duration::from_secs(60));
        let with = |name: &'static str, v: &'static str| {
            let mut env = BASE.to_vec();
            env.push((name, v));
            settings(&env)
        };
        assert_eq!(
            with("READ_REPORTS_MAX_MIB", "8")
                .unwrap()
                .read_budget
                .max_bytes,
            8 << 20
        );
        for (name, bad) in [
            ("READ_REPORTS_MAX_MIB", "0"),
            ("READ_REPORTS_MAX_SECONDS", "601"),
        ] {
            let e = with(name, bad).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn read_reports_is_off_unless_true_and_refuses_anything_else() {
        assert!(!settings(&BASE).unwrap().read_reports);
        let with = |v| {
            let mut pairs = BASE.to_vec();
            pairs.push(("READ_REPORTS", v));
            settings(&pairs)
        };
        assert!(with("true").unwrap().read_reports);
        assert!(!with("false").unwrap().read_reports);
        let err = with("yes").unwrap_err().to_string();
        assert!(
            err.contains("READ_REPORTS") && err.contains("true or false"),
            "{err}"
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
            s.scope.types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            vec!["SUBORDINATE"]
        );
        assert_eq!(s.fan_out.unwrap().threshold, 4);

        let mut pairs = BASE.to_vec();
        pairs.push(("AUDIT_ACCOUNTS", "111111111111,222222222222,111111111111"));
        assert_eq!(
            settings(&pairs).unwrap().accounts,
            Accounts::List(vec![
                AccountId::parse("111111111111").unwrap(),
                AccountId::parse("222222222222").unwrap()
            ])
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
