//! Every sample event in `events/` goes through the Lambda handler against the local stack,
//! and is accepted or refused as docs/requests.md says.

use crate::support;

use lambda_runtime::Diagnostic;
use pca_audit_scheduler::entry;
use pca_audit_scheduler::run::summary::RunSummary;
use pca_audit_scheduler::services::Services;
use serde_json::{Value, json};
use support::*;

/// The ARN `events/manual-one-ca.json` names; the test puts a real CA in its place.
const SAMPLE_ARN: &str = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555";

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

async fn invoke(services: &Services, payload: Value) -> Result<RunSummary, Diagnostic> {
    match handle(services, payload).await? {
        entry::Response::Run(summary) => Ok(*summary),
        other => panic!("a run's event answered otherwise: {other:?}"),
    }
}

#[test]
fn every_sample_event_is_covered_here() {
    let mut names: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        // events/alerts/: the events the function sends (checked in domain::alerts' tests).
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "coverage.json",
            "dry-run.json",
            "fan-out-work-item.json",
            "invalid.json",
            "manual-one-ca.json",
            "scheduled.json",
            "scheduler.json"
        ],
        "a new sample event needs its test in tests/integration/events.rs"
    );
}

/// The fan-out queue's work item, as SQS delivers it: the sample's account and region are
/// those of a deployment, so the test points its body at the function's own account
/// (`self`) in the local stack's region.
#[tokio::test]
async fn fan_out_work_item_audits_its_account_region_and_reports_no_batch_failure() {
    let (world, arns, _) = World::fast_with_cas(2).await;
    // The sample's queue is the function's fan-out queue.
    let queue = "https://sqs.us-east-1.amazonaws.com/123456789012/pca-audit-scheduler-FanOutQueue-Xy7Zq1Rt9Uv3";
    let settings = world.settings_with(&[("FANOUT_QUEUE_URL", queue)]);
    let services =
        Services::new(settings, &world.sdk, clock()).with_create_period(std::time::Duration::ZERO);
    let mut sample = event("fan-out-work-item.json");
    let record = &mut sample["Records"][0];
    let mut body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["accountId", "dryRun", "parentRunId", "region"],
        "the body is a work item as fan_out.rs sends it"
    );
    body["accountId"] = json!("self");
    body["region"] = json!(REGION);
    record["body"] = json!(body.to_string());
    match handle(&services, sample).await.expect("batch handled") {
        entry::Response::Batch(b) => {
            assert!(b.batch_item_failures.is_empty(), "{b:?}")
        }
        other => panic!("a work item answered otherwise: {other:?}"),
    }
    assert_eq!(world.accepted_creates().len(), arns.len());
}

#[tokio::test]
async fn scheduled_event_audits_every_ca_and_a_second_one_skips_them() {
    let (world, arns, services) = World::fast_with_cas(2).await;
    let first = invoke(&services, event("scheduled.json"))
        .await
        .expect("scheduled run");
    assert_eq!(first.counts.requested, 2);
    let second = invoke(&services, event("scheduled.json"))
        .await
        .expect("second run");
    assert_eq!(second.counts.skipped, 2);
    assert_eq!(world.accepted_creates().len(), arns.len());
}

#[tokio::test]
async fn scheduler_input_audits_every_ca() {
    let (_world, _arns, services) = World::fast_with_cas(2).await;
    let summary = invoke(&services, event("scheduler.json"))
        .await
        .expect("scheduler run");
    assert_eq!(summary.counts.requested, 2);
    let trigger = serde_json::to_value(&summary.trigger).unwrap();
    assert_eq!(trigger["source"], "aws.scheduler");
    assert_eq!(trigger["id"], "c1b4a3f2-8d5e-4c7a-9f1e-2b3d4c5e6f70");
}

#[tokio::test]
async fn manual_request_audits_only_its_ca_in_csv() {
    let (world, arns, services) = World::fast_with_cas(2).await;
    let text = event("manual-one-ca.json")
        .to_string()
        .replace(SAMPLE_ARN, &arns[0]);
    let summary = invoke(&services, serde_json::from_str(&text).unwrap())
        .await
        .expect("manual run");
    assert_eq!(summary.certificate_authorities.len(), 1);
    let o = outcome_of(&summary, &arns[0]);
    assert_eq!(o["outcome"], "requested");
    assert_eq!(o["format"], "CSV");
    assert!(o["s3Key"].as_str().unwrap().ends_with(".csv"));
    assert_eq!(world.accepted_creates().len(), 1);
}

#[tokio::test]
async fn manual_request_for_the_sample_arn_fails_naming_it() {
    // As shipped, the sample names a CA that does not exist here.
    let (world, _arns, services) = World::fast_with_cas(1).await;
    let err = invoke(&services, event("manual-one-ca.json"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "CertificateAuthoritiesFailed");
    assert!(
        err.error_message.contains(SAMPLE_ARN),
        "{}",
        err.error_message
    );
    assert!(world.create_calls().is_empty());
}

#[tokio::test]
async fn dry_run_reports_without_requesting() {
    let (world, _arns, services) = World::fast_with_cas(2).await;
    let summary = invoke(&services, event("dry-run.json"))
        .await
        .expect("dry run");
    assert!(summary.dry_run);
    assert_eq!(summary.counts.would_request, 2);
    assert!(world.create_calls().is_empty());
}

#[tokio::test]
async fn invalid_request_is_refused_and_requests_nothing() {
    let (world, arns, services) = World::fast_with_cas(1).await;
    let err = invoke(&services, event("invalid.json")).await.unwrap_err();
    assert_eq!(err.error_type, "InvalidRequest");
    assert!(
        err.error_message.contains("unknown field `dryrun`"),
        "{}",
        err.error_message
    );
    assert!(world.create_calls().is_empty());
    assert!(world.window_item(&arns[0]).await.is_none());
}
