//! Notify: the run's alerts sent as EventBridge events at its end, in the batches PutEvents
//! takes, while a call can still end before the invocation's deadline. An event that cannot
//! be sent is logged whole (its detail) and counted; it never fails the run.

use std::time::Duration;

use tokio::time::Instant;

use crate::aws::events;
use crate::aws::timeouts::OPERATION_TIMEOUT;
use crate::domain::alerts::{Alert, AlertKind, batches};
use crate::domain::code::Code;
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
        let answers = if may_call(invocation) {
            events::put(&services.events, bus, batch)
                .await
                .unwrap_or_else(|e| vec![Some((e.code, e.message)); batch.len()])
        } else {
            let why = "the invocation's time ran out before it could be sent";
            vec![Some((Code::Timeout.as_str().to_owned(), why.to_owned())); batch.len()]
        };
        for (alert, answer) in batch.iter().zip(answers) {
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
