//! The scheduler against the local stack: DynamoDB Local for the ledger, moto (with the
//! audit-report operations) for ACM PCA and S3. Counts of create calls come from the emulator.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use pca_audit_scheduler::domain::time::Timestamp;
use pca_audit_scheduler::entry::verdict;
use serde_json::json;
use support::*;

#[tokio::test]
async fn first_run_requests_every_audited_ca_and_records_report_and_key() {
    let world = World::new().await;
    world.fast();
    let audited = world.seeded_arns(&[("ACTIVE", 2), ("DISABLED", 1)]);
    // The service makes no report of an EXPIRED CA (user guide, "Generate audits"): skipped
    // by state, spending no create.
    let pending = world.seeded_arns(&[("PENDING_CERTIFICATE", 1), ("DELETED", 1), ("EXPIRED", 1)]);
    let services = world.fast_services();

    let summary = run(&services, &scheduled(), "run-1").await;

    assert_eq!(summary.counts.requested, 3, "{summary:#?}");
    assert_eq!(summary.counts.failed, 0);
    for arn in &audited {
        let o = outcome_of(&summary, arn);
        assert_eq!(o["outcome"], "requested");
        let id = o["reportId"].as_str().unwrap();
        let key = o["s3Key"].as_str().unwrap();
        let ca_id = arn.rsplit('/').next().unwrap();
        assert_eq!(key, format!("audit-report/{ca_id}/{id}.json"));

        let window = world.window_item(arn).await.expect("window item");
        assert_eq!(attr(&window, "last_report_id"), Some(id));
        assert_eq!(attr(&window, "last_s3_key"), Some(key));
        assert_eq!(attr(&window, "last_s3_bucket"), Some(world.bucket.as_str()));
        assert_eq!(attr(&window, "last_format"), Some("JSON"));
        assert_eq!(attr(&window, "last_run_id"), Some("run-1"));
        assert!(!window.contains_key("lease_run_id"), "claim released");

        let history = world.history(arn).await;
        assert_eq!(history.len(), 1);
        assert_eq!(attr(&history[0], "s3_key"), Some(key));
        assert!(
            history[0]
                .get("expires_at")
                .and_then(|v| v.as_n().ok())
                .is_some(),
            "TTL set"
        );

        // The service wrote the report where the ledger says it is.
        let object = world
            .s3
            .head_object()
            .bucket(&world.bucket)
            .key(key)
            .send()
            .await;
        assert!(object.is_ok(), "report object {key} exists: {object:?}");
    }
    for arn in &pending {
        let o = outcome_of(&summary, arn);
        assert_eq!(o["outcome"], "skipped");
        assert_eq!(o["reason"], "caState");
        assert!(
            !o["detail"].as_str().unwrap().contains("EXPIRED,")
                && o["detail"]
                    .as_str()
                    .unwrap()
                    .contains("only of ACTIVE and DISABLED"),
            "{o}"
        );
        assert!(
            world.window_item(arn).await.is_none(),
            "no window claimed for {arn}"
        );
    }
    let calls = world.accepted_creates();
    assert_eq!(calls.len(), 3);
    assert!(calls.values().all(|n| *n == 1));
    assert!(verdict(summary).is_ok());
}

#[tokio::test]
async fn second_run_inside_window_requests_nothing_and_says_when_each_is_next_eligible() {
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 3)]);
    let services = world.fast_services();

    let first = run(&services, &scheduled(), "run-1").await;
    assert_eq!(first.counts.requested, 3);
    let second = run(&services, &scheduled(), "run-2").await;

    assert_eq!(second.counts.requested, 0);
    assert_eq!(second.counts.skipped, 3);
    for arn in &arns {
        let requested_at =
            Timestamp::parse(outcome_of(&first, arn)["requestedAt"].as_str().unwrap()).unwrap();
        let o = outcome_of(&second, arn);
        assert_eq!(o["reason"], "insideWindow");
        let next = Timestamp::parse(o["nextEligibleAt"].as_str().unwrap()).unwrap();
        assert_eq!(next, requested_at.plus(Duration::from_secs(30 * 60)));
    }
    assert_eq!(
        world.create_calls().len(),
        3,
        "no create call in the second run"
    );
}

