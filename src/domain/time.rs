//! Instants as the ledger stores them: RFC 3339 UTC with whole seconds.
//!
//! One fixed-width text form (`2026-11-25T01:55:52Z`) is readable in the table and compares in
//! DynamoDB condition expressions exactly as the instants do, so no attribute mixes seconds
//! with milliseconds (the Powertools idempotency bug noted in AWS_FACTS.md).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

/// A UTC instant with whole-second precision, from 1970 to the end of 9999 (the fixed-width
/// form has four digits for the year; later instants are held at its last second).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// 9999-12-31T23:59:59Z.
const LAST: u64 = 253_402_300_799;

impl Timestamp {
    pub fn from_system_time(t: SystemTime) -> Self {
        Self::from_epoch_seconds(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    pub fn from_epoch_seconds(secs: u64) -> Self {
        Self(secs.min(LAST))
    }

    pub fn epoch_seconds(self) -> u64 {
        self.0
    }

    /// Parses the ledger's own form; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        humantime::parse_rfc3339(text)
            .ok()
            .map(Self::from_system_time)
    }

    /// `20260701T000000Z`: RFC 3339's basic form, for object keys (no `:`).
    pub fn compact(self) -> String {
        self.to_string().replace(['-', ':'], "")
    }

    pub fn plus(self, d: Duration) -> Self {
        Self::from_epoch_seconds(self.0.saturating_add(d.as_secs()))
    }

    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(d.as_secs()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_secs(self.0);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 UTC timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_is_fixed_width_utc_and_round_trips() {
        let t = Timestamp::from_epoch_seconds(1_582_742_397);
        assert_eq!(t.to_string(), "2020-02-26T18:39:57Z");
        assert_eq!(Timestamp::parse("2020-02-26T18:39:57Z"), Some(t));
    }

    #[test]
    fn text_order_matches_time_order() {
        let a = Timestamp::from_epoch_seconds(999_999_999);
        let b = Timestamp::from_epoch_seconds(1_000_000_000);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn instants_past_9999_are_held_at_its_last_second() {
        let t = Timestamp::from_epoch_seconds(0).plus(Duration::from_secs(u64::MAX));
        assert_eq!(t.to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp::from_epoch_seconds(u64::MAX), t);
    }

    #[test]
    fn rejects_other_forms() {
        assert_eq!(Timestamp::parse("yesterday"), None);
    }
}
