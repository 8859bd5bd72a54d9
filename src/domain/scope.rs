//! Which listed CAs are audited at all: their state, exemptions, CA types and required tags
//! (the settings' `Scope`); and whether an account-region asked for is inside what the
//! function is configured to audit (`account_refusal`, `region_refusal`). Pure decisions; the
//! listing and the tags are read by `aws::acm_pca`, an organization's membership by
//! `aws::accounts`.

use std::collections::BTreeSet;

use aws_sdk_acmpca::types::{CertificateAuthorityStatus, CertificateAuthorityType};

use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::ids::{Accounts, Region};
use crate::domain::outcome::{CaOutcome, Outcome, SkipReason, outcome as ca_outcome};
use crate::domain::window;

/// A CA as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub arn: CaArn,
    pub status: Option<CertificateAuthorityStatus>,
    pub ca_type: Option<CertificateAuthorityType>,
}

/// A tag a CA must carry; a bare key accepts any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredTag {
    pub key: String,
    pub value: Option<String>,
}

/// An account as its organization knows it (AWS Organizations, DescribeAccount and the
/// parents above it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// An ACTIVE member, under one of the configured units (or with none configured).
    Member,
    /// Not an account of the organization.
    NotInOrganization,
    /// A member in another state (`SUSPENDED`, `PENDING_CLOSURE`, ...).
    NotActive(String),
    /// An ACTIVE member under none of the configured OUs and roots.
    OutsideUnits,
}

/// Why an account-region asked for is outside the configured scope: its code and a message
/// naming the account or region and the setting that leaves it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRefusal {
    pub code: Code,
    pub message: String,
}

/// Whether account `id` may be audited: listed in `AUDIT_ACCOUNTS`; with `ORGANIZATION`, an
/// ACTIVE member (under `AUDIT_ORGANIZATIONAL_UNITS` when set) as `membership` says; with no
/// setting, only the function's own account (`home`; unknown outside Lambda, when the
/// listing alone tells). The function's own account is no exception to a list.
pub fn account_refusal(
    id: &str,
    accounts: &Accounts,
    home: Option<&str>,
    membership: Option<&Membership>,
) -> Option<ScopeRefusal> {
    let refuse = |why: String| {
        Some(ScopeRefusal {
            code: Code::AccountNotAudited,
            message: format!("account {id} is outside the accounts this function audits: {why}"),
        })
    };
    match accounts {
        Accounts::Own => match home {
            Some(home) if home != id => refuse(format!(
                "AUDIT_ACCOUNTS is not set, so only the function's own account {home} is audited"
            )),
            _ => None,
        },
        Accounts::List(ids) if ids.iter().any(|a| a.as_str() == id) => None,
        Accounts::List(_) => refuse("it is not listed in AUDIT_ACCOUNTS".into()),
        Accounts::Organization { units } => match membership {
            Some(Membership::Member) => None,
            Some(Membership::NotInOrganization) => refuse(
                "it is not an account of the organization (AUDIT_ACCOUNTS=ORGANIZATION)".into(),
            ),
            Some(Membership::NotActive(state)) => refuse(format!(
                "the organization lists it as {state}, not ACTIVE (AUDIT_ACCOUNTS=ORGANIZATION)"
            )),
            Some(Membership::OutsideUnits) => refuse(format!(
                "it is under none of AUDIT_ORGANIZATIONAL_UNITS ({})",
                units.join(", ")
            )),
            // Its membership could not be read: refused, never assumed.
            None => refuse("its membership of the organization could not be read".into()),
        },
    }
}

/// Whether `region` is one of `AUDIT_REGIONS` (the function's own region when unset).
pub fn region_refusal(region: &str, regions: &[Region]) -> Option<ScopeRefusal> {
    if regions.iter().any(|r| r.as_str() == region) {
        return None;
    }
    let configured: Vec<&str> = regions.iter().map(Region::as_str).collect();
    Some(ScopeRefusal {
        code: Code::RegionNotAudited,
        message: format!(
            "region {region} is outside the regions this function audits: AUDIT_REGIONS is {}",
            configured.join(",")
        ),
    })
}

