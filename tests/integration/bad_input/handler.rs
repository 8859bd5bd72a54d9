//! Refused input loses nothing, through the Lambda handler against the local stack.

use lambda_runtime::LambdaEvent;
use pca_audit_scheduler::entry;
use pca_audit_scheduler::entry::{Response, RunError};
use pca_audit_scheduler::services::Services;
use serde_json::{Value, json};

use super::{assert_says, corpus_bytes, corpus_json, too_many_arns};
use crate::support::*;

/// An event through the Lambda handler, as the function `audit` of `world`'s account.
pub(super) async fn invoke(
    services: &Services,
    world: &World,
    run_id: &str,
    payload: Value,
) -> Result<Response, RunError> {
    entry::handle(
        services,
        LambdaEvent::new(payload, context(run_id, &function_arn(&world.account_id))),
    )
    .await
}

async fn ledger_items(world: &World) -> i32 {
    world
        .dynamodb
        .scan()
        .table_name(&world.table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan ledger")
        .count
}

#[tokio::test]
async fn refused_events_request_nothing_and_write_nothing() {
    let (world, mut arns, services) = World::fast_with_cas(1).await;
    let arn = arns.remove(0);
    let mut many = too_many_arns();
    many["certificateAuthorityArns"][0] = json!(arn);
    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"certificateAuthorityArns": [arn, "arn:aws:s3:::my-evidence-bucket"]}),
            &["certificateAuthorityArns[1]", "not an acm-pca ARN"],
        ),
        (
            json!({"certificateAuthorityArns": [arn], "dryRun": "no"}),
            &["`dryRun`: invalid type: a string"],
        ),
        (
            json!({"certificateAuthorityArns": [arn], "dryrun": false}),
            &["unknown field `dryrun`"],
        ),
        (
            json!({"certificateAuthorityArns": [arn], "format": "XML"}),
            &["unknown variant `XML`"],
        ),
        (many, &["1001 entries"]),
        (
            json!({"Records": [{"messageId": "m-1", "eventSource": "aws:sqs", "body": 5}]}),
            &["invalid SQS event"],
        ),
        (corpus_json("events/arns-empty.json"), &["is empty"]),
        (corpus_json("events/an-array.json"), &["not an array"]),
        (corpus_json("events/null.json"), &["not null"]),
        (
            corpus_json("events/eventbridge-other-source.json"),
            &["aws.s3"],
        ),
        (
            corpus_json("events/eventbridge-bad-time.json"),
            &["invalid EventBridge event"],
        ),
        (
            corpus_json("events/scheduler-wrong-source.json"),
            &["unsupported event"],
        ),
        (
            corpus_json("events/scheduler-unknown-field.json"),
            &["unknown field `dryRun`"],
        ),
        (
            corpus_json("events/secret-looking-field.json"),
            &["unknown field `apiKey`"],
        ),
    ];
    for (i, (event, says)) in cases.into_iter().enumerate() {
        let what = event.to_string();
        let what = &what[..what.len().min(200)];
        match invoke(&services, &world, &format!("refused-{i}"), event).await {
            Err(RunError::InvalidRequest(e)) => assert_says(what, &e.to_string(), says),
            Err(e) => panic!("{what}: refused as {e:?}, not as an invalid request"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }

    // Work items that are refused one by one come back as batch item failures.
    let bad_items = [
        "work-items/account-short.json",
        "work-items/region-invalid.json",
        "work-items/unknown-field.json",
        "work-items/not-json.txt",
    ];
    let records: Vec<Value> = bad_items
        .iter()
        .map(|name| {
            json!({"messageId": name, "eventSource": "aws:sqs",
                   "body": String::from_utf8(corpus_bytes(name)).unwrap()})
        })
        .collect();
    match invoke(
        &services,
        &world,
        "refused-batch",
        json!({"Records": records}),
    )
    .await
    {
        Ok(Response::Batch(b)) => {
            let failed: Vec<&str> = b
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            assert_eq!(failed, bad_items, "every bad work item is a failure");
        }
        other => panic!("a batch answered {other:?}"),
    }

    assert!(
        world.create_calls().is_empty(),
        "{:?}",
        world.create_calls()
    );
    assert!(world.accepted_creates().is_empty());
    assert_eq!(ledger_items(&world).await, 0, "the ledger was written");
    assert!(world.objects("").await.is_empty(), "the bucket was written");
    assert!(world.window_item(&arn).await.is_none());
}

/// `EventBridgeEvent` ignores fields it does not know: a Scheduled Event envelope that also
/// carries a manual request's fields must be refused, not run as a full, real scheduled run.
#[tokio::test]
async fn a_scheduled_envelope_carrying_a_dry_run_is_refused_and_requests_nothing() {
    let (world, mut arns, services) = World::fast_with_cas(1).await;
    let arn = arns.remove(0);
    let event = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-11-25T02:00:00Z", "detail": {},
        "dryRun": true, "certificateAuthorityArns": [arn]
    });
    let result = invoke(&services, &world, "envelope-with-dry-run", event).await;
    let accepted = world.accepted_creates();
    match result {
        Err(RunError::InvalidRequest(e)) => assert!(e.to_string().contains("dryRun"), "{e}"),
        Err(e) => panic!("refused as {e:?}"),
        Ok(_) => panic!("accepted as a real scheduled run; creates: {accepted:?}"),
    }
    assert!(accepted.is_empty(), "{accepted:?}");
    assert!(world.window_item(&arn).await.is_none());
}
