//! The CAs of one account-region a run considers: listed, chosen, in scope, tagged.

use std::collections::HashMap;

use futures::StreamExt;
use tokio::time::Instant;

use crate::aws::ServiceError;
use crate::aws::acm_pca;
use crate::config::{RequiredTag, Settings};
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::ids::Account;
use crate::domain::outcome::{CaOutcome, Outcome, RegionError, failed, outcome};
use crate::domain::scope;
use crate::domain::scope::Authority;
use crate::services::TargetClient;

/// The listed CAs a request asks for: all of them, or those a manual request names (each
/// named CA the listing lacks is failed here, before any create, so it costs no quota).
pub(crate) fn choose(
    listed: Vec<Authority>,
    only: Option<&[CaArn]>,
    account: &Account,
    region: &str,
) -> (Vec<Authority>, Vec<CaOutcome>) {
    let Some(arns) = only else {
        return (listed, Vec::new());
    };
    let mut by_arn: HashMap<&str, &Authority> =
        listed.iter().map(|a| (a.arn.as_str(), a)).collect();
    let (mut chosen, mut outcomes) = (Vec::new(), Vec::new());
    for arn in arns {
        match by_arn.remove(arn.as_str()) {
            Some(a) => chosen.push(a.clone()),
            None => outcomes.push(outcome(
                arn,
                failed(
                    Code::ResourceNotFoundException.as_str(),
                    format!("no CA {arn} among the CAs account {account} owns in {region}"),
                ),
            )),
        }
    }
    (chosen, outcomes)
}

/// Select: the CAs of the account-region (those a manual request names, when it does)
/// that are in an audited state, in scope, and carry the required tags; the others with
/// why. A listing that fails is the account-region's error (or, for a manual request,
/// each named CA's). No tag is read after `cutoff`.
pub(crate) async fn select(
    settings: &Settings,
    client: &TargetClient,
    only: Option<&[CaArn]>,
    cutoff: Instant,
) -> Result<(Vec<CaArn>, Vec<CaOutcome>), (Vec<CaOutcome>, Option<RegionError>)> {
    let region = client.region.as_str();
    let listed = acm_pca::list(&client.acm_pca)
        .await
        .map_err(|e| listing_failed(client, only, e))?;
    let (chosen, mut outcomes) = choose(listed, only, &client.account, region);
    let (candidates, out_of_scope) =
        scope::in_scope(chosen, &settings.audit_states, &settings.scope);
    outcomes.extend(out_of_scope);
    if settings.scope.required_tags.is_empty() {
        return Ok((candidates, outcomes));
    }
    let required = &settings.scope.required_tags;
    let (tagged, untagged) = with_required_tags(client, candidates, required, cutoff).await;
    outcomes.extend(untagged);
    Ok((tagged, outcomes))
}

/// A listing that failed: each named CA's failure for a manual request; the account-region's
/// error for a scheduled run, which cannot know which CAs it missed.
fn listing_failed(
    client: &TargetClient,
    only: Option<&[CaArn]>,
    e: ServiceError,
) -> (Vec<CaOutcome>, Option<RegionError>) {
    let region = client.region.as_str();
    let message = format!(
        "listing CAs of account {} in {region}: {}",
        client.account, e.message
    );
    match only {
        Some(arns) => (
            arns.iter()
                .map(|a| outcome(a, failed(&e.code, message.clone())))
                .collect(),
            None,
        ),
        None => (
            vec![],
            Some(RegionError {
                account_id: client.account.label().to_owned(),
                region: region.to_owned(),
                error_code: e.code,
                error_message: message,
            }),
        ),
    }
}

/// The candidates that carry every required tag (one ListTags each, at the read pace); a
/// CA whose turn would come after `cutoff` is deferred unread.
async fn with_required_tags(
    client: &TargetClient,
    candidates: Vec<CaArn>,
    required: &[RequiredTag],
    cutoff: Instant,
) -> (Vec<CaArn>, Vec<CaOutcome>) {
    let tagged: Vec<(CaArn, Option<Result<acm_pca::Tags, ServiceError>>)> =
        futures::stream::iter(candidates)
            .map(|arn| async move {
                if !client.reads.wait_turn(cutoff).await {
                    return (arn, None);
                }
                let tags = acm_pca::tags(&client.acm_pca, &arn).await;
                (arn, Some(tags))
            })
            .buffered(4)
            .collect()
            .await;
    let (mut kept, mut outcomes) = (Vec::new(), Vec::new());
    for (arn, tags) in tagged {
        match tags {
            Some(Ok(tags)) => match scope::tag_outcome(&tags, required) {
                Some(skip) => outcomes.push(outcome(&arn, skip)),
                None => kept.push(arn),
            },
            Some(Err(e)) => outcomes.push(outcome(
                &arn,
                failed(&e.code, format!("reading the CA's tags: {}", e.message)),
            )),
            None => outcomes.push(outcome(
                &arn,
                Outcome::Deferred {
                    detail:
                        "not started: too little time left in this invocation to read its tags; \
                         the next run takes it first"
                            .into(),
                },
            )),
        }
    }
    (kept, outcomes)
}

/// The CAs of one account-region a run would audit, as a coverage request counts them:
/// state, exemptions, types, and with REQUIRED_TAGS one ListTags each at the read pace. Unlike
/// a run, a CA whose tags cannot be read (or not before `cutoff`) is kept: better a gap to
/// look at than a CA silently left out of the evidence.
pub(crate) async fn audited(
    settings: &Settings,
    client: &TargetClient,
    cutoff: Instant,
) -> Result<Vec<CaArn>, ServiceError> {
    let listed = acm_pca::list(&client.acm_pca).await?;
    let (candidates, _) = scope::in_scope(listed, &settings.audit_states, &settings.scope);
    let required = &settings.scope.required_tags;
    if required.is_empty() {
        return Ok(candidates);
    }
    let kept: Vec<Option<CaArn>> = futures::stream::iter(candidates)
        .map(|arn| async move {
            if !client.reads.wait_turn(cutoff).await {
                return Some(arn);
            }
            match acm_pca::tags(&client.acm_pca, &arn).await {
                Ok(tags) if scope::tag_outcome(&tags, required).is_some() => None,
                _ => Some(arn),
            }
        })
        .buffered(4)
        .collect()
        .await;
    Ok(kept.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::arn::test_arn as arn;

    #[test]
    fn a_named_ca_the_listing_lacks_fails_before_any_create() {
        let listed = vec![Authority {
            arn: arn(1),
            status: Some(aws_sdk_acmpca::types::CertificateAuthorityStatus::Active),
            ca_type: Some(aws_sdk_acmpca::types::CertificateAuthorityType::Root),
        }];
        let (chosen, outcomes) = choose(
            listed.clone(),
            Some(&[arn(1), arn(2)]),
            &Account::Own,
            "eu-west-1",
        );
        assert_eq!(chosen, listed);
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].certificate_authority_arn, arn(2).to_string());
        assert!(matches!(
            &outcomes[0].outcome,
            Outcome::Failed { error_code, .. } if error_code == "ResourceNotFoundException"
        ));
        let (all, none) = choose(listed.clone(), None, &Account::Own, "eu-west-1");
        assert_eq!((all, none.len()), (listed, 0));
    }
}
