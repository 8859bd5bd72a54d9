//! The account-regions a run covers: from the request and the settings, each account entered once.

use std::collections::{BTreeSet, HashMap};

use aws_config::SdkConfig;

use crate::aws::accounts;
use crate::config::{Accounts, Settings};
use crate::domain::arn::CaArn;
use crate::domain::code::Code;
use crate::domain::ids::{Account, Region};
use crate::domain::outcome::{AccountError, CaOutcome, failed, outcome};
use crate::domain::request::{RunRequest, RunScope};
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
/// manual request names (refusing, CA by CA, those of accounts not audited); or every audited
/// account in every configured region.
pub(crate) async fn targets(
    services: &Services,
    request: &RunRequest,
    home: Option<&str>,
    outcomes: &mut Vec<CaOutcome>,
) -> Result<Vec<Target>, AccountError> {
    let settings = &services.settings;
    let audited = |account: &Account| match account {
        Account::Own => true,
        Account::Member(id) => match &settings.accounts {
            // Without its own id the function cannot tell: the CA's listing will.
            Accounts::Own => home.is_none(),
            Accounts::List(ids) => ids.contains(id),
            Accounts::Organization { .. } => true,
        },
    };
    match &request.scope {
        RunScope::AccountRegion { account, region } => {
            let account = match account {
                Account::Member(id) => Account::of(id, home),
                own => own.clone(),
            };
            if !audited(&account) {
                return Err(AccountError {
                    account_id: account.label().to_owned(),
                    error_code: Code::AccountNotAudited.into(),
                    error_message: format!(
                        "work item for account {account}, which is not among the accounts this function audits (AUDIT_ACCOUNTS)"
                    ),
                });
            }
            let (region, only) = (region.clone(), None);
            Ok(vec![Target {
                account,
                region,
                only,
            }])
        }
        RunScope::These(arns) => Ok(named_targets(arns, settings, home, audited, outcomes)),
        RunScope::Every => every(services, home).await,
    }
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

/// The account-regions of the CAs a manual request names, each with its CAs; a CA of an
/// account not audited is refused here, before anything is listed.
pub(crate) fn named_targets(
    arns: &[CaArn],
    settings: &Settings,
    home: Option<&str>,
    audited: impl Fn(&Account) -> bool,
    outcomes: &mut Vec<CaOutcome>,
) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for arn in arns {
        let account = Account::of(&arn.account_id(), home);
        if !audited(&account) {
            outcomes.push(outcome(
                arn,
                failed(
                    Code::AccountNotAudited.as_str(),
                    format!(
                        "account {} is not among the accounts this function audits (AUDIT_ACCOUNTS)",
                        arn.account()
                    ),
                ),
            ));
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
