//! The ids of the places a CA lives in: an AWS account and a region, each checked once, where
//! it enters (a setting, a work item, a CA's ARN, the function's own ARN), so the code past
//! that point holds a value that cannot be malformed.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not {expected}")]
pub struct InvalidId {
    pub given: String,
    pub expected: &'static str,
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    pub const EXPECTED: &'static str = "a 12-digit account id";

    pub fn is_valid(s: &str) -> bool {
        s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
    }
}

/// A region name as AWS forms them: `us-east-1`, `ap-southeast-2`, `us-gov-west-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(String);

impl Region {
    pub const EXPECTED: &'static str = "a region name";

    pub fn is_valid(s: &str) -> bool {
        is_region(s)
    }
}

/// Region names as AWS forms them: `us-east-1`, `ap-southeast-2`, `us-gov-west-1`, `eu-isoe-west-1`.
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        // Two letters (`eu-west-1`), or four for the European Sovereign Cloud (`eusc-de-east-1`).
        && matches!(parts[0].len(), 2 | 4)
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        // Digits only, no sign or leading zero (`parse` would take `+1` and `01`).
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].starts_with('0')
        && parts[parts.len() - 1]
            .parse::<u8>()
            .is_ok_and(|n| (1..=20).contains(&n))
        && s.len() <= 25
}

/// One account whose CAs are audited.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// The function's own account (its id may not be known: then it is called `self`).
    Own,
    Member(AccountId),
}

impl Account {
    /// What summaries, logs and work items call the function's own account when its id is
    /// not known (run outside Lambda, with no function ARN to read it from).
    pub const OWN_LABEL: &'static str = "self";

    /// How summaries, logs and work items name it.
    pub fn label(&self) -> &str {
        match self {
            Self::Own => Self::OWN_LABEL,
            Self::Member(id) => id.as_str(),
        }
    }

    /// A work item's account, as `label` wrote it: `self` or an account id.
    pub fn parse_label(label: &str, home: Option<&str>) -> Result<Self, InvalidId> {
        if label == Self::OWN_LABEL {
            return Ok(Self::Own);
        }
        AccountId::parse(label).map(|id| Self::of(&id, home))
    }

    /// Its id where known: the member's, or the home account's for the function's own.
    pub fn id<'a>(&'a self, home: Option<&'a str>) -> &'a str {
        match (self, home) {
            (Self::Own, Some(h)) => h,
            (a, _) => a.label(),
        }
    }

    /// The account a setting or a CA ARN names, as this function reaches it.
    pub fn of(id: &AccountId, home: Option<&str>) -> Self {
        if Some(id.as_str()) == home {
            Self::Own
        } else {
            Self::Member(id.clone())
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Error messages quote what they were given, but never more than a screenful of it.
pub(crate) fn shorten(text: &str) -> String {
    bounded(text, 120)
}

/// `text` cut to at most `max` characters, marked with `…` and the length it had when cut:
/// a value from outside (an event, a report's row, a service's message) never grows an
/// error, a log line or a ledger item past what it is read for.
pub fn bounded(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        text.to_owned()
    } else {
        let head: String = text.chars().take(max).collect();
        format!("{head}… ({count} characters)")
    }
}

/// What both ids share: parsed from text once, then only read.
macro_rules! text_id {
    ($t:ty) => {
        impl $t {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                Self::is_valid(s)
                    .then(|| Self(s.to_owned()))
                    .ok_or_else(|| InvalidId {
                        given: shorten(s),
                        expected: Self::EXPECTED,
                    })
            }

            /// One already checked where it entered (a CA ARN's account or region).
            pub(crate) fn checked(s: &str) -> Self {
                debug_assert!(Self::is_valid(s), "{s}");
                Self(s.to_owned())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id!(AccountId);
text_id!(Region);

/// The accounts whose CAs are audited (`AUDIT_ACCOUNTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    /// The function's own account, with its own credentials.
    Own,
    /// These accounts, each through the member role.
    List(Vec<AccountId>),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_id_is_twelve_digits() {
        assert_eq!(AccountId::parse("123456789012").unwrap(), "123456789012");
        for bad in ["12345678901", "1234567890123", "12345678901a", "", "self"] {
            let e = AccountId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("12-digit account id"), "{e}");
        }
    }

    #[test]
    fn a_region_is_named_as_aws_names_them() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "eusc-de-east-1",
            "eu-isoe-west-1",
        ] {
            assert_eq!(Region::parse(good).unwrap(), good);
        }
        for bad in [
            "mars-1",
            "us-east-01",
            "us-east-+1",
            "US-EAST-1",
            "us-east-21",
            "",
        ] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_read_from_json_are_checked() {
        assert!(serde_json::from_str::<AccountId>("\"123456789012\"").is_ok());
        let e = serde_json::from_str::<Region>("\"nowhere\"").unwrap_err();
        assert!(e.to_string().contains("not a region name"), "{e}");
    }
}
