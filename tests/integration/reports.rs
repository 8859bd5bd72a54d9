//! READ_REPORTS against the local stack: each SUCCESS report read from the bucket (JSON and
//! CSV, the stack's reports built from the CA's real certificates), counted since the CA's
//! previous report, on the summary and the ledger's history item.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use pca_audit_scheduler::domain::report::ReportStatus;
use pca_audit_scheduler::evidence::contents::UNREADABLE;
use pca_audit_scheduler::run;
use pca_audit_scheduler::services::Services;
use pca_audit_scheduler::services::{Clock, SystemClock};
use serde_json::{Value, json};
use support::{World, attr, control, invocation, outcome_of, run, scheduled};

fn reading(world: &World, format: &str, clock: Arc<dyn Clock>) -> Services {
    let settings = world.settings_with(&[("READ_REPORTS", "true"), ("REPORT_FORMAT", format)]);
    Services::new(settings, &world.sdk, clock).with_create_period(Duration::ZERO)
}

/// One ACTIVE CA that issued `issued` certificates and revoked the first `revoked`.
fn ca_with_certificates(world: &World, issued: usize, revoked: usize) -> Value {
    let out = control(
        "POST",
        "/seed",
        Some(
            json!({"account_id": world.account_id, "region": "us-east-1",
                    "cas": [{"state": "ACTIVE", "count": 1, "issued": issued, "revoked": revoked}]}),
        ),
    );
    out["certificate_authorities"][0].clone()
}

fn n(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    name: &str,
) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .unwrap_or_else(|| panic!("{name} in {item:?}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn each_report_read_in_json_and_csv_gives_its_counts_on_the_summary_and_history() {
    for format in ["JSON", "CSV"] {
        let world = World::new().await;
        world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 0}));
        let ca = ca_with_certificates(&world, 3, 1);
        let arn = ca["arn"].as_str().unwrap();
        let services = reading(&world, format, Arc::new(SystemClock::default()));

        let summary = run(&services, &scheduled(), "run-1").await;

        let o = outcome_of(&summary, arn);
        assert_eq!(o["outcome"], "requested", "{format}: {o:#}");
        let report = &o["report"];
        assert_eq!(report["status"], "SUCCESS", "{format}: {o:#}");
        let contents = &report["contents"];
        // No earlier report: everything the CA signed is new.
        assert_eq!(contents["certificates"], 3, "{format}: {o:#}");
        assert_eq!(contents["issuedSince"], 3);
        assert_eq!(contents["revokedSince"], 1);
        let issued: Vec<&str> = ca["issued"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut first_issued: Vec<&str> = contents["firstIssued"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        first_issued.sort();
        let mut expected = issued.clone();
        expected.sort();
        assert_eq!(first_issued, expected, "{format}");
        assert_eq!(contents["firstRevoked"], json!([ca["revoked"][0]]));

        let history = world.history(arn).await;
        assert_eq!(attr(&history[0], "status"), Some("SUCCESS"));
        // The SHA-256 of what was read, on the summary and the history item (its value is
        // held to the object's in `evidence::`).
        let sha256 = report["object"]["sha256"].as_str().unwrap_or_default();
        assert_eq!(sha256.len(), 64, "{format}: {o:#}");
        assert_eq!(attr(&history[0], "sha256"), Some(sha256));
        assert_eq!(n(&history[0], "certificates"), 3);
        assert_eq!(n(&history[0], "certificates_issued"), 3);
        assert_eq!(n(&history[0], "certificates_revoked"), 1);
        let revoked = history[0]["first_revoked"].as_l().unwrap();
        assert_eq!(
            revoked[0].as_s().unwrap(),
            ca["revoked"][0].as_str().unwrap()
        );

        let metrics = summary.metrics_document("fn");
        assert_eq!(metrics["CertificatesIssued"], 3);
        assert_eq!(metrics["CertificatesRevoked"], 1);
    }
}