#[tokio::test]
async fn every_page_of_every_configured_region_is_audited() {
    let world = World::new().await;
    world.fast();
    // More than one page (the service lists at most 100 a page) in one region, a few in another.
    let east = world.seeded_arns(&[("ACTIVE", 120)]);
    let west: Vec<String> = world
        .seed_in("eu-west-1", &[("ACTIVE", 3)])
        .iter()
        .map(|c| c["arn"].as_str().unwrap().to_string())
        .collect();
    let settings = world.settings_with(&[("AUDIT_REGIONS", "us-east-1,eu-west-1")]);
    let services = pca_audit_scheduler::services::Services::new(settings, &world.sdk, clock())
        .with_create_period(Duration::ZERO);

    let summary = run(&services, &scheduled(), "two-regions").await;

    assert_eq!(summary.counts.requested, 123, "{:?}", summary.counts);
    assert_eq!(summary.regions, vec!["us-east-1", "eu-west-1"]);
    for arn in west.iter().chain(&east) {
        assert_eq!(outcome_of(&summary, arn)["outcome"], "requested");
    }
    assert_eq!(outcome_of(&summary, &west[0])["region"], "eu-west-1");
    assert_eq!(world.accepted_creates().len(), 123);
}

#[tokio::test]
async fn a_run_killed_after_claiming_does_not_lock_its_cas_past_the_lease() {
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 2)]);
    let services = world.fast_services();

    // A run claims both CAs with a 60-second lease, then dies before requesting.
    let now = clock().now();
    for arn in &arns {
        let arn = pca_audit_scheduler::domain::arn::CaArn::parse(arn).unwrap();
        let won = services
            .ledger
            .claim(&arn, "dead-run", now, now.plus(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(matches!(
            won,
            pca_audit_scheduler::aws::ledger::ClaimResult::Won(_)
        ));
    }

    let during = run(&services, &scheduled(), "run-during-lease").await;
    assert_eq!(during.counts.requested, 0);
    for arn in &arns {
        let o = outcome_of(&during, arn);
        assert_eq!(o["reason"], "claimedByAnotherRun");
        assert!(o["detail"].as_str().unwrap().contains("dead-run"));
    }
    assert!(world.create_calls().is_empty());

    // After the lease, the next run takes them.
    let later = world
        .services(clock_at(Duration::from_secs(61)))
        .with_create_period(Duration::ZERO);
    let after = run(&later, &scheduled(), "run-after-lease").await;
    assert_eq!(after.counts.requested, 2, "{after:#?}");
    assert_eq!(world.accepted_creates().len(), 2);
}

/// DynamoDB commits a claim and its answer is lost (a 5xx, a dropped connection): the SDK
/// sends the same conditional write again, which fails its condition on the lease the first
/// attempt wrote. That lease is the run's own: the claim is won, not skipped as "claimed by
/// another run" for a whole schedule period; a claim of any other run still loses.
#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_won_when_its_retry_meets_its_own_lease() {
    use pca_audit_scheduler::aws::ledger::ClaimResult;
    let world = World::new().await;
    world.fast();
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let arn = pca_audit_scheduler::domain::arn::CaArn::parse(&arn).unwrap();
    let services = world.fast_services();
    let now = clock().now();
    let expiry = now.plus(Duration::from_secs(900));
    let ledger = &services.ledger;

    let first = ledger.claim(&arn, "run-x", now, expiry).await.unwrap();
    assert!(matches!(first, ClaimResult::Won(_)));
    // The SDK's retry: the very same request.
    match ledger.claim(&arn, "run-x", now, expiry).await.unwrap() {
        ClaimResult::Won(claim) => {
            assert_eq!(claim.run_id, "run-x");
            assert_eq!(claim.expires_at, expiry);
            assert_eq!(claim.previous.lease, None, "{claim:?}");
            assert!(
                claim.previous.unrecorded_since(now).is_some(),
                "whether a dead run's claim was taken over is unknown: the bucket is searched"
            );
        }
        ClaimResult::Lost(w) => panic!("the run's own lease taken for another's: {w:?}"),
    }
    let other = ledger.claim(&arn, "run-y", now, expiry).await.unwrap();
    assert!(
        matches!(&other, ClaimResult::Lost(w) if w.lease.as_ref().is_some_and(|l| l.run_id == "run-x")),
        "{other:?}"
    );
}

