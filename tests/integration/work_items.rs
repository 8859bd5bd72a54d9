//! Batches of the fan-out queue, as Lambda's event source mapping hands them out (up to ten
//! records): each record one account-region, run side by side, each with its own run id, its
//! reports followed up in the same invocation, and its own batch item failure.

use crate::support;

use lambda_runtime::LambdaEvent;
use pca_audit_scheduler::entry::{self, Response};
use pca_audit_scheduler::services::Services;
use serde_json::{Value, json};
use support::{Member, World, attr, clock, create_calls_of};

const REGION: &str = "us-east-1";

/// An SQS record of the queue `queue_arn` carrying the work item of `account`'s `REGION`, as
/// the fanning-out run sends it.
fn record(id: &str, queue_arn: &str, account: &str) -> Value {
    let body =
        json!({"accountId": account, "region": REGION, "parentRunId": "round-1", "dryRun": false});
    json!({"messageId": id, "receiptHandle": format!("handle-{id}"), "body": body.to_string(),
           "eventSource": "aws:sqs", "awsRegion": REGION, "eventSourceARN": queue_arn,
           "attributes": {}, "messageAttributes": {}})
}

/// The instants (epoch seconds) of the creates the emulator accepted for `account`, first to
/// last.
fn accepted_create_times(account: &str) -> Vec<f64> {
    let mut times: Vec<f64> = create_calls_of(account)
        .iter()
        .filter(|c| c["outcome"] == "Accepted")
        .map(|c| c["time"].as_f64().unwrap())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// At AWS's quota (one create a second per account and region) and the emulator's report
/// delay: two account-regions of one batch request their CAs in the same seconds (neither
/// waits for the other's reports), every report has ended SUCCESS in the ledger when the
/// invocation answers, each item's CAs carry its own run id, and the item whose account
/// cannot be entered is the batch's only failure.
#[tokio::test]
async fn a_batch_s_account_regions_are_audited_side_by_side_and_only_the_failed_item_returns() {
    let world = World::new().await;
    let b = Member::new(&world.account_id, Some("")).await;
    let c = Member::new(&world.account_id, Some("")).await;
    // An account of the list without the member role: it cannot be entered.
    let no_role = Member::new(&world.account_id, None).await;
    let members = [&b, &c, &no_role].map(|m| m.account_id.as_str());
    world.allow_reports_from(&members).await;
    for m in [&b, &c] {
        m.seed_in(REGION, 2);
    }
    no_role.seed_in(REGION, 1);
    let queue_name = format!("fan-out-{}", world.table);
    let queue_url = format!("http://127.0.0.1:1/{}/{queue_name}", world.account_id);
    let queue_arn = format!("arn:aws:sqs:{REGION}:{}:{queue_name}", world.account_id);
    let services = Services::new(
        world.settings_with(&[
            ("AUDIT_ACCOUNTS", &members.join(",")),
            ("AUDIT_REGIONS", REGION),
            ("FANOUT_QUEUE_URL", &queue_url),
        ]),
        &world.sdk,
        clock(),
    );
    let records: Vec<Value> = [("item-b", &b), ("item-c", &c), ("item-none", &no_role)]
        .iter()
        .map(|(id, m)| record(id, &queue_arn, &m.account_id))
        .collect();
    let request_id = uuid::Uuid::new_v4().to_string();
    let context = support::context(&request_id, &support::function_arn(&world.account_id));
    let event = LambdaEvent::new(json!({ "Records": records }), context);
    let answer = entry::handle(&services, event)
        .await
        .expect("batch handled");

    let Response::Batch(batch) = answer else {
        panic!("a batch answered otherwise: {answer:?}");
    };
    let failed: Vec<&str> = (batch.batch_item_failures.iter())
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["item-none"], "only the item not entered goes back");
    // Every CA of the two entered account-regions once, the reports followed up to their end
    // in this same invocation, each under its own item's run id.
    for (m, item) in [(&b, "item-b"), (&c, "item-c")] {
        let creates = m.accepted_creates();
        assert_eq!(creates.len(), 2, "{creates:?}");
        assert!(creates.values().all(|&n| n == 1), "{creates:?}");
        for arn in creates.keys() {
            let window = world.window_item(arn).await.expect("window item");
            assert_eq!(
                attr(&window, "last_report_status"),
                Some("SUCCESS"),
                "{window:?}"
            );
            let run = format!("{request_id}/{item}");
            assert_eq!(attr(&window, "last_run_id"), Some(run.as_str()));
        }
    }
    assert!(no_role.accepted_creates().is_empty());
    // Side by side: each account-region's creates began before the other's ended. One after
    // the other, the second would start only after the first's follow-up (seconds later).
    let (tb, tc) = (
        accepted_create_times(&b.account_id),
        accepted_create_times(&c.account_id),
    );
    assert!(
        tb[0] < tc[tc.len() - 1] && tc[0] < tb[tb.len() - 1],
        "creates of b {tb:?} and of c {tc:?} do not overlap"
    );
}
