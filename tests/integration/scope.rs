//! What the function is configured to audit is a boundary. Tried as someone who can invoke the
//! function or send to its queue would try it: a work item, a CA named by hand and an SQS record
//! each reaching outside `AUDIT_ACCOUNTS`, `AUDIT_REGIONS` or the fan-out queue are refused
//! before any role is assumed or any CA listed, with nothing claimed or requested.

use crate::support;
use std::time::Duration;

use pca_audit_scheduler::domain::request::RunRequest;
use pca_audit_scheduler::entry::{self, Response};
use pca_audit_scheduler::run::summary::RunSummary;
use pca_audit_scheduler::services::Services;
use serde_json::{Value, json};
use support::*;

/// The fan-out queue these tests configure, and the ARN SQS gives its records.
fn queue(world: &World) -> (String, String) {
    let name = format!("fan-out-{}", world.table);
    (
        format!(
            "https://sqs.us-east-1.amazonaws.com/{}/{name}",
            world.account_id
        ),
        format!("arn:aws:sqs:us-east-1:{}:{name}", world.account_id),
    )
}

fn services(world: &World, extra: &[(&str, &str)]) -> Services {
    Services::new(world.settings_with(extra), &world.sdk, clock())
        .with_create_period(Duration::ZERO)
}

/// A work item run as the function runs one, in Lambda (its own account known).
async fn work_item(services: &Services, world: &World, account: &str, region: &str) -> RunSummary {
    let body =
        json!({"accountId": account, "region": region, "parentRunId": "round", "dryRun": false});
    let request = RunRequest::from_work_item(&body.to_string()).expect("a work item");
    let mut inv = invocation("item", Duration::from_secs(600));
    inv.home_account = Some(world.account_id.clone());
    pca_audit_scheduler::run::run(services, &request, &inv).await
}

/// A batch of SQS records through the handler: the ids SQS is told to give again.
async fn batch(services: &Services, world: &World, records: Vec<Value>) -> Vec<String> {
    let context = context(
        &uuid::Uuid::new_v4().to_string(),
        &function_arn(&world.account_id),
    );
    let event = lambda_runtime::LambdaEvent::new(json!({"Records": records}), context);
    match entry::handle(services, event).await.expect("batch") {
        Response::Batch(b) => b
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect(),
        other => panic!("a batch answered otherwise: {other:?}"),
    }
}

fn record(id: &str, arn: &str, body: Value) -> Value {
    json!({"messageId": id, "eventSource": "aws:sqs", "eventSourceARN": arn,
           "awsRegion": "us-east-1", "body": body.to_string()})
}

/// `AUDIT_REGIONS=us-east-1`: a work item naming eu-west-1 is refused (and never given back to
/// the queue: it can never pass), a CA of eu-west-1 named by hand fails, and a record from
/// another queue is no work item; the CAs of eu-west-1 are never claimed or requested.
#[tokio::test]
async fn nothing_reaches_a_region_or_a_queue_outside_the_configuration() {
    let world = World::new().await;
    world.fast();
    let here = world.seeded_arns(&[("ACTIVE", 1)]);
    let there = arns_of(&world.seed_in("eu-west-1", &[("ACTIVE", 2)]));
    let (url, arn) = queue(&world);
    let s = services(
        &world,
        &[("AUDIT_REGIONS", "us-east-1"), ("FANOUT_QUEUE_URL", &url)],
    );

    let refused = work_item(&s, &world, &world.account_id, "eu-west-1").await;
    assert_eq!(refused.counts.out_of_scope, 1, "{refused:#?}");
    let e = &refused.account_errors[0];
    assert_eq!(e.error_code, "RegionNotAudited");
    assert!(e.error_message.contains("eu-west-1") && e.error_message.contains("AUDIT_REGIONS"));
    assert!(!refused.retry_would_help(), "never given back to the queue");
    assert_eq!(refused.metrics_document("f")["OutOfScope"], 1);

    let named = run_as_manual(&s, &world, &[&here[0], &there[0]]).await;
    let o = outcome_of(&named, &there[0]);
    assert_eq!(o["errorCode"], "RegionNotAudited", "{o:#}");
    assert_eq!(outcome_of(&named, &here[0])["outcome"], "requested");

    let item = |region: &str| json!({"accountId": world.account_id, "region": region, "parentRunId": "r", "dryRun": false});
    let other_queue = arn.replace("fan-out-", "someone-elses-");
    let given_back = batch(
        &s,
        &world,
        vec![
            record("outside", &arn, item("eu-west-1")),
            record("foreign", &other_queue, item("us-east-1")),
        ],
    )
    .await;
    assert_eq!(
        given_back,
        ["foreign"],
        "the foreign record is not lost; the refused item is done"
    );
    for ca in &there {
        assert!(world.window_item(ca).await.is_none(), "{ca} never claimed");
    }
    let requested: Vec<String> = world.create_calls().into_iter().map(|(ca, _)| ca).collect();
    assert_eq!(
        requested,
        [here[0].clone()],
        "only the CA inside the configuration"
    );
}