#[tokio::test]
async fn a_second_report_counts_only_what_was_signed_since_the_first() {
    let world = World::new().await;
    world.configure_emulator(
        json!({"create_rps": 1000, "report_delay_seconds": 0, "window_seconds": 0}),
    );
    let ca = ca_with_certificates(&world, 2, 1);
    let arn = ca["arn"].as_str().unwrap();
    let first = run(
        &reading(&world, "CSV", Arc::new(SystemClock::default())),
        &scheduled(),
        "run-1",
    )
    .await;
    assert_eq!(
        outcome_of(&first, arn)["report"]["contents"]["issuedSince"],
        2,
        "{first:#?}"
    );

    // The CA signs two more certificates and revokes one of them; the next report is due
    // after the CA's window (the clock moved on past it).
    let more = control(
        "POST",
        "/certificates",
        Some(json!({"arn": arn, "issued": 2, "revoked": 1})),
    );
    let later = Arc::new(SystemClock {
        offset: Duration::from_secs(31 * 60),
    });
    let second = run(&reading(&world, "CSV", later), &scheduled(), "run-2").await;

    let o = outcome_of(&second, arn);
    assert_eq!(o["outcome"], "requested", "{o:#}");
    let contents = &o["report"]["contents"];
    assert_eq!(contents["certificates"], 4, "{o:#}");
    assert_eq!(contents["issuedSince"], 2, "{o:#}");
    assert_eq!(contents["revokedSince"], 1, "{o:#}");
    assert_eq!(contents["firstRevoked"], json!([more["revoked"][0]]));
    let history = world.history(arn).await;
    assert_eq!(history.len(), 2);
    assert_eq!(n(&history[0], "certificates_issued"), 2);
    assert_eq!(n(&history[1], "certificates_issued"), 2);
}

#[tokio::test]
async fn a_report_that_cannot_be_parsed_is_a_clear_error_and_stays_success() {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 600}));
    let ca = ca_with_certificates(&world, 1, 0);
    let arn = ca["arn"].as_str().unwrap();
    let services = reading(&world, "JSON", Arc::new(SystemClock::default()));
    // Too little time to wait for the report: it is followed up next run.
    let short = invocation("short", Duration::from_secs(14));
    let first = run::run(&services, &scheduled(), &short).await;
    let key = outcome_of(&first, arn)["s3Key"]
        .as_str()
        .unwrap()
        .to_owned();

    // The service writes it, and something overwrites it with what is not a report.
    world.finish_reports();
    world.lift_the_writers_deny().await;
    world
        .s3
        .put_object()
        .bucket(&world.bucket)
        .key(&key)
        .body(
            b"[{\"certificateArn\": \"arn:x\", \"issuedAt\": "
                .to_vec()
                .into(),
        )
        .send()
        .await
        .unwrap();
    let second = run(&services, &scheduled(), "next").await;

    let o = outcome_of(&second, arn);
    let report = &o["report"];
    assert_eq!(report["status"], "SUCCESS", "{o:#}");
    assert!(report.get("contents").is_none(), "{o:#}");
    let detail = report["detail"].as_str().unwrap();
    assert!(detail.starts_with(UNREADABLE), "{detail}");
    assert!(detail.contains(&key) && detail.contains("EOF"), "{detail}");
    assert_eq!(second.counts.reports_succeeded, 1);
    let history = world.history(arn).await;
    assert_eq!(attr(&history[0], "status"), Some("SUCCESS"));
    assert!(attr(&history[0], "detail").unwrap().starts_with(UNREADABLE));
    assert!(!history[0].contains_key("certificates"));
    // S3 keeps a CRC64NVME of the object and the function read no end of it: no SHA-256.
    assert!(!history[0].contains_key("sha256"), "{:?}", history[0]);
    assert_eq!(
        second.certificate_authorities[0]
            .report
            .as_ref()
            .map(|r| r.status),
        Some(ReportStatus::Success)
    );
}

/// Reading is held to its budget: a report whose reading takes longer than
/// READ_REPORTS_MAX_SECONDS (S3 slow to give its body) stays SUCCESS, unread, saying why, and
/// the run goes on.
#[tokio::test]
async fn a_report_over_the_reading_budget_stays_success_unread_and_says_why() {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 0}));
    let ca = ca_with_certificates(&world, 3, 0);
    let arn = ca["arn"].as_str().unwrap();
    let settings =
        world.settings_with(&[("READ_REPORTS", "true"), ("READ_REPORTS_MAX_SECONDS", "1")]);
    let services =
        Services::new(settings, &world.sdk, support::clock()).with_create_period(Duration::ZERO);
    // GetObject is S3's only GET in a run that finds nothing to recover.
    let slow = support::fault(
        json!({"service": "s3", "account_id": world.account_id, "operation": "GET",
        "kind": "slow", "delay_ms": 2500, "rate": 1}),
    );
    let begun = std::time::Instant::now();
    let summary = run(&services, &scheduled(), "slow-read").await;
    support::clear_fault(&slow);
    let report = &outcome_of(&summary, arn)["report"];
    assert_eq!(report["status"], "SUCCESS", "{report:#}");
    let detail = report["detail"].as_str().unwrap();
    assert!(
        detail.contains("was not read") && detail.contains("READ_REPORTS_MAX_SECONDS"),
        "{detail}"
    );
    assert!(report.get("contents").is_none());
    assert!(begun.elapsed() < Duration::from_secs(20));
    let history = world.history(arn).await;
    assert_eq!(attr(&history[0], "status"), Some("SUCCESS"));
    assert!(
        !history[0].contains_key("certificates"),
        "no counts of an unread report"
    );
    assert!(
        !history[0].contains_key("sha256"),
        "no SHA-256 of a report read in part"
    );
}

