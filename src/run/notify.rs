//! Notify: the run's alerts sent as EventBridge events at its end, in the batches PutEvents
//! takes, and (opt-in) the CAs' alerts as Security Hub findings, while a call can still end
//! before the invocation's deadline. An event or a finding that cannot be sent is logged whole
//! and counted; it never fails the run.

use std::time::Duration;

use tokio::time::Instant;

use crate::aws::security_hub::{self, Answers};
use crate::aws::timeouts::OPERATION_TIMEOUT;
use crate::aws::{ServiceError, events};
use crate::domain::alerts::{Alert, AlertKind, batches};
use crate::domain::code::Code;
use crate::domain::findings::{Finding, Home, MAX_FINDINGS_PER_CALL, State, of_alerts};
use crate::domain::outcome::{AccountError, RegionError};
use crate::invocation::Invocation;
use crate::services::Services;

/// Kept between the end of the last call and the deadline: the summary and the metric line.
const LAST_SECOND: Duration = Duration::from_secs(1);

/// Whether a call started now ends, whatever happens to it, before the deadline with a
/// second to spare (every call ends within `OPERATION_TIMEOUT`).
pub(crate) fn may_call(invocation: &Invocation) -> bool {
    Instant::now() + OPERATION_TIMEOUT + LAST_SECOND <= invocation.deadline
}

/// The alerts of the accounts not entered (but not of those outside the scope: a request's
/// error, not an account's) and of the account-regions not listed.
pub(crate) fn account_alerts(
    accounts: &[AccountError],
    regions: &[RegionError],
    run_id: &str,
) -> Vec<Alert> {
    let accounts = (accounts.iter())
        .filter(|a| !Code::is_out_of_scope(&a.error_code))
        .map(|a| {
            Alert::of_account(AlertKind::AccountNotEntered, &a.account_id, None)
                .because(&a.error_code, &a.error_message)
        });
    let regions = regions.iter().map(|r| {
        Alert::of_account(AlertKind::RegionNotListed, &r.account_id, Some(&r.region))
            .because(&r.error_code, &r.error_message)
    });
    let mut all: Vec<Alert> = accounts.chain(regions).collect();
    for a in &mut all {
        a.run_id = run_id.to_owned();
    }
    all
}

/// Sends the alerts to the configured bus (none when `EVENT_BUS` is set empty); how many
/// were sent, and how many not.
pub(crate) async fn send(
    services: &Services,
    invocation: &Invocation,
    alerts: &[Alert],
) -> (usize, usize) {
    let Some(bus) = services.settings.event_bus.as_deref() else {
        return (0, 0);
    };
    let bus = (bus != "default").then_some(bus);
    let sizes: Vec<usize> = alerts.iter().map(Alert::entry_size).collect();
    let (mut sent, mut not_sent) = (0, 0);
    for batch in batches(&sizes) {
        let batch = &alerts[batch];
        let call = events::put(&services.events, bus, batch);
        for (alert, answer) in batch
            .iter()
            .zip(within_time(invocation, batch.len(), call).await)
        {
            match answer {
                None => sent += 1,
                Some((code, message)) => {
                    not_sent += 1;
                    tracing::error!(
                        error_code = code,
                        detail_type = alert.kind.detail_type(),
                        detail = alert.detail(),
                        "event not sent: {message}"
                    );
                }
            }
        }
    }
    (sent, not_sent)
}

/// A call's answers, per item: the call's own when it can still end before the deadline,
/// else each item "timed out" without a call; a call refused whole refuses each item.
async fn within_time(
    invocation: &Invocation,
    items: usize,
    call: impl Future<Output = Result<Answers, ServiceError>>,
) -> Answers {
    if !may_call(invocation) {
        let why = "the invocation's time ran out before it could be sent";
        return vec![Some((Code::Timeout.as_str().to_owned(), why.to_owned())); items];
    }
    call.await
        .unwrap_or_else(|e| vec![Some((e.code, e.message)); items])
}

/// Where the findings go: the function's own account (known from its ARN in Lambda), its
/// partition and its region.
fn home(services: &Services, invocation: &Invocation) -> Option<Home> {
    Some(Home {
        partition: (invocation.partition.clone()).unwrap_or_else(|| "aws".to_owned()),
        region: services.sdk.region()?.to_string(),
        account: invocation.home_account.clone()?,
    })
}

/// With `SECURITY_HUB_FINDINGS` on, imports the CAs' alerts as findings, at most 100 a call,
/// and sets the workflow of those audited again to RESOLVED; how many were imported (and,
/// for one audited again, resolved), and how many not.
pub(crate) async fn import_findings(
    services: &Services,
    invocation: &Invocation,
    alerts: &[Alert],
) -> (usize, usize) {
    if !services.settings.security_hub_findings {
        return (0, 0);
    }
    let Some(home) = home(services, invocation) else {
        let n = (alerts.iter())
            .filter(|a| a.certificate_authority_arn.is_some())
            .count();
        if n > 0 {
            tracing::error!(
                findings = n,
                "findings not imported: the function's own account is not known"
            );
        }
        return (0, n);
    };
    let now = services.clock.now();
    let findings = of_alerts(alerts, &home, now);
    let (mut imported, mut not_imported) = (0, 0);
    let mut failed = |f: &Finding, (code, message): (String, String), what: &str| {
        not_imported += 1;
        tracing::error!(
            error_code = code,
            finding_id = f.id,
            ca_arn = f.resource.id,
            "{what}: {message}"
        );
    };
    for batch in findings.chunks(MAX_FINDINGS_PER_CALL) {
        let call = security_hub::import(&services.security_hub, batch);
        let mut resolved = Vec::new();
        for (f, answer) in batch
            .iter()
            .zip(within_time(invocation, batch.len(), call).await)
        {
            match answer {
                Some(error) => failed(f, error, "finding not imported"),
                None if f.state == State::Resolved => resolved.push(f.clone()),
                None => imported += 1,
            }
        }
        if resolved.is_empty() {
            continue;
        }
        let call = security_hub::resolve(&services.security_hub, &resolved);
        for (f, answer) in resolved
            .iter()
            .zip(within_time(invocation, resolved.len(), call).await)
        {
            match answer {
                Some(error) => failed(f, error, "finding archived, workflow not set to RESOLVED"),
                None => imported += 1,
            }
        }
    }
    (imported, not_imported)
}