async fn run_as_manual(services: &Services, world: &World, arns: &[&str]) -> RunSummary {
    let mut inv = invocation("manual", Duration::from_secs(600));
    inv.home_account = Some(world.account_id.clone());
    pca_audit_scheduler::run::run(services, &manual(arns), &inv).await
}

/// A list of accounts: a work item for an account not listed (its member role deployed and
/// trusting the function all the same) is refused, and so is one for the function's own
/// account when the list leaves it out.
#[tokio::test]
async fn an_account_outside_the_list_is_refused_the_functions_own_included() {
    let world = World::new().await;
    let listed = Member::new(&world.account_id, Some("")).await;
    let unlisted = Member::new(&world.account_id, Some("")).await;
    for a in [&world.account_id, &listed.account_id, &unlisted.account_id] {
        fast_account(a);
        seed_account(a, REGION, &[seed_group("ACTIVE", 1)]);
    }
    let s = services(&world, &[("AUDIT_ACCOUNTS", &listed.account_id)]);
    for account in [&unlisted.account_id, &world.account_id] {
        let refused = work_item(&s, &world, account, REGION).await;
        let e = &refused.account_errors[0];
        assert_eq!(e.error_code, "AccountNotAudited", "{refused:#?}");
        assert!(
            e.error_message.contains(account.as_str())
                && e.error_message.contains("AUDIT_ACCOUNTS")
        );
    }
    assert!(unlisted.accepted_creates().is_empty());
    assert!(world.accepted_creates().is_empty());
    let served = work_item(&s, &world, &listed.account_id, REGION).await;
    assert_eq!(served.counts.requested, 1, "{served:#?}");
}