/// An earlier run's report seen SUCCESS is read beside this run's creates, not before them: a
/// report slow to read (S3 slow to give its body) holds up no CA of its account-region.
#[tokio::test]
async fn reading_an_earlier_report_never_holds_up_the_creates() {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 600}));
    let earlier = ca_with_certificates(&world, 2, 0);
    let earlier = earlier["arn"].as_str().unwrap();
    let services = reading(&world, "JSON", Arc::new(SystemClock::default()));
    // Too little time to wait for the report: it stays CREATING, for the next run.
    let first = world.run_leaving_reports_creating(&services).await;
    assert_eq!(first.counts.reports_pending, 1, "{first:#?}");
    world.finish_reports();
    let due = ca_with_certificates(&world, 1, 0);
    let due = due["arn"].as_str().unwrap();
    // GetObject is S3's only GET in a run that finds nothing to recover.
    let slow = support::fault(
        json!({"service": "s3", "account_id": world.account_id, "operation": "GET",
        "kind": "slow", "delay_ms": 3000, "rate": 1}),
    );
    let second = run(&services, &scheduled(), "second").await;
    support::clear_fault(&slow);

    assert_eq!(
        outcome_of(&second, due)["outcome"],
        "requested",
        "{second:#?}"
    );
    let read = &outcome_of(&second, earlier)["report"];
    assert_eq!(read["status"], "SUCCESS", "{read:#}");
    assert_eq!(
        read["contents"]["certificates"], 2,
        "read in this run: {read:#}"
    );
    let instant = |item: &std::collections::HashMap<_, _>, name| {
        pca_audit_scheduler::domain::time::Timestamp::parse(attr(item, name).unwrap()).unwrap()
    };
    let requested = instant(&world.window_item(due).await.unwrap(), "last_requested_at");
    let recorded = instant(
        &world.window_item(earlier).await.unwrap(),
        "last_verified_at",
    );
    assert!(
        requested < recorded,
        "the due CA was requested ({requested}) before the slow read was recorded ({recorded})"
    );
}

/// A report written over between its pin and its reading (a bucket without versioning, and a
/// writer the bucket's Deny no longer stops) is not read as the report: the GetObject carries
/// the pinned ETag (If-Match), S3 refuses it with 412 ("otherwise, return a 412 Precondition
/// Failed error", S3 API reference, GetObject), and the report stays SUCCESS, unread, with no
/// counts and no SHA-256 of the other object.
#[tokio::test]
async fn a_report_written_over_after_its_pin_is_not_read_as_the_report() {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 0}));
    world.lift_the_writers_deny().await;
    let ca = ca_with_certificates(&world, 3, 0);
    let arn = ca["arn"].as_str().unwrap();
    let services = reading(&world, "JSON", Arc::new(SystemClock::default()));
    // The reading's GetObject (the run's only S3 GET) waits at the stack; meanwhile the
    // object is written over.
    let slow = support::fault(
        json!({"service": "s3", "account_id": world.account_id, "operation": "GET",
        "kind": "slow", "delay_ms": 3000, "rate": 1}),
    );
    let overwrite = async {
        let held = || {
            control("GET", "/faults", None)["faults"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["id"] == slow.as_str() && f["injected"].as_u64() >= Some(1))
        };
        while !held() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let history = world.history(arn).await;
        let key = attr(&history[0], "s3_key")
            .expect("the report's key")
            .to_owned();
        world
            .s3
            .put_object()
            .bucket(&world.bucket)
            .key(&key)
            .body(b"[]".to_vec().into())
            .send()
            .await
            .expect("written over");
    };
    let request = scheduled();
    let (summary, ()) = tokio::join!(run(&services, &request, "overwritten"), overwrite);
    support::clear_fault(&slow);

    let report = &outcome_of(&summary, arn)["report"];
    assert_eq!(report["status"], "SUCCESS", "{report:#}");
    let detail = report["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(UNREADABLE) && detail.contains("PreconditionFailed"),
        "{detail}"
    );
    assert!(report.get("contents").is_none(), "{report:#}");
    assert!(report["object"].get("sha256").is_none(), "{report:#}");
    let history = world.history(arn).await;
    assert!(!history[0].contains_key("certificates"), "{:?}", history[0]);
    assert!(!history[0].contains_key("sha256"), "{:?}", history[0]);
}
