//! EventBridge: one PutEvents call with the events of one batch (the run cuts them into
//! batches the call takes: `domain::alerts::batches`).

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::aws::ServiceError;
use crate::domain::alerts::{Alert, SOURCE};

/// Sends one batch of events to `bus` (a name or an ARN; `None`, the account's default bus).
/// Per event, in order: `None` when EventBridge took it, or its error code and message.
/// PutEvents answers per entry ("Handling failures with PutEvents": "if an individual entry
/// within a request fails, EventBridge continues processing the rest of the entries"), and
/// its `Entries` are in the order of the request's.
pub async fn put(
    client: &aws_sdk_eventbridge::Client,
    bus: Option<&str>,
    alerts: &[Alert],
) -> Result<Vec<Option<(String, String)>>, ServiceError> {
    let entries: Vec<PutEventsRequestEntry> = alerts
        .iter()
        .map(|a| {
            PutEventsRequestEntry::builder()
                .source(SOURCE)
                .detail_type(a.kind.detail_type())
                .detail(a.detail())
                .set_resources(Some(a.resources()))
                .set_event_bus_name(bus.map(str::to_owned))
                .build()
        })
        .collect();
    let out = client
        .put_events()
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    let mut answers: Vec<Option<(String, String)>> = out
        .entries()
        .iter()
        .map(|e| {
            e.error_code().map(|code| {
                let message = e.error_message().unwrap_or("refused");
                (code.to_owned(), message.to_owned())
            })
        })
        .collect();
    // An answer shorter than the request leaves the rest unaccounted for: not taken.
    answers.resize(
        alerts.len(),
        Some(("NoAnswer".to_owned(), "no entry in the answer".to_owned())),
    );
    Ok(answers)
}