#[tokio::test]
async fn pending_ca_and_unknown_arn_get_their_own_outcomes_and_the_rest_are_served() {
    let world = World::new().await;
    world.fast();
    let active = world.seeded_arns(&[("ACTIVE", 2)]);
    let pending = world.seeded_arns(&[("PENDING_CERTIFICATE", 1)]);
    let unknown = format!(
        "arn:aws:acm-pca:{REGION}:{}:certificate-authority/00000000-0000-4000-8000-000000000000",
        world.account_id
    );
    let services = world.fast_services();
    let request = manual(&[&active[0], &pending[0], &unknown, &active[1]]);

    let summary = run(&services, &request, "manual-1").await;

    assert_eq!(outcome_of(&summary, &active[0])["outcome"], "requested");
    assert_eq!(outcome_of(&summary, &active[1])["outcome"], "requested");
    let p = outcome_of(&summary, &pending[0]);
    assert_eq!(
        (p["outcome"].as_str(), p["reason"].as_str()),
        (Some("skipped"), Some("caState"))
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("PENDING_CERTIFICATE")
    );
    let u = outcome_of(&summary, &unknown);
    assert_eq!(u["outcome"], "failed");
    assert_eq!(u["errorCode"], "ResourceNotFoundException");
    assert!(world.window_item(&unknown).await.is_none());

    // The invocation fails, naming the unknown CA, after the others were recorded.
    let err = verdict(summary).unwrap_err().to_string();
    assert!(
        err.contains(&unknown) && err.contains("ResourceNotFoundException"),
        "{err}"
    );
    assert_eq!(world.accepted_creates().len(), 2);
}

#[tokio::test]
async fn a_missing_bucket_fails_every_ca_clearly_and_consumes_no_window() {
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 2)]);
    world.delete_bucket_policy().await;
    world.delete_bucket().await;
    let services = world.fast_services();

    let summary = run(&services, &scheduled(), "run-1").await;

    assert_eq!(summary.counts.failed, 2);
    for arn in &arns {
        let o = outcome_of(&summary, arn);
        assert_eq!(o["errorCode"], "NoSuchBucket");
        assert!(o["errorMessage"].as_str().unwrap().contains(&world.bucket));
        world.assert_no_window_consumed(arn).await;
    }
    assert!(world.create_calls().is_empty());
    assert!(verdict(summary).is_err());

    // With the bucket back, the same CAs are served at once.
    world.create_bucket(true).await;
    let again = run(&services, &scheduled(), "run-2").await;
    assert_eq!(again.counts.requested, 2, "{again:#?}");
}

#[tokio::test]
async fn a_report_made_outside_the_function_skips_the_ca_until_the_service_allows_it() {
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 2)]);
    // Someone requests a report by hand, outside the function.
    world
        .acm_pca
        .create_certificate_authority_audit_report()
        .certificate_authority_arn(&arns[0])
        .s3_bucket_name(&world.bucket)
        .audit_report_response_format(aws_sdk_acmpca::types::AuditReportResponseFormat::Json)
        .send()
        .await
        .expect("manual report");
    let services = world.fast_services();

    let first = run(&services, &scheduled(), "run-1").await;
    let o = outcome_of(&first, &arns[0]);
    assert_eq!(
        (o["outcome"].as_str(), o["reason"].as_str()),
        (Some("skipped"), Some("serviceWindow"))
    );
    assert!(o["nextEligibleAt"].is_string());
    assert_eq!(outcome_of(&first, &arns[1])["outcome"], "requested");
    assert_eq!(first.counts.failed, 0);
    let window = world.window_item(&arns[0]).await.unwrap();
    assert!(!window.contains_key("lease_run_id"), "claim released");
    assert!(
        !window.contains_key("last_report_id"),
        "nothing recorded that did not happen"
    );

    // The next run does not spend a create call on it.
    let calls_before = world.create_calls().len();
    let second = run(&services, &scheduled(), "run-2").await;
    assert_eq!(outcome_of(&second, &arns[0])["reason"], "insideWindow");
    assert_eq!(world.create_calls().len(), calls_before);
}

