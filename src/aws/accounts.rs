//! The accounts whose CAs are audited, and how the function enters each one.
//!
//! The function's own account is reached with its own credentials; every other through the
//! member role (`MEMBER_ROLE_NAME`, with `MEMBER_ROLE_EXTERNAL_ID` when set), assumed with
//! aws-config's `AssumeRoleProvider`, whose credentials the clients cache and renew.

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_acmpca::error::DisplayErrorContext;
use aws_sdk_organizations::types::{AccountState, AccountStatus, ChildType};

use crate::aws::ServiceError;
use crate::domain::arn::partition_of_region;
use crate::domain::code::Code;
use crate::domain::ids::{Account, AccountId};
use crate::domain::ids::{Accounts, MemberRole};
use crate::domain::outcome::AccountError;
use crate::domain::scope::Membership;

fn org_error(e: ServiceError) -> AccountError {
    AccountError {
        account_id: "organization".into(),
        error_code: e.code,
        error_message: format!("listing the organization's accounts: {}", e.message),
    }
}

/// The accounts a run audits, in a stable order: the settings' list, or the organization's
/// active accounts (of the configured OUs and roots, nested OUs included).
pub async fn audited(
    accounts: &Accounts,
    sdk: &SdkConfig,
    home: Option<&str>,
) -> Result<Vec<Account>, AccountError> {
    let ids: Vec<AccountId> = match accounts {
        Accounts::Own => return Ok(vec![Account::Own]),
        Accounts::List(ids) => ids.clone(),
        Accounts::Organization { units } => {
            // Organizations has one endpoint per partition: the SDK's endpoint rules resolve
            // it (and its signing region) from the function's own region, in every partition.
            let client = aws_sdk_organizations::Client::new(sdk);
            let mut ids = if units.is_empty() {
                whole_organization(&client).await
            } else {
                under_units(&client, units).await
            }
            .map_err(org_error)?;
            ids.sort();
            ids.dedup();
            ids
        }
    };
    Ok(ids.iter().map(|id| Account::of(id, home)).collect())
}

#[allow(deprecated)] // `status` is what older organizations (and moto) still answer with.
fn is_active(a: &aws_sdk_organizations::types::Account) -> bool {
    match a.state() {
        Some(state) => *state == AccountState::Active,
        None => a.status() == Some(&AccountStatus::Active),
    }
}

fn active_ids(
    accounts: &[aws_sdk_organizations::types::Account],
) -> impl Iterator<Item = AccountId> {
    accounts
        .iter()
        .filter(|a| is_active(a))
        .filter_map(|a| a.id())
        .filter_map(|id| {
            AccountId::parse(id)
                .inspect_err(|e| tracing::warn!("Organizations listed an account id: {e}"))
                .ok()
        })
}

async fn whole_organization(
    client: &aws_sdk_organizations::Client,
) -> Result<Vec<AccountId>, ServiceError> {
    let mut pages = client.list_accounts().into_paginator().send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ServiceError::from_sdk(&e))?;
        ids.extend(active_ids(page.accounts()));
    }
    Ok(ids)
}

async fn under_units(
    client: &aws_sdk_organizations::Client,
    units: &[String],
) -> Result<Vec<AccountId>, ServiceError> {
    let mut ids = Vec::new();
    let mut parents: Vec<String> = units.to_vec();
    while let Some(parent) = parents.pop() {
        let mut accounts = client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = accounts.next().await {
            let page = page.map_err(|e| ServiceError::from_sdk(&e))?;
            ids.extend(active_ids(page.accounts()));
        }
        let mut children = client
            .list_children()
            .parent_id(&parent)
            .child_type(ChildType::OrganizationalUnit)
            .into_paginator()
            .send();
        while let Some(page) = children.next().await {
            let page = page.map_err(|e| ServiceError::from_sdk(&e))?;
            parents.extend(
                page.children()
                    .iter()
                    .filter_map(|c| c.id().map(str::to_owned)),
            );
        }
    }
    Ok(ids)
}

