//! Which listed CAs are audited at all: their state, exemptions, CA types and required tags
//! (the settings' `Scope`). Pure decisions; the listing and the tags are read by `aws::acm_pca`.

use std::collections::BTreeSet;

use aws_sdk_acmpca::types::{CertificateAuthorityStatus, CertificateAuthorityType};

use crate::domain::arn::CaArn;
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
}