/// CAs left out of the audit whatever their state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    pub exempt: BTreeSet<String>,
    pub required_tags: Vec<RequiredTag>,
    /// `ROOT`, `SUBORDINATE`: the CA types audited.
    pub types: BTreeSet<CertificateAuthorityType>,
}

/// The CAs in an audited state (`states`) and in scope (exemptions, types); the others
/// skipped with why. A run and a coverage request ask it alike.
pub fn in_scope(
    authorities: Vec<Authority>,
    states: &BTreeSet<CertificateAuthorityStatus>,
    scope: &Scope,
) -> (Vec<CaArn>, Vec<CaOutcome>) {
    let (mut kept, mut outcomes) = (Vec::new(), Vec::new());
    for a in authorities {
        let skip = window::state_outcome(a.status.as_ref(), states)
            .or_else(|| outcome(a.arn.as_str(), a.ca_type.as_ref(), scope));
        match skip {
            Some(skip) => outcomes.push(ca_outcome(&a.arn, skip)),
            None => kept.push(a.arn),
        }
    }
    (kept, outcomes)
}

fn skipped(reason: SkipReason, detail: String) -> Outcome {
    Outcome::Skipped {
        reason,
        detail,
        next_eligible_at: None,
    }
}

/// Why a CA is out of scope by its ARN or type, or `None` if it is in.
pub fn outcome(
    arn: &str,
    ca_type: Option<&CertificateAuthorityType>,
    scope: &Scope,
) -> Option<Outcome> {
    if scope.exempt.contains(arn) {
        return Some(skipped(
            SkipReason::Exempt,
            "listed in EXEMPT_CA_ARNS".into(),
        ));
    }
    // A type the listing did not give is not a reason to leave a CA unaudited.
    if let Some(ca_type) = ca_type
        && !scope.types.contains(ca_type)
    {
        let audited: Vec<&str> = scope.types.iter().map(|t| t.as_str()).collect();
        return Some(skipped(
            SkipReason::CaType,
            format!(
                "CA type is {}; audited types are {}",
                ca_type.as_str(),
                audited.join(", ")
            ),
        ));
    }
    None
}

