//! Certificate authority ARNs, parsed once where they enter.
//!
//! An ARN becomes a DynamoDB key and names an S3 prefix (`audit-report/<CA id>/`), so it is
//! checked against the one shape ACM PCA gives CAs before anything else sees it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

pub(crate) use crate::domain::ids::shorten;
use crate::domain::ids::{AccountId, Region};

/// `arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<uuid>`
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaArn {
    text: String,
    region_at: (usize, usize),
    account_at: (usize, usize),
    id_at: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{arn}` is not a certificate authority ARN: {reason}")]
pub struct InvalidArn {
    pub arn: String,
    pub reason: &'static str,
}

/// Every partition AWS lists (the SDK's endpoint partitions: `partitions.json`).
pub const PARTITIONS: [&str; 8] = [
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

/// The partition a region belongs to, by the SDK's own region patterns (`partitions.json`),
/// for when the function's ARN does not say: `None` for a region no partition claims.
pub fn partition_of_region(region: &str) -> Option<&'static str> {
    let parts: Vec<&str> = region.split('-').collect();
    match parts.as_slice() {
        ["cn", _, _] => Some("aws-cn"),
        ["us", "gov", _, _] => Some("aws-us-gov"),
        ["us", "iso", _, _] => Some("aws-iso"),
        ["us", "isob", _, _] => Some("aws-iso-b"),
        ["us", "isof", _, _] => Some("aws-iso-f"),
        ["eu", "isoe", _, _] => Some("aws-iso-e"),
        ["eusc", "de", _, _] => Some("aws-eusc"),
        [
            "us" | "eu" | "ap" | "sa" | "ca" | "me" | "af" | "il" | "mx",
            _,
            _,
        ] => Some("aws"),
        _ => None,
    }
}

impl CaArn {
    pub fn parse(text: &str) -> Result<Self, InvalidArn> {
        let fail = |reason| InvalidArn {
            arn: shorten(text),
            reason,
        };
        // The API's own length limits for CertificateAuthorityArn.
        if !(5..=200).contains(&text.len()) {
            return Err(fail("must be 5 to 200 characters long"));
        }
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return Err(fail(
                "expected arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>",
            ));
        };
        if arn != "arn" {
            return Err(fail("does not start with `arn:`"));
        }
        if !PARTITIONS.contains(&partition) {
            return Err(fail("unknown partition"));
        }
        if service != "acm-pca" {
            return Err(fail("not an acm-pca ARN"));
        }
        if !Region::is_valid(region) {
            return Err(fail("invalid region"));
        }
        if !AccountId::is_valid(account) {
            return Err(fail("account must be 12 digits"));
        }
        let Some(id) = resource.strip_prefix("certificate-authority/") else {
            return Err(fail("resource is not `certificate-authority/<id>`"));
        };
        if !is_lower_uuid(id) {
            return Err(fail("CA id is not a lowercase UUID"));
        }
        let region_start = arn.len() + partition.len() + service.len() + 3;
        let account_start = region_start + region.len() + 1;
        Ok(Self {
            text: text.to_owned(),
            region_at: (region_start, region_start + region.len()),
            account_at: (account_start, account_start + account.len()),
            id_at: text.len() - id.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn region(&self) -> &str {
        &self.text[self.region_at.0..self.region_at.1]
    }

    pub fn account(&self) -> &str {
        &self.text[self.account_at.0..self.account_at.1]
    }

    pub fn account_id(&self) -> AccountId {
        AccountId::checked(self.account())
    }

    pub fn region_id(&self) -> Region {
        Region::checked(self.region())
    }

    /// The CA's UUID, which names its folder of audit reports in the bucket.
    pub fn id(&self) -> &str {
        &self.text[self.id_at..]
    }
}

/// A UUID in the lower-case form the service gives CA and report ids: the crate's one UUID check.
pub fn is_lower_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl FromStr for CaArn {
    type Err = InvalidArn;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CaArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for CaArn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CaArn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The `n`th CA of one account-region, for the crate's unit tests.
#[cfg(test)]
pub(crate) fn test_arn(n: u8) -> CaArn {
    CaArn::parse(&format!(
        "arn:aws:acm-pca:eu-west-1:111111111111:certificate-authority/00000000-0000-0000-0000-0000000000{n:02}"
    ))
    .expect("a CA ARN")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555";

    #[test]
    fn reads_region_account_and_id() {
        let arn = CaArn::parse(GOOD).unwrap();
        assert_eq!(arn.region(), "eu-west-1");
        assert_eq!(arn.account(), "123456789012");
        assert_eq!(arn.id(), "11111111-2222-3333-4444-555555555555");
        assert_eq!(arn.as_str(), GOOD);
    }

    #[test]
    fn accepts_other_partitions() {
        let arn = CaArn::parse(
            "arn:aws-us-gov:acm-pca:us-gov-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555",
        )
        .unwrap();
        assert_eq!(arn.region(), "us-gov-west-1");
    }

    #[test]
    fn refuses_each_wrong_part_with_its_reason() {
        let cases = [
            ("arn:aws:s3:::my-bucket", "not an acm-pca ARN"),
            ("arn:aws:acm-pca:eu-west-1", "expected arn:"),
            (
                "arn:aws:acm:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555",
                "not an acm-pca ARN",
            ),
            (
                "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555/certificate/abc",
                "lowercase UUID",
            ),
            (
                "arn:aws:acm-pca:mars-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555",
                "invalid region",
            ),
            (
                "arn:aws:acm-pca:eu-west-1:12345:certificate-authority/11111111-2222-3333-4444-555555555555",
                "12 digits",
            ),
            (
                "arn:azure:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555",
                "partition",
            ),
            (
                "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-55555555555G",
                "lowercase UUID",
            ),
            (
                "arn:aws:acm-pca:eu-west-1:123456789012:template/11111111-2222-3333-4444-555555555555",
                "certificate-authority/",
            ),
            ("", "5 to 200"),
        ];
        for (input, reason) in cases {
            let err = CaArn::parse(input).unwrap_err();
            assert!(
                err.to_string().contains(reason),
                "{input}: {err} should mention {reason}"
            );
        }
    }

    #[test]
    fn long_input_is_quoted_shortened() {
        let err = CaArn::parse(&"x".repeat(5000)).unwrap_err();
        assert!(err.to_string().len() < 300);
    }
}