#[tokio::test]
async fn dry_run_decides_without_claiming_or_requesting() {
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 2), ("DISABLED", 1)]);
    let services = world.fast_services();
    let mut request = scheduled();
    request.dry_run = true;

    let summary = run(&services, &request, "dry-1").await;

    assert_eq!(summary.counts.would_request, 3);
    for arn in &arns {
        assert_eq!(outcome_of(&summary, arn)["outcome"], "wouldRequest");
        assert!(world.window_item(arn).await.is_none());
    }
    assert!(world.create_calls().is_empty());
}

#[tokio::test]
async fn running_short_of_time_defers_the_rest_and_the_next_run_takes_them_first() {
    let world = World::new().await;
    world.configure_emulator(json!({"report_delay_seconds": 0, "create_rps": 2}));
    let arns = world.seeded_arns(&[("ACTIVE", 6)]);
    let services = world
        .services(clock())
        .with_create_period(Duration::from_millis(500));

    // Two seconds beyond the reserve: room for a few paced creates, not six.
    let short = pca_audit_scheduler::invocation::Invocation {
        run_id: "short".into(),
        deadline: tokio::time::Instant::now() + Duration::from_millis(1200),
        reserve: Duration::ZERO,
        home_account: None,
        partition: None,
    };
    let first = pca_audit_scheduler::run::run(&services, &scheduled(), &short).await;
    assert!(
        first.counts.requested >= 1 && first.counts.deferred >= 1,
        "{first:#?}"
    );
    assert_eq!(first.counts.requested + first.counts.deferred, 6);
    assert_eq!(first.counts.failed, 0);
    let deferred: Vec<String> = first
        .certificate_authorities
        .iter()
        .filter(|o| serde_json::to_value(o).unwrap()["outcome"] == "deferred")
        .map(|o| o.certificate_authority_arn.clone())
        .collect();
    for arn in &deferred {
        let w = world.window_item(arn).await;
        assert!(
            w.is_none_or(|w| !w.contains_key("lease_run_id")),
            "deferred CA {arn} holds no claim"
        );
    }

    // The next run requests the deferred ones first: they never had a report.
    let second = run(&services, &scheduled(), "next").await;
    let order: Vec<&str> = second
        .certificate_authorities
        .iter()
        .filter(|o| serde_json::to_value(o).unwrap()["outcome"] == "requested")
        .map(|o| o.certificate_authority_arn.as_str())
        .collect();
    assert_eq!(order.len(), deferred.len());
    assert_eq!(
        order.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        deferred.into_iter().collect()
    );
    assert_eq!(world.accepted_creates().len(), arns.len());
}

#[tokio::test]
async fn a_missing_ledger_table_requests_nothing() {
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 2)]);
    world
        .dynamodb
        .delete_table()
        .table_name(&world.table)
        .send()
        .await
        .unwrap();
    let services = world.fast_services();

    let summary = run(&services, &scheduled(), "run-1").await;

    assert_eq!(summary.counts.failed, 2);
    let o = outcome_of(&summary, &arns[0]);
    assert_eq!(o["errorCode"], "ResourceNotFoundException");
    assert!(o["errorMessage"].as_str().unwrap().contains(&world.table));
    assert!(
        world.create_calls().is_empty(),
        "zero create calls without a ledger"
    );
}