/// Why a CA with these tags is out of scope, or `None` if it carries every required tag.
pub fn tag_outcome(tags: &[(String, String)], required: &[RequiredTag]) -> Option<Outcome> {
    let missing: Vec<String> = required
        .iter()
        .filter(|r| {
            !tags
                .iter()
                .any(|(k, v)| *k == r.key && r.value.as_ref().is_none_or(|want| want == v))
        })
        .map(|r| match &r.value {
            Some(v) => format!("{}={v}", r.key),
            None => r.key.clone(),
        })
        .collect();
    (!missing.is_empty()).then(|| {
        skipped(
            SkipReason::MissingTag,
            format!("lacks the required tag(s) {}", missing.join(", ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "arn:aws:acm-pca:us-east-1:111111111111:certificate-authority/11111111-2222-3333-4444-555555555555";

    fn scope() -> Scope {
        Scope {
            exempt: [CA.to_string()].into(),
            required_tags: vec![
                RequiredTag {
                    key: "audit".into(),
                    value: Some("yes".into()),
                },
                RequiredTag {
                    key: "owner".into(),
                    value: None,
                },
            ],
            types: [CertificateAuthorityType::Subordinate].into(),
        }
    }

    #[test]
    fn exempt_and_unaudited_types_are_skipped_with_their_reason() {
        let s = scope();
        assert!(matches!(
            outcome(CA, Some(&CertificateAuthorityType::Subordinate), &s),
            Some(Outcome::Skipped {
                reason: SkipReason::Exempt,
                ..
            })
        ));
        let other = CA.replace("111111111111", "222222222222");
        assert!(matches!(
            outcome(&other, Some(&CertificateAuthorityType::Root), &s),
            Some(Outcome::Skipped {
                reason: SkipReason::CaType,
                ..
            })
        ));
        assert_eq!(
            outcome(&other, Some(&CertificateAuthorityType::Subordinate), &s),
            None
        );
        assert_eq!(outcome(&other, None, &s), None);
    }

    #[test]
    fn every_required_tag_must_be_there_with_its_value() {
        let s = scope();
        let tags = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            tag_outcome(
                &tags(&[("audit", "yes"), ("owner", "pki")]),
                &s.required_tags
            ),
            None
        );
        match tag_outcome(
            &tags(&[("audit", "no"), ("owner", "pki")]),
            &s.required_tags,
        ) {
            Some(Outcome::Skipped {
                reason: SkipReason::MissingTag,
                detail,
                ..
            }) => assert!(detail.contains("audit=yes"), "{detail}"),
            other => panic!("{other:?}"),
        }
        match tag_outcome(&[], &s.required_tags) {
            Some(Outcome::Skipped { detail, .. }) => {
                assert!(detail.contains("audit=yes, owner"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tag_outcome(&[], &[]), None);
    }

    fn ids(list: &[&str]) -> Accounts {
        Accounts::List(
            list.iter()
                .map(|a| crate::domain::ids::AccountId::parse(a).unwrap())
                .collect(),
        )
    }

    #[test]
    fn an_account_outside_the_setting_is_refused_naming_it_and_the_setting() {
        let (home, other) = ("111111111111", "222222222222");
        let refused = |r: Option<ScopeRefusal>| r.expect("refused").message;
        // No setting: only the function's own account (unknown outside Lambda: the listing tells).
        assert_eq!(
            account_refusal(home, &Accounts::Own, Some(home), None),
            None
        );
        let m = refused(account_refusal(other, &Accounts::Own, Some(home), None));
        assert!(
            m.contains(other) && m.contains("AUDIT_ACCOUNTS is not set"),
            "{m}"
        );
        assert_eq!(account_refusal(other, &Accounts::Own, None, None), None);
        // A list: the function's own account only when listed.
        let list = ids(&[other]);
        assert_eq!(account_refusal(other, &list, Some(home), None), None);
        let m = refused(account_refusal(home, &list, Some(home), None));
        assert!(m.contains(home) && m.contains("AUDIT_ACCOUNTS"), "{m}");
        // An organization: as its membership says; unknown is refused.
        let org = Accounts::Organization {
            units: vec!["ou-ab12-cdef3456".into()],
        };
        let member = |m: Option<Membership>| account_refusal(other, &org, Some(home), m.as_ref());
        assert_eq!(member(Some(Membership::Member)), None);
        for (m, says) in [
            (
                Membership::NotInOrganization,
                "not an account of the organization",
            ),
            (
                Membership::NotActive("SUSPENDED".into()),
                "SUSPENDED, not ACTIVE",
            ),
            (Membership::OutsideUnits, "ou-ab12-cdef3456"),
        ] {
            let r = member(Some(m)).expect("refused");
            assert_eq!(r.code, Code::AccountNotAudited);
            assert!(r.message.contains(says), "{}", r.message);
        }
        assert!(refused(member(None)).contains("could not be read"));
    }

    #[test]
    fn a_region_outside_the_setting_is_refused_naming_the_setting() {
        let regions = [Region::parse("us-east-1").unwrap()];
        assert_eq!(region_refusal("us-east-1", &regions), None);
        let r = region_refusal("eu-west-1", &regions).expect("refused");
        assert_eq!(r.code, Code::RegionNotAudited);
        assert!(
            r.message.contains("eu-west-1") && r.message.contains("AUDIT_REGIONS is us-east-1"),
            "{}",
            r.message
        );
    }
}
