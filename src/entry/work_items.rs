//! Work items: a batch from the fan-out queue, each record one account-region run on its
//! own, side by side, and the batch item failures SQS reads for those that failed.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::FutureExt;
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

/// Runs the work items of an SQS batch side by side and reports the ones that failed (a
/// malformed item, an account or region not reached, a CA failed) as batch item failures: SQS
/// gives those again later, and to the dead-letter queue in the end, while the ledger makes a
/// retry touch only what is left.
///
/// Side by side, not one after the other: each item is its own account-region, with its own
/// create quota (one a second per account and region) and its own pacer, so one item's wait
/// for its reports (the follow-up, seconds after its last create) overlaps the others' creates,
/// and the batch takes about as long as its longest item, not the sum of them. That is what
/// lets the event source hand out batches of ten within the function's 900 s: ten
/// account-regions of the default 200 CAs take about 200 s together, where one after the other
/// they would take 2,000. Two items of the same account-region (a message delivered twice)
/// still share its pacer and its claims through the ledger: one create a second, each CA once.
pub async fn work_items(
    services: &Services,
    batch: SqsEvent,
    invocation: &Invocation,
) -> SqsBatchResponse {
    side_by_side(&batch.records, |message, id| {
        done(services, message, id, invocation)
    })
    .await
}

/// Each record's work, all at once; the records whose work did not end done are the batch
/// item failures, in the batch's order. A record whose work panics is a failure of its own
/// (logged), not of the invocation: the other items' answers stand, and only it is given back
/// to the queue (a failed invocation would give back the whole batch, and a record that always
/// panics would take the other nine with it to the dead-letter queue).
async fn side_by_side<'a, F, Fut>(records: &'a [SqsMessage], work: F) -> SqsBatchResponse
where
    F: Fn(&'a SqsMessage, &'a str) -> Fut,
    Fut: Future<Output = bool> + 'a,
{
    let ends = futures::future::join_all(records.iter().map(|message| {
        let id = message.message_id.as_deref().unwrap_or_default();
        AssertUnwindSafe(work(message, id))
            .catch_unwind()
            .map(move |end| {
                let done = end.unwrap_or_else(|_| {
                    tracing::error!(
                        message_id = id,
                        "the work item panicked; given back to its queue"
                    );
                    false
                });
                (id, done)
            })
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (id, done) in ends {
        if !done {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_owned();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// An SQS message id: SQS's are UUIDs (`MessageId`, "a unique identifier for the message",
/// SQS API reference, Message; the length and alphabet are not documented, so assumed from
/// every id SQS hands out): letters, digits and hyphens, at most 128 characters.
fn is_message_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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
    if !is_message_id(id) {
        // The id becomes the item's run id, in the ledger and the logs: nothing SQS did not
        // make gets there.
        tracing::error!(
            run_id,
            "refused the SQS record: its messageId is not one SQS makes"
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

    fn message(id: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m
    }

    fn failures(response: &SqsBatchResponse) -> Vec<&str> {
        (response.batch_item_failures.iter())
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_s_items_run_side_by_side_and_each_fails_alone() {
        let records: Vec<SqsMessage> = ["a", "b", "c", "d"].map(message).to_vec();
        let started = tokio::time::Instant::now();
        let response = side_by_side(&records, |_, id| async move {
            // Each item waits as a run waits for its creates' slots and its reports.
            let secs = match id {
                "a" => 30,
                "b" => 10,
                _ => 20,
            };
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            match id {
                "b" => false,
                "c" => panic!("a bug in one work item"),
                _ => true,
            }
        })
        .await;
        // The batch took as long as its longest item (30 s), not the sum (80 s).
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(30));
        // The item that failed and the one that panicked are given back, alone, in order.
        assert_eq!(failures(&response), vec!["b", "c"]);
    }

    #[test]
    fn only_an_id_sqs_makes_becomes_a_run_id() {
        assert!(is_message_id("059f36b4-87a3-44ab-83d2-661975830a7d"));
        for foreign in [
            "",
            "a/b",
            "x y",
            "run\n{\"level\":\"ERROR\"}",
            &"a".repeat(129),
        ] {
            assert!(!is_message_id(foreign), "{foreign:?}");
        }
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