/// `ORGANIZATION` under one OU: a work item for an account outside the organization, and one
/// for an account of the organization outside the OU, are refused; one under a nested OU of
/// it is served.
#[tokio::test]
async fn an_account_outside_the_organization_or_its_units_is_refused() {
    let world = World::new().await;
    let org = Organization::new(&world).await;
    let pki = org.unit("pki", &org.root).await;
    let nested = org.unit("pki-prod", &pki).await;
    let sandbox = org.unit("sandbox", &org.root).await;
    let inside = org.account("pki-prod", &nested).await;
    let outside_units = org.account("sandbox", &sandbox).await;
    let stranger = Member::new(&world.account_id, Some("")).await;
    let mut members = Vec::new();
    let mut cas = Vec::new();
    for id in [&inside, &outside_units] {
        let m = Member::existing(id, &world.account_id).await;
        m.fast();
        cas.extend(m.seed_in(REGION, 1));
        members.push(m);
    }
    stranger.fast();
    cas.extend(stranger.seed_in(REGION, 1));
    world
        .allow_reports_from(&[&inside, &outside_units, &stranger.account_id])
        .await;
    let s = services(
        &world,
        &[
            ("AUDIT_ACCOUNTS", "ORGANIZATION"),
            ("AUDIT_ORGANIZATIONAL_UNITS", &pki),
        ],
    );

    for (account, says) in [
        (&outside_units, "AUDIT_ORGANIZATIONAL_UNITS"),
        (&stranger.account_id, "not an account of the organization"),
    ] {
        let refused = work_item(&s, &world, account, REGION).await;
        let e = &refused.account_errors[0];
        assert_eq!(e.error_code, "AccountNotAudited", "{refused:#?}");
        assert!(e.error_message.contains(says), "{}", e.error_message);
    }
    // The same CAs named by hand: the two outside fail, the one inside is served.
    let named = run_as_manual(&s, &world, &[&cas[0], &cas[1], &cas[2]]).await;
    for outside in &cas[1..] {
        assert_eq!(
            outcome_of(&named, outside)["errorCode"],
            "AccountNotAudited",
            "{named:#?}"
        );
    }
    assert_eq!(outcome_of(&named, &cas[0])["outcome"], "requested");
    assert!(members[1].accepted_creates().is_empty());
    assert!(stranger.accepted_creates().is_empty());
    assert_eq!(members[0].accepted_creates()[&cas[0]], 1);
}

/// A manual run over more account-regions than FANOUT_THRESHOLD, dry run included, sends work
/// items like the schedule's round instead of doing them all in one invocation, and says so.
#[tokio::test]
async fn a_manual_dry_run_over_the_threshold_fans_out() {
    let world = World::new().await;
    world.fast();
    world.seeded_arns(&[("ACTIVE", 1)]);
    world.seed_in("eu-west-1", &[("ACTIVE", 1)]);
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let name = format!("fan-out-{}", world.table);
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .unwrap();
    let s = services(
        &world,
        &[
            ("AUDIT_REGIONS", "us-east-1,eu-west-1"),
            ("FANOUT_QUEUE_URL", &url),
            ("FANOUT_THRESHOLD", "1"),
        ],
    );
    let request = RunRequest::from_value(json!({"dryRun": true})).expect("a manual dry run");
    let mut inv = invocation("by-hand", Duration::from_secs(600));
    inv.home_account = Some(world.account_id.clone());
    let summary = pca_audit_scheduler::run::run(&s, &request, &inv).await;
    assert_eq!(summary.fanned_out.len(), 2, "{summary:#?}");
    assert!(summary.fanned_out.iter().all(|i| i.dry_run));
    assert!(
        summary.certificate_authorities.is_empty(),
        "nothing done here"
    );
    let sent = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await;
    assert_eq!(sent.expect("receive").messages().len(), 2);
}

/// A work item is given back to the queue only for what a retry may fix: an account whose
/// role cannot be assumed is; a CA whose report ended FAILED (the bucket policy lets the
/// service write nothing) is recorded and counted as failed, and its work item is done.
#[tokio::test]
async fn a_work_item_fails_only_for_what_a_retry_fixes() {
    let world = World::new().await;
    world.fast();
    let ca = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    world.delete_bucket_policy().await;
    let roleless = Member::new(&world.account_id, None).await;
    let (url, arn) = queue(&world);
    let accounts = format!("{},{}", world.account_id, roleless.account_id);
    let s = services(
        &world,
        &[("AUDIT_ACCOUNTS", &accounts), ("FANOUT_QUEUE_URL", &url)],
    );
    let item = |account: &str| json!({"accountId": account, "region": REGION, "parentRunId": "r", "dryRun": false});
    let given_back = batch(
        &s,
        &world,
        vec![
            record("failed-report", &arn, item(&world.account_id)),
            record("no-role", &arn, item(&roleless.account_id)),
        ],
    )
    .await;
    assert_eq!(given_back, ["no-role"]);
    let history = world.history(&ca).await;
    assert_eq!(attr(&history[0], "status"), Some("FAILED"), "recorded");
}
