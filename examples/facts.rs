//! What the function's code says of itself, as one JSON document on standard output, for the
//! template's tests (`infra_tests`): the metrics it emits, the work item it reads from the
//! fan-out queue, and the ledger table's keys and index. The infra tests read these from the
//! code's own values instead of parsing Rust files by path.
//!
//! `cargo run --quiet --locked --example facts`

use pca_audit_scheduler::aws::ledger;
use pca_audit_scheduler::domain::outcome::{CaOutcome, Outcome};
use pca_audit_scheduler::domain::report::{CheckLimit, ReportCheck, ReportContents, ReportStatus};
use pca_audit_scheduler::domain::request::{Trigger, WorkItem};
use pca_audit_scheduler::domain::time::Timestamp;
use pca_audit_scheduler::run::summary::RunSummary;
use serde_json::{Map, Value, json};

/// Every metric the EMF document can carry: a summary with a report read, so that the
/// READ_REPORTS metrics are in it too.
fn metrics() -> Value {
    let read = CaOutcome {
        certificate_authority_arn: "arn".into(),
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
        outcome: Outcome::WouldRequest,
        report: Some(ReportCheck {
            report_id: "r".into(),
            status: ReportStatus::Success,
            size_bytes: Some(1),
            detail: None,
            limit: CheckLimit::None,
            contents: Some(ReportContents::default()),
            pin: Some(Default::default()),
        }),
        rejected_objects: Vec::new(),
    };
    let summary = RunSummary {
        version: Default::default(),
        run_id: "r".into(),
        trigger: Trigger::Manual,
        dry_run: false,
        started_at: Timestamp::from_epoch_seconds(0),
        finished_at: Timestamp::from_epoch_seconds(1),
        accounts: vec![],
        regions: vec![],
        counts: RunSummary::count(std::slice::from_ref(&read)),
        account_errors: vec![],
        region_errors: vec![],
        fanned_out: vec![],
        certificate_authorities: vec![read],
        certificate_authorities_omitted: 0,
        outcomes_key: None,
        alerts: vec![],
    };
    let doc = summary.metrics_document("f");
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    json!({
        "namespace": directive["Namespace"],
        "dimensions": directive["Dimensions"],
        "names": directive["Metrics"].as_array().into_iter().flatten().map(|m| m["Name"].clone()).collect::<Vec<_>>(),
    })
}

/// The work item's fields as the queue's body carries them, each with whether the function
/// refuses a body without it (found by reading the body back with that field left out).
fn work_item_fields() -> Value {
    let item = WorkItem {
        account_id: "111111111111".into(),
        region: "us-east-1".into(),
        parent_run_id: "r".into(),
        dry_run: true,
        format: Some(pca_audit_scheduler::domain::report::ReportFormat::Csv),
    };
    let Value::Object(full) = serde_json::to_value(&item).expect("a work item serialises") else {
        unreachable!("a struct serialises to an object")
    };
    let mut fields = Map::new();
    for name in full.keys() {
        let mut without = full.clone();
        without.remove(name);
        let required = serde_json::from_value::<WorkItem>(Value::Object(without)).is_err();
        fields.insert(name.clone(), required.into());
    }
    Value::Object(fields)
}

fn main() {
    let facts = json!({
        "metrics": metrics(),
        "workItemFields": work_item_fields(),
        "ledger": {
            "partitionKey": ledger::PARTITION_KEY,
            "sortKey": ledger::SORT_KEY,
            "caIndex": {"name": ledger::history::CA_INDEX, "key": ledger::history::CA_INDEX_KEY},
            "claimWrites": ledger::window_item::CLAIM_WRITES,
        },
    });
    println!("{facts:#}");
}
