//! Work items: a batch from the fan-out queue, each record one account-region run on its
//! own, and the batch item failures SQS reads for those that failed.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::Value;

use super::{run_and_report, verdict};
use crate::config::FanOut;
use crate::domain::code::Code;
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
        if !done(services, &message, &id, invocation).await {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// One record: whether it is done with (run, or refused for good), or goes back to its queue.
async fn done(
    services: &Services,
    message: &SqsMessage,
    id: &str,
    invocation: &Invocation,
) -> bool {
    let run_id = &invocation.run_id;
    if let Err(why) = from_the_fan_out_queue(message, services.settings.fan_out.as_ref()) {
        // Not ours to run, and not to lose either: a batch item failure returns it to its
        // queue (and that queue's dead-letter queue, if any, keeps it).
        let code = Code::NotTheFanOutQueue.as_str();
        tracing::error!(
            run_id,
            message_id = id,
            error_code = code,
            "refused the SQS record: {why}"
        );
        return false;
    }
    let request = match RunRequest::from_work_item(message.body.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(run_id, message_id = id, "refused the work item: {e}");
            return false;
        }
    };
    let mut item = invocation.clone();
    item.run_id = format!("{run_id}/{id}");
    let summary = run_and_report(services, &request, &item).await;
    let retry = summary.retry_would_help();
    match verdict(summary) {
        Ok(_) => true,
        // An account not entered, an account-region not listed, a CA deferred or failed on the
        // way to a service: given back to the queue, to be tried again.
        Err(e) if retry => {
            tracing::error!(
                run_id = item.run_id,
                message_id = id,
                "work item failed: {e}"
            );
            false
        }
        // Outside AUDIT_ACCOUNTS or AUDIT_REGIONS, or CAs failed for good (a FAILED report, a
        // refused create): a retry would do the same. Recorded in the ledger, the summary's
        // line and the metrics (Failed, OutOfScope), so it alarms; the item is done.
        Err(e) => {
            let run_id = &item.run_id;
            tracing::error!(run_id, message_id = id, "work item done, not retried: {e}");
            true
        }
    }
}

/// Whether the record comes from the configured fan-out queue: its `eventSourceARN`
/// (`arn:<partition>:sqs:<region>:<account>:<name>`) names the account and queue that
/// `FANOUT_QUEUE_URL` (`https://sqs.<region>.amazonaws.com/<account>/<name>`) does. Another
/// queue mapped to the function, or a record shaped by hand, is no work item.
fn from_the_fan_out_queue(
    message: &SqsMessage,
    fan_out: Option<&FanOut>,
) -> Result<(), ForeignRecord> {
    let arn = message.event_source_arn.clone().unwrap_or_default();
    let Some(fan_out) = fan_out else {
        return Err(ForeignRecord::NoQueue { arn });
    };
    let mut path = fan_out.queue_url.rsplit('/');
    let (name, account) = (
        path.next().unwrap_or_default(),
        path.next().unwrap_or_default(),
    );
    let same = match arn.split(':').collect::<Vec<&str>>()[..] {
        ["arn", _, "sqs", region, a, n] => {
            // AWS's own endpoints name the region in the URL's host; the local stack's not.
            let regional = fan_out.queue_url.contains(".amazonaws.com");
            let region_ok = !regional || fan_out.queue_url.contains(&format!("sqs.{region}."));
            a == account && n == name && region_ok
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        let queue = fan_out.queue_url.clone();
        Err(ForeignRecord::OtherQueue { arn, queue })
    }
}

/// An SQS record that is no work item of this function.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum ForeignRecord {
    #[error("from {arn:?}, but no fan-out queue is configured (FANOUT_QUEUE_URL)")]
    NoQueue { arn: String },
    #[error("from {arn:?}, not the fan-out queue {queue} (FANOUT_QUEUE_URL)")]
    OtherQueue { arn: String, queue: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(arn: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.event_source_arn = arn.map(str::to_owned);
        m
    }

    #[test]
    fn only_the_fan_out_queue_s_records_are_work_items() {
        let queue = FanOut {
            queue_url: "https://sqs.us-east-1.amazonaws.com/111111111111/pca-fanout".into(),
            threshold: 8,
        };
        let ours = "arn:aws:sqs:us-east-1:111111111111:pca-fanout";
        assert_eq!(
            from_the_fan_out_queue(&record(Some(ours)), Some(&queue)),
            Ok(())
        );
        for other in [
            "arn:aws:sqs:us-east-1:111111111111:other",
            "arn:aws:sqs:us-east-1:222222222222:pca-fanout",
            "arn:aws:sqs:eu-west-1:111111111111:pca-fanout",
            "arn:aws:sns:us-east-1:111111111111:pca-fanout",
            "pca-fanout",
        ] {
            let e = from_the_fan_out_queue(&record(Some(other)), Some(&queue)).unwrap_err();
            let e = e.to_string();
            assert!(e.contains(other) && e.contains("FANOUT_QUEUE_URL"), "{e}");
        }
        assert!(from_the_fan_out_queue(&record(None), Some(&queue)).is_err());
        let e = from_the_fan_out_queue(&record(Some(ours)), None).unwrap_err();
        assert!(
            e.to_string().contains("no fan-out queue is configured"),
            "{e}"
        );
        // The local stack's URL has no region in it: account and name decide.
        let local = FanOut {
            queue_url: "http://127.0.0.1:5000/111111111111/pca-fanout".into(),
            threshold: 8,
        };
        assert_eq!(
            from_the_fan_out_queue(&record(Some(ours)), Some(&local)),
            Ok(())
        );
    }
}
