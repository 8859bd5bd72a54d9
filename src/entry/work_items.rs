//! Work items: a batch from the fan-out queue, each record one account-region run on its
//! own, and the batch item failures SQS reads for those that failed.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::Value;

use super::{run_and_report, verdict};
use crate::domain::request::RunRequest;
use crate::invocation::Invocation;
use crate::services::Services;

/// Whether the event is a batch from an SQS event source mapping (the fan-out queue).
pub(super) fn is_sqs_batch(event: &Value) -> bool {
    event
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// ledger makes a retry touch only what is left.
pub async fn work_items(
    services: &Services,
    batch: SqsEvent,
    invocation: &Invocation,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        let request = RunRequest::from_work_item(message.body.as_deref().unwrap_or_default());
        let ok = match request {
            Err(e) => {
                tracing::error!(
                    run_id = invocation.run_id,
                    message_id = id,
                    "refused the work item: {e}"
                );
                false
            }
            Ok(request) => {
                let mut item = invocation.clone();
                item.run_id = format!("{}/{id}", invocation.run_id);
                let summary = run_and_report(services, &request, &item).await;
                match verdict(summary) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::error!(
                            run_id = item.run_id,
                            message_id = id,
                            "work item failed: {e}"
                        );
                        false
                    }
                }
            }
        };
        if !ok {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}
