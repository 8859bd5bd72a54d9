//! The account-regions a run covers: from the request and the settings, each account entered once.

use std::collections::{BTreeSet, HashMap};

use aws_config::SdkConfig;

use crate::aws::accounts;
use crate::config::{Accounts, Settings};
use crate::domain::arn::CaArn;
use crate::domain::ids::{Account, Region};
use crate::domain::outcome::{AccountError, CaOutcome, failed, outcome};
use crate::domain::request::{RunRequest, RunScope};
use crate::domain::scope::{Membership, ScopeRefusal, account_refusal, region_refusal};
use crate::invocation::Invocation;
use crate::services::Services;

/// One account-region of a run, and for a manual request the CAs asked for there.
pub(crate) struct Target {
    pub(crate) account: Account,
    pub(crate) region: Region,
    pub(crate) only: Option<Vec<CaArn>>,
}

/// The accounts (sorted) and regions (in the order configured) a run covers, for its summary.
pub(crate) fn accounts_and_regions(
    targets: &[Target],
    home: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let accounts: BTreeSet<String> = targets
        .iter()
        .map(|t| t.account.id(home).to_owned())
        .collect();
    let mut regions: Vec<String> = Vec::new();
    for t in targets {
        if !regions.iter().any(|r| t.region == r.as_str()) {
            regions.push(t.region.to_string());
        }
    }
    (accounts.into_iter().collect(), regions)
}

/// Enters every member account of the targets once, side by side: the accounts entered, and
/// for one that cannot be, its error (and a failure for each CA a manual request names there).
pub(crate) async fn enter_accounts(
    services: &Services,
    invocation: &Invocation,
    targets: &[Target],
) -> (
    HashMap<Account, SdkConfig>,
    Vec<CaOutcome>,
    Vec<AccountError>,
) {
    let distinct: BTreeSet<Account> = targets.iter().map(|t| t.account.clone()).collect();
    let partition = invocation.partition.as_deref();
    let results = futures::future::join_all(
        distinct
            .iter()
            .map(|a| async move { (a.clone(), services.account_sdk(a, partition).await) }),
    )
    .await;
    let (mut entered, mut outcomes, mut errors) = (HashMap::new(), Vec::new(), Vec::new());
    for (account, result) in results {
        match result {
            Ok(sdk) => {
                entered.insert(account, sdk);
            }
            Err(e) => {
                for t in targets.iter().filter(|t| t.account == account) {
                    for arn in t.only.iter().flatten() {
                        outcomes.push(outcome(arn, failed(&e.error_code, e.error_message.clone())));
                    }
                }
                errors.push(e);
            }
        }
    }
    (entered, outcomes, errors)
}

/// The account-regions of a run: the work item's one; the accounts and regions of the CAs a
/// manual request names; or every audited account in every configured region. The one check
/// of the configured scope: a work item, or a CA a manual request names, of an account or a
/// region outside it is refused here, before any role is assumed or any CA listed (the
/// round's own targets are made from the settings, inside it by construction).
pub(crate) async fn targets(
    services: &Services,
    request: &RunRequest,
    home: Option<&str>,
    outcomes: &mut Vec<CaOutcome>,
) -> Result<Vec<Target>, AccountError> {
    let settings = &services.settings;
    match &request.scope {
        RunScope::AccountRegion { account, region } => {
            let account = match account {
                Account::Member(id) => Account::of(id, home),
                own => own.clone(),
            };
            let id = account.id(home).to_owned();
            let members = memberships(services, [id.clone()].into(), home).await;
            let refusal = region_refusal(region.as_str(), &settings.regions)
                .or_else(|| account_refusal(&id, &settings.accounts, home, members.get(&id)));
            if let Some(r) = refusal {
                return Err(AccountError {
                    account_id: id,
                    error_code: r.code.into(),
                    error_message: format!("work item for {region} refused: {}", r.message),
                });
            }
            let (region, only) = (region.clone(), None);
            Ok(vec![Target {
                account,
                region,
                only,
            }])
        }
        RunScope::These(arns) => {
            let ids = arns.iter().map(|a| a.account().to_owned()).collect();
            let members = memberships(services, ids, home).await;
            let refusal = |arn: &CaArn| {
                region_refusal(arn.region(), &settings.regions).or_else(|| {
                    let id = arn.account();
                    account_refusal(id, &settings.accounts, home, members.get(id))
                })
            };
            Ok(named_targets(arns, settings, home, refusal, outcomes))
        }
        RunScope::Every => every(services, home).await,
    }
}

/// With `AUDIT_ACCOUNTS=ORGANIZATION`, what the organization says of each of these accounts
/// (side by side); with a list or no setting, nothing to ask. An account whose membership
/// cannot be read is left out, and so refused, with the reason logged.
async fn memberships(
    services: &Services,
    ids: BTreeSet<String>,
    home: Option<&str>,
) -> HashMap<String, Membership> {
    let Accounts::Organization { units } = &services.settings.accounts else {
        return HashMap::new();
    };
    let looked_up = futures::future::join_all(ids.into_iter().map(|id| async move {
        let found = accounts::membership(&services.sdk, &id, units).await;
        (id, found)
    }))
    .await;
    let mut found = HashMap::new();
    for (id, membership) in looked_up {
        match membership {
            Ok(m) => {
                found.insert(id, m);
            }
            Err(e) => tracing::error!(
                account_id = id,
                home_account = home,
                "could not read the account's membership of the organization: {e}"
            ),
        }
    }
    found
}

/// Every audited account in every configured region: a scheduled run's round, and what a
/// coverage request holds the ledger against.
pub(crate) async fn every(
    services: &Services,
    home: Option<&str>,
) -> Result<Vec<Target>, AccountError> {
    let settings = &services.settings;
    let accounts = accounts::audited(&settings.accounts, &services.sdk, home).await?;
    Ok(accounts
        .iter()
        .flat_map(|a| {
            settings.regions.iter().map(move |r| Target {
                account: a.clone(),
                region: r.clone(),
                only: None,
            })
        })
        .collect())
}

/// The account-regions of the CAs a manual request names, each with its CAs; a CA outside
/// the configured scope (`refusal`) fails here, before anything is listed.
pub(crate) fn named_targets(
    arns: &[CaArn],
    settings: &Settings,
    home: Option<&str>,
    refusal: impl Fn(&CaArn) -> Option<ScopeRefusal>,
    outcomes: &mut Vec<CaOutcome>,
) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for arn in arns {
        let account = Account::of(&arn.account_id(), home);
        if let Some(r) = refusal(arn) {
            outcomes.push(outcome(arn, failed(r.code.as_str(), r.message)));
            continue;
        }
        // With only its own account audited, every CA named is reached with the function's
        // own credentials, whatever the account its ARN says (the listing tells).
        let account = match settings.accounts {
            Accounts::Own => Account::Own,
            _ => account,
        };
        match targets
            .iter_mut()
            .find(|t| t.account == account && t.region == arn.region())
        {
            Some(t) => t.only.get_or_insert_with(Vec::new).push(arn.clone()),
            None => targets.push(Target {
                account,
                region: arn.region_id(),
                only: Some(vec![arn.clone()]),
            }),
        }
    }
    targets
}
