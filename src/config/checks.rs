//! The check of each setting's value: `Ok` with the value made canonical, or the reason it
//! is refused, which `Lookup` puts with the setting's name and value.

use aws_sdk_acmpca::types::{CertificateAuthorityStatus, CertificateAuthorityType};
use std::time::Duration;

use super::{RequiredTag, is_bucket_name};
use crate::domain::ids::{AccountId, Region};
use crate::domain::window::{AUDITABLE_STATES, Interval};

/// Why a setting's value is refused: prose for the person who set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Reason(pub String);

impl From<&str> for Reason {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// A setting's value as checked.
pub type Check<T> = Result<T, Reason>;

/// `ou-<root 4-32>-<8-32>` or `r-<4-32>`, lowercase letters and digits, as Organizations shapes them.
pub(super) fn is_parent_id(s: &str) -> bool {
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

pub(super) fn table_name(t: &str) -> Check<()> {
    let ok = (3..=255).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    ok.then_some(())
        .ok_or_else(|| "not a DynamoDB table name (3-255 of a-z, A-Z, 0-9, _ - .)".into())
}

pub(super) fn bucket_name(b: &str) -> Check<()> {
    is_bucket_name(b)
        .then_some(())
        .ok_or_else(|| "not an S3 bucket name (3-63 of a-z, 0-9, . and -)".into())
}

pub(super) fn interval_minutes(v: &str) -> Check<Interval> {
    let minutes: u64 = v
        .parse()
        .map_err(|_| "not a whole number of minutes".to_owned())?;
    // Ten years: beyond that no audit cadence makes sense, and the instants the ledger writes
    // stay well inside the year 9999.
    const MAX_MINUTES: u64 = 3_660 * 24 * 60;
    if minutes > MAX_MINUTES {
        return Err(Reason(format!("at most {MAX_MINUTES} minutes (ten years)")));
    }
    Interval::new(Duration::from_secs(minutes * 60)).map_err(|e| Reason(e.to_string()))
}

pub(super) fn region(r: &str) -> Check<Region> {
    Region::parse(r).map_err(|e| Reason(e.to_string()))
}

/// One of the states the SDK knows (those ListCertificateAuthorities reports), and one the
/// service makes audit reports of.
pub(super) fn auditable_state(s: &str) -> Check<CertificateAuthorityStatus> {
    let upper = s.to_ascii_uppercase();
    if !CertificateAuthorityStatus::values().contains(&upper.as_str()) {
        return Err(Reason(format!(
            "`{s}` is not a CA state (one of {})",
            CertificateAuthorityStatus::values().join(", ")
        )));
    }
    let state = CertificateAuthorityStatus::from(upper.as_str());
    if !AUDITABLE_STATES.contains(&state) {
        let auditable: Vec<&str> = AUDITABLE_STATES.iter().map(|s| s.as_str()).collect();
        return Err(Reason(format!(
            "AWS Private CA makes no audit report of a CA in state {upper} (only {}: user \
             guide, \"Understand AWS Private CA CA status\"), so auditing it would only spend \
             the create quota on a refusal",
            auditable.join(" and ")
        )));
    }
    Ok(state)
}

pub(super) fn ca_type(t: &str) -> Check<CertificateAuthorityType> {
    let upper = t.to_ascii_uppercase();
    if !CertificateAuthorityType::values().contains(&upper.as_str()) {
        return Err(Reason(format!(
            "`{t}` is not a CA type ({})",
            CertificateAuthorityType::values().join(" or ")
        )));
    }
    Ok(CertificateAuthorityType::from(upper.as_str()))
}

pub(super) fn whole_in(
    range: std::ops::RangeInclusive<u64>,
    what: &'static str,
) -> impl Fn(&str) -> Check<u64> {
    move |v| {
        v.parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| Reason(what.to_owned()))
    }
}

pub(super) fn account_id(id: &str) -> Check<AccountId> {
    AccountId::parse(id).map_err(|e| Reason(format!("{e} (or give the single word ORGANIZATION)")))
}

pub(super) fn parent_id(id: &str) -> Check<String> {
    is_parent_id(id).then(|| id.to_owned()).ok_or_else(|| {
        Reason(format!(
            "`{id}` is not an OU id (ou-...) or root id (r-...)"
        ))
    })
}

pub(super) fn role_name(n: &str) -> Check<()> {
    let ok = (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    ok.then_some(())
        .ok_or_else(|| "not an IAM role name (1-64 of letters, digits and +=,.@_-)".into())
}

pub(super) fn exempt_arn(a: &str) -> Check<String> {
    crate::domain::arn::CaArn::parse(a)
        .map(|arn| arn.to_string())
        .map_err(|e| Reason(format!("`{a}` is not a CA ARN: {e}")))
}

pub(super) fn required_tag(t: &str) -> Check<RequiredTag> {
    let (key, value) = match t.split_once('=') {
        Some((k, val)) => (k.trim(), Some(val.trim().to_owned())),
        None => (t, None),
    };
    if key.is_empty() || key.len() > 128 || value.as_ref().is_some_and(|v| v.len() > 256) {
        return Err(Reason(format!(
            "`{t}` is not key or key=value (key 1-128, value up to 256 characters)"
        )));
    }
    Ok(RequiredTag {
        key: key.to_owned(),
        value,
    })
}

pub(super) fn boolean(v: &str) -> Check<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

pub(super) fn queue_url(url: &str) -> Check<()> {
    (url.starts_with("https://") || url.starts_with("http://"))
        .then_some(())
        .ok_or_else(|| {
            "not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)".into()
        })
}

/// `arn:<partition>:kms:<region>:<account>:key/<id>`.
pub(super) fn kms_key_arn(arn: &str) -> Check<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", _, "kms", region, account, resource]
            if Region::is_valid(region)
                && AccountId::is_valid(account)
                && resource
                    .strip_prefix("key/")
                    .is_some_and(|id| !id.is_empty()) =>
        {
            Ok(arn.to_owned())
        }
        _ => Err("not a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<id>)".into()),
    }
}

/// `EVENT_BUS` as the environment holds it (not trimmed to unset: set empty, it turns the
/// events off): unset, the account's default bus (`Some("default")`); empty, none; else a
/// bus name or ARN as PutEventsRequestEntry's `EventBusName` takes it (EventBridge API
/// reference: 1-1600 characters, `(arn:aws[\w-]*:events:<region>:<account>:event-bus/)?`
/// then `[/.\-_A-Za-z0-9]+`).
pub(super) fn event_bus(raw: Option<String>) -> Result<Option<String>, super::ConfigError> {
    let Some(raw) = raw else {
        return Ok(Some("default".to_owned()));
    };
    let bus = raw.trim();
    if bus.is_empty() {
        return Ok(None);
    }
    let name = match bus.strip_prefix("arn:") {
        Some(rest) => match rest.splitn(5, ':').collect::<Vec<_>>()[..] {
            [partition, "events", region, account, resource]
                if partition.starts_with("aws")
                    && Region::is_valid(region)
                    && AccountId::is_valid(account) =>
            {
                resource.strip_prefix("event-bus/").unwrap_or("")
            }
            _ => "",
        },
        None => bus,
    };
    let valid = (1..=1600).contains(&bus.len())
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.-_".contains(&b));
    if valid {
        Ok(Some(bus.to_owned()))
    } else {
        Err(super::lookup::invalid(
            "EVENT_BUS",
            bus,
            "not an event bus name or ARN (letters, digits and /.-_, or \
             arn:<partition>:events:<region>:<account>:event-bus/<name>); empty turns events off"
                .into(),
        ))
    }
}
