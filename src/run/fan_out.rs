//! Fan-out: a round too large for one invocation becomes one work item per account-region,
//! sent to an SQS queue whose event source is this same function.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::aws::ServiceError;
use crate::domain::outcome::RegionError;
use crate::entry::events::{RunRequest, WorkItem};
use crate::invocation::Invocation;

/// SendMessageBatch takes at most ten messages.
const BATCH: usize = 10;

pub fn item(
    invocation: &Invocation,
    request: &RunRequest,
    account: &str,
    region: &str,
) -> WorkItem {
    WorkItem {
        account_id: account.to_owned(),
        region: region.to_owned(),
        parent_run_id: invocation.run_id.clone(),
        dry_run: request.dry_run,
        format: request.format,
    }
}

/// Sends the work items; returns those the queue took, and an error for each it did not
/// (that account-region is then not audited in this round, and says so).
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    items: Vec<WorkItem>,
) -> (Vec<WorkItem>, Vec<RegionError>) {
    let mut sent = Vec::new();
    let mut errors = Vec::new();
    let not_sent = |item: &WorkItem, code: &str, message: &str| RegionError {
        account_id: item.account_id.clone(),
        region: item.region.clone(),
        error_code: code.to_owned(),
        error_message: format!("work item not sent to the fan-out queue {queue_url}: {message}"),
    };
    for chunk in items.chunks(BATCH) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, item) in chunk.iter().enumerate() {
            let entry = serde_json::to_string(item)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| e.to_string())
                });
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => errors.push(not_sent(item, "InvalidRequest", &e)),
            }
        }
        if entries.is_empty() {
            continue;
        }
        match sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                for ok in out.successful() {
                    if let Some(item) = ok.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                        sent.push(item.clone());
                    }
                }
                for bad in out.failed() {
                    if let Some(item) = bad.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                        errors.push(not_sent(
                            item,
                            bad.code(),
                            bad.message().unwrap_or("refused"),
                        ));
                    }
                }
            }
            Err(e) => {
                let e = ServiceError::from_sdk(&e);
                errors.extend(chunk.iter().map(|item| not_sent(item, &e.code, &e.message)));
            }
        }
    }
    (sent, errors)
}