/// The service's real quota (1 create per second, the emulator's default): 20 CAs finish with
/// no failed CA. The wall time is printed for the record, never asserted (see BENCHMARKS.md).
#[tokio::test]
async fn at_the_default_quota_twenty_cas_finish_without_a_failure() {
    let world = World::new().await;
    world.configure_emulator(json!({"report_delay_seconds": 0}));
    world.seeded_arns(&[("ACTIVE", 20)]);
    let services = world.services(clock());

    let started = std::time::Instant::now();
    let summary = run(&services, &scheduled(), "quota-run").await;
    eprintln!(
        "20 CAs at the default quota took {:.1} s",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(summary.counts.requested, 20, "{summary:#?}");
    assert_eq!(summary.counts.failed, 0);
    let refused = world
        .create_calls()
        .iter()
        .filter(|(_, o)| o != "Accepted")
        .count();
    eprintln!("create calls throttled and retried: {refused}");
}

/// A CA past the service's documented limit (no audit report for a CA that issued more than
/// 100 million certificates) is refused with LimitExceededException: a failure that names the
/// cause and alarms, every run, never a quiet "too soon" skip.
#[tokio::test]
async fn a_ca_past_the_certificate_limit_fails_naming_the_cause() {
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 2)]);
    control(
        "POST",
        "/certificate-count",
        Some(json!({"arn": arns[0], "count": 100_000_001u64})),
    );
    let services = world.fast_services();
    let summary = run(&services, &scheduled(), "limit").await;
    let o = outcome_of(&summary, &arns[0]);
    assert_eq!(o["outcome"], "failed", "{o}");
    assert_eq!(o["errorCode"], "LimitExceededException");
    assert!(
        o["errorMessage"]
            .as_str()
            .unwrap()
            .contains("more than 100 million certificates"),
        "{o}"
    );
    assert_eq!(outcome_of(&summary, &arns[1])["outcome"], "requested");
    assert!(
        verdict(summary).is_err(),
        "the invocation fails, so alarms see it"
    );
    // The window was not moved on: the next run tries (and fails, loudly) again.
    let window = world.window_item(&arns[0]).await.expect("window");
    assert_eq!(
        attr(&window, "last_error_code"),
        Some("LimitExceededException")
    );
    assert!(!window.contains_key("next_eligible_at"), "{window:?}");
    let again = run(&services, &scheduled(), "limit-again").await;
    assert_eq!(outcome_of(&again, &arns[0])["outcome"], "failed");
}

/// The create slots of one account-region are shared by every caller through the ledger: two
/// pacers on one table hand out slots at least a period apart between them, none past a
/// caller's cutoff, and a slot taken by a caller that never uses it blocks nobody.
#[tokio::test]
async fn shared_create_slots_space_every_callers_creates() {
    use pca_audit_scheduler::pacing::shared::SharedPacer;
    let world = World::new().await;
    let period = Duration::from_millis(200);
    let pacer = || {
        SharedPacer::new(
            world.dynamodb.clone(),
            &world.table,
            &world.account_id,
            REGION,
            period,
        )
    };
    let (a, b, dead) = (pacer(), pacer(), pacer());
    let far = tokio::time::Instant::now() + Duration::from_secs(60);
    // A caller that reserves a slot and dies: its slot is simply not used.
    assert!(dead.wait_turn(far).await);
    let times = std::sync::Mutex::new(Vec::new());
    async fn take(
        p: &SharedPacer,
        far: tokio::time::Instant,
        times: &std::sync::Mutex<Vec<std::time::Instant>>,
    ) {
        for _ in 0..5 {
            assert!(p.wait_turn(far).await);
            times.lock().unwrap().push(std::time::Instant::now());
        }
    }
    let started = std::time::Instant::now();
    futures::future::join(take(&a, far, &times), take(&b, far, &times)).await;
    let mut times = times.into_inner().unwrap();
    times.sort();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= period - Duration::from_millis(15), "gap {gap:?}");
    }
    // 10 slots after the dead one's: no more than the queue's own length.
    assert!(started.elapsed() < period * 12 + Duration::from_millis(500));
    // A cutoff before the next free slot reserves nothing, and does not wait.
    for _ in 0..3 {
        assert!(a.wait_turn(far).await);
    }
    let t = std::time::Instant::now();
    let near = tokio::time::Instant::now() + Duration::from_millis(50);
    assert!(!b.wait_turn(near).await, "the next slot is a period away");
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
}