/// Whether account `id` is an ACTIVE member of the organization, under one of `units` when
/// any are set: DescribeAccount ("AccountNotFoundException: ... the specified account ID
/// ... isn't in the organization", Organizations API reference), then ListParents up to the
/// root. One account at a time, so a work item or a manual request checks only its own.
pub async fn membership(
    sdk: &SdkConfig,
    id: &str,
    units: &[String],
) -> Result<Membership, ServiceError> {
    let client = aws_sdk_organizations::Client::new(sdk);
    let described = client.describe_account().account_id(id).send().await;
    let account = match described {
        Ok(out) => out.account,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_account_not_found_exception()) =>
        {
            return Ok(Membership::NotInOrganization);
        }
        Err(e) => return Err(ServiceError::from_sdk(&e)),
    };
    let Some(account) = account else {
        return Ok(Membership::NotInOrganization);
    };
    if !is_active(&account) {
        #[allow(deprecated)]
        let state = (account.state().map(|s| s.as_str().to_owned()))
            .or_else(|| account.status().map(|s| s.as_str().to_owned()))
            .unwrap_or_else(|| "of no known state".into());
        return Ok(Membership::NotActive(state));
    }
    if units.is_empty() {
        return Ok(Membership::Member);
    }
    // Up the tree: each parent (an OU, then the root) until one is configured or none is left.
    let mut child = id.to_owned();
    loop {
        let parents = client
            .list_parents()
            .child_id(&child)
            .send()
            .await
            .map_err(|e| ServiceError::from_sdk(&e))?;
        let Some(parent) = parents.parents().first().and_then(|p| p.id()) else {
            return Ok(Membership::OutsideUnits);
        };
        if units.iter().any(|u| u == parent) {
            return Ok(Membership::Member);
        }
        if parent.starts_with("r-") {
            return Ok(Membership::OutsideUnits);
        }
        child = parent.to_owned();
    }
}

/// The SDK configuration to act in a member account: the function's own, with the member
/// role's credentials. The role is assumed once here, so an account that cannot be entered
/// is one clear error, before any of its CAs is looked at.
pub async fn enter(
    sdk: &SdkConfig,
    role: &MemberRole,
    partition: Option<&str>,
    account: &str,
) -> Result<SdkConfig, AccountError> {
    // The function's own partition, from its ARN; without one (run outside Lambda), the
    // partition of its region.
    let region = sdk.region().map_or("", |r| r.as_ref());
    let Some(partition) = partition.or_else(|| partition_of_region(region)) else {
        return Err(AccountError {
            account_id: account.to_owned(),
            error_code: Code::UnknownPartition.into(),
            error_message: format!(
                "cannot tell the partition of region `{region}` to name the member role in"
            ),
        });
    };
    let role_arn = role.arn(partition, account);
    let mut builder = AssumeRoleProvider::builder(&role_arn)
        .session_name("pca-audit-scheduler")
        .configure(sdk);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    let provider = builder.build().await;
    if let Err(e) = provider.provide_credentials().await {
        return Err(AccountError {
            account_id: account.to_owned(),
            error_code: Code::AssumeRoleFailed.into(),
            error_message: format!(
                "could not assume {role_arn}: {} (is the member role deployed in this account, \
                 trusting this function's role, with the same external id?)",
                DisplayErrorContext(&e)
            ),
        });
    }
    Ok(sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_account_is_entered_with_its_own_credentials() {
        let id = |s| AccountId::parse(s).unwrap();
        assert_eq!(
            Account::of(&id("111111111111"), Some("111111111111")),
            Account::Own
        );
        assert_eq!(Account::parse_label("self", None), Ok(Account::Own));
        let member = Account::Member(id("222222222222"));
        assert_eq!(
            Account::parse_label("222222222222", Some("111111111111")),
            Ok(member.clone())
        );
        assert_eq!(member.label(), "222222222222");
        assert!(Account::parse_label("2222", None).is_err());
    }

    #[test]
    fn the_role_arn_follows_the_partition() {
        let role = MemberRole {
            name: "Auditor".into(),
            external_id: None,
        };
        assert_eq!(
            role.arn("aws-cn", "111111111111"),
            "arn:aws-cn:iam::111111111111:role/Auditor"
        );
    }

    #[tokio::test]
    async fn organizations_endpoint_follows_the_functions_region_partition() {
        use aws_sdk_organizations::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        for (region, url) in [
            ("eu-west-1", "https://organizations.us-east-1.amazonaws.com"),
            ("us-east-1", "https://organizations.us-east-1.amazonaws.com"),
            (
                "cn-north-1",
                "https://organizations.cn-northwest-1.amazonaws.com.cn",
            ),
            (
                "us-gov-east-1",
                "https://organizations.us-gov-west-1.amazonaws.com",
            ),
        ] {
            let params = Params::builder().region(region).build().unwrap();
            let endpoint = DefaultResolver::new()
                .resolve_endpoint(&params)
                .await
                .unwrap_or_else(|e| panic!("{region}: {e}"));
            assert_eq!(endpoint.url(), url, "{region}");
        }
    }

    #[test]
    fn every_partition_is_told_by_its_regions() {
        for (region, partition) in [
            ("eu-west-1", Some("aws")),
            ("il-central-1", Some("aws")),
            ("mx-central-1", Some("aws")),
            ("cn-northwest-1", Some("aws-cn")),
            ("us-gov-west-1", Some("aws-us-gov")),
            ("us-iso-east-1", Some("aws-iso")),
            ("us-isob-east-1", Some("aws-iso-b")),
            ("us-isof-south-1", Some("aws-iso-f")),
            ("eu-isoe-west-1", Some("aws-iso-e")),
            ("eusc-de-east-1", Some("aws-eusc")),
            ("xx-east-1", None),
        ] {
            assert_eq!(partition_of_region(region), partition, "{region}");
        }
    }
}
