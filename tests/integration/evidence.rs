//! What counts as evidence: only a report the service made. Tried as someone who may write
//! to the report bucket would try it.

use crate::support;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use pca_audit_scheduler::aws::ledger::ClaimResult;
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::bucket::report_prefix;
use pca_audit_scheduler::domain::outcome::Outcome;
use pca_audit_scheduler::services::{Clock, SystemClock};
use support::{World, attr, fast_account, run_as};

/// A run claims the CA and dies (its lease runs out) having requested nothing; meanwhile an
/// object the service never made is put where the service writes the CA's reports. The next
/// run takes the CA over and searches the bucket for the dead run's report: it must not
/// record the planted object, but say so, and request a real report.
#[tokio::test]
async fn an_object_the_service_did_not_make_is_never_recorded_as_the_dead_runs_report() {
    let world = World::new().await;
    fast_account(&world.account_id);
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let ca = CaArn::parse(&arn).unwrap();
    let services = world.fast_services();

    let now = SystemClock::default().now();
    let claim = (services.ledger)
        .claim(&ca, "dead-run", now, now.plus(Duration::from_secs(1)))
        .await
        .expect("claim");
    assert!(matches!(claim, ClaimResult::Won(_)));
    // Shaped as the service names reports, a UUID it never gave out, not empty.
    let forged_id = uuid::Uuid::new_v4().to_string();
    let forged_key = format!("{}{forged_id}.json", report_prefix(&ca));
    world
        .s3
        .put_object()
        .bucket(&world.bucket)
        .key(&forged_key)
        .body(ByteStream::from_static(b"[]"))
        .send()
        .await
        .expect("anyone with s3:PutObject on the bucket can put it there");
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let summary = run_as(&services, &world, "after").await;
    let o = &summary.certificate_authorities[0];
    let real_id = match &o.outcome {
        Outcome::Requested { report_id, .. } => report_id.clone(),
        other => panic!("a real report is requested instead: {other:?}"),
    };
    assert_ne!(real_id, forged_id);
    assert_eq!(
        world.accepted_creates()[&arn],
        1,
        "the service made one report"
    );
    let keys: Vec<&str> = o
        .rejected_objects
        .iter()
        .map(|r| r.s3_key.as_str())
        .collect();
    assert_eq!(keys, [forged_key.as_str()], "{o:#?}");
    assert!(
        o.rejected_objects[0].reason.contains("no audit report"),
        "{o:#?}"
    );
    assert_eq!(
        (summary.counts.recovered, summary.counts.rejected_objects),
        (0, 1)
    );
    let metrics = summary.metrics_document("f");
    assert_eq!(metrics["RejectedObjects"], 1);

    // The ledger holds the service's report and nothing of the planted one.
    let history = world.history(&arn).await;
    let recorded: Vec<&str> = history
        .iter()
        .filter_map(|h| attr(h, "report_id"))
        .collect();
    assert_eq!(recorded, [real_id.as_str()]);
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_report_id"), Some(real_id.as_str()));
    assert!(
        !window.contains_key("orphan_since"),
        "the dead run's mark is settled"
    );
}
