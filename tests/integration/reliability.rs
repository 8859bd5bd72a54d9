//! Reliability under the conditions production brings: overlapping invocations, hosts whose
//! clocks disagree (`clocks`), faults of every service, outages, a bucket deleted mid-run.
//! Small in the default test command; `scripts/reliability` runs them at full size
//! (RELIABILITY_FULL=1) and writes the figures each one measured into RELIABILITY.md
//! (RELIABILITY_FIGURES names the folder for them).

mod clocks;

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pca_audit_scheduler::domain::outcome::{Outcome, SkipReason};
use pca_audit_scheduler::run;
use pca_audit_scheduler::{invocation::Invocation, services::Services};
use serde_json::json;
use support::*;

/// The tests here take turns: several measure what production gets at AWS's quota, and the
/// emulator's quota is counted where the calls arrive, so another test's load on the same
/// emulator (and on this machine's two cores) would show up in their figures as throttling.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| v == "1")
}

/// Writes a test's figures where `scripts/reliability` collects them.
fn figures(name: &str, markdown: &str) {
    if let Ok(dir) = std::env::var("RELIABILITY_FIGURES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.md"), markdown).unwrap();
    }
}

fn short(run_id: &str, seconds: u64) -> Invocation {
    Invocation {
        run_id: run_id.into(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(seconds),
        reserve: Duration::from_secs(1),
        home_account: None,
        partition: None,
    }
}

/// Report ids the emulator accepted for this account, per CA.
fn accepted_reports(world: &World) -> HashMap<String, Vec<String>> {
    let mut by_ca: HashMap<String, Vec<String>> = HashMap::new();
    for c in create_calls_of(&world.account_id) {
        if c["outcome"] == "Accepted" {
            by_ca
                .entry(c["ca_arn"].as_str().unwrap().to_owned())
                .or_default()
                .push(c["report_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    by_ca
}

/// Creates the emulator refused for the quota, for this account.
fn throttled_creates(world: &World) -> usize {
    world
        .create_calls()
        .iter()
        .filter(|(_, outcome)| outcome == "ThrottlingException")
        .count()
}

/// Overlap at AWS's own quota (one create a second per account and region, the emulator's
/// default) and at production pacing: the invocations share the create slots through the
/// ledger, so together they serve every CA in about the time one invocation would.
#[tokio::test]
async fn overlapping_invocations_serve_every_ca_once_at_the_real_quota() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (rounds, invocations) = if full() { (20u64, 8usize) } else { (1, 8) };
    const CAS: usize = 50;
    let world = World::new().await;
    // Each round replays a later window on a shifted clock; the emulator's own 30 minutes
    // are off so that only the ledger stands between the runs and a second report. Its
    // quota stays AWS's: one create a second.
    world.configure_emulator(json!({"report_delay_seconds": 0, "window_seconds": 0}));
    let arns: HashSet<String> = world.seeded_arns(&[("ACTIVE", CAS)]).into_iter().collect();
    let begun = Instant::now();
    let mut lost_claims = 0;
    let mut round_times = Vec::new();
    for round in 0..rounds {
        let offset = Duration::from_secs(round * 31 * 60);
        let services: Vec<Services> = (0..invocations)
            .map(|_| world.services(clock_at(offset)))
            .collect();
        let ids: Vec<String> = (0..invocations).map(|i| format!("r{round}-i{i}")).collect();
        let started = Instant::now();
        let summaries = runs_together(&services, &ids).await;
        round_times.push(started.elapsed());
        let requested: usize = summaries.iter().map(|s| s.counts.requested).sum();
        assert_eq!(requested, CAS, "round {round}: {summaries:#?}");
        for s in &summaries {
            assert_eq!(s.counts.failed, 0, "round {round}: {s:#?}");
            assert_eq!(s.counts.deferred, 0, "round {round}: {s:#?}");
        }
        lost_claims += summaries
            .iter()
            .flat_map(|s| &s.certificate_authorities)
            .filter(|o| {
                matches!(
                    o.outcome,
                    Outcome::Skipped {
                        reason: SkipReason::ClaimedByAnotherRun,
                        ..
                    }
                )
            })
            .count();
        let accepted = world.accepted_creates();
        assert_eq!(accepted.keys().cloned().collect::<HashSet<_>>(), arns);
        assert!(
            accepted.values().all(|&n| n == round as usize + 1),
            "round {round}: a CA was requested twice in one window: {accepted:?}"
        );
    }
    let creates = world.create_calls().len();
    let throttled = throttled_creates(&world);
    assert!(
        (throttled as f64) < 0.02 * creates as f64,
        "{throttled} of {creates} creates throttled"
    );
    assert_eq!(
        creates - throttled,
        CAS * rounds as usize,
        "no create accepted beyond one per CA and window"
    );
    // The same CAs served by one invocation alone, for comparison (full size only).
    let alone = if full() {
        let offset = Duration::from_secs(rounds * 31 * 60);
        let services = world.services(clock_at(offset));
        let started = Instant::now();
        let summary = run(&services, &scheduled(), "alone").await;
        assert_eq!(summary.counts.requested, CAS, "{summary:#?}");
        format!("{:.1} s", started.elapsed().as_secs_f64())
    } else {
        "(full size only)".into()
    };
    let slowest = round_times.iter().max().unwrap();
    let mean = round_times.iter().sum::<Duration>() / round_times.len() as u32;
    figures(
        "overlap",
        &format!(
            "| figure | value |\n|---|---|\n\
             | quota and pacing | AWS's: 1 create/s per account and region at the emulator, production pacing |\n\
             | rounds × invocations started together | {rounds} × {invocations} over {CAS} CAs |\n\
             | CAs requested per round | {CAS}, each once; none deferred, none failed |\n\
             | create calls at the emulator | {creates}, of them throttled {throttled} ({:.2} %) |\n\
             | duplicate creates in a window | 0 |\n\
             | claims lost to another invocation (skipped, not requested) | {lost_claims} |\n\
             | round time, mean / slowest | {:.1} s / {:.1} s |\n\
             | one invocation alone over the same {CAS} CAs | {alone} |\n\
             | all rounds | {:.1} s |\n",
            100.0 * throttled as f64 / creates.max(1) as f64,
            mean.as_secs_f64(),
            slowest.as_secs_f64(),
            begun.elapsed().as_secs_f64()
        ),
    );
}

#[tokio::test]
async fn under_a_fifth_of_calls_failing_every_ca_is_served_once_and_the_ledger_holds_only_what_happened()
 {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cas = if full() { 60 } else { 20 };
    const MAX_RUNS: usize = 8;
    let world = World::new().await;
    world.fast();
    let arns: Vec<String> = world.seeded_arns(&[("ACTIVE", cas)]);

    // A fifth of each service's calls fail: a third of them throttled, a third HTTP 500, a
    // third slow (the rules are tried in order, so the rates compound to 1/15 each).
    let mut rules = Vec::new();
    for (service, scope) in [
        ("dynamodb", json!({"table": world.table})),
        ("s3", json!({"account_id": world.account_id})),
        ("acm-pca", json!({"account_id": world.account_id})),
    ] {
        for (kind, rate) in [
            ("throttle", 1.0 / 15.0),
            ("500", 1.0 / 14.0),
            ("slow", 1.0 / 13.0),
        ] {
            let mut rule = json!({"service": service, "kind": kind, "rate": rate,
                                  "delay_ms": 400, "seed": rules.len()});
            for (k, v) in scope.as_object().unwrap() {
                rule[k] = v.clone();
            }
            rules.push(fault(rule));
        }
    }

    let services = world.fast_services();
    let begun = Instant::now();
    let mut runs = 0;
    let mut per_run = Vec::new();
    loop {
        runs += 1;
        // Short invocations, so that a claim left by a failed ledger write runs out quickly.
        let summary = run::run(&services, &scheduled(), &short(&format!("fault-{runs}"), 8)).await;
        per_run.push(format!(
            "run {runs}: {} requested, {} recovered, {} failed, {} skipped, {} deferred, {} region errors",
            summary.counts.requested,
            summary.counts.recovered,
            summary.counts.failed,
            summary.counts.skipped,
            summary.counts.deferred,
            summary.region_errors.len()
        ));
        // Served: the ledger records a report for every CA.
        let mut served = 0;
        for arn in &arns {
            // Reads of the check go through the faults too: retry them.
            let w = loop {
                if let Ok(out) = world
                    .dynamodb
                    .get_item()
                    .table_name(&world.table)
                    .key(
                        "certificate_authority_arn",
                        aws_sdk_dynamodb::types::AttributeValue::S(arn.clone()),
                    )
                    .key(
                        "record",
                        aws_sdk_dynamodb::types::AttributeValue::S("window".into()),
                    )
                    .consistent_read(true)
                    .send()
                    .await
                {
                    break out.item;
                }
            };
            if w.as_ref().is_some_and(|w| w.contains_key("last_report_id")) {
                served += 1;
            }
        }
        if served == arns.len() || runs == MAX_RUNS {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let injected: u64 = control("GET", "/faults", None)["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| rules.contains(&r["id"].as_str().unwrap().to_owned()))
        .map(|r| r["injected"].as_u64().unwrap())
        .sum();
    // Each service's throttling rule is tried first, so it sees every call of its service.
    let seen: u64 = control("GET", "/faults", None)["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["kind"] == "throttle" && rules.contains(&r["id"].as_str().unwrap().to_owned())
        })
        .map(|r| r["seen"].as_u64().unwrap())
        .sum();
    for id in &rules {
        clear_fault(id);
    }
    // One more run without faults follows up whatever the faults left CREATING or claimed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settle = run::run(&services, &scheduled(), &short("settle", 20)).await;
    assert_eq!(settle.counts.failed, 0, "{settle:#?}");

    // Once per window, counted at the emulator.
    let accepted = accepted_reports(&world);
    for arn in &arns {
        let ids = accepted.get(arn).cloned().unwrap_or_default();
        assert_eq!(
            ids.len(),
            1,
            "{arn}: served once, not {ids:?} ({per_run:#?})"
        );
    }
    // Nothing recorded that did not happen, nothing that happened left unrecorded: the
    // ledger's report of each CA is the one the emulator accepted, with its object.
    for arn in &arns {
        let window = world.window_item(arn).await.expect("window");
        let id = attr(&window, "last_report_id").expect("recorded");
        assert_eq!(id, accepted[arn][0], "{arn}");
        assert!(!window.contains_key("lease_run_id"), "{arn} still claimed");
        let history = world.history(arn).await;
        assert_eq!(history.len(), 1, "{arn}: {history:?}");
        assert_eq!(attr(&history[0], "report_id"), Some(id));
        let key = attr(&window, "last_s3_key").unwrap();
        assert_eq!(world.objects(key).await.len(), 1, "{key}");
    }
    let mut md = format!(
        "| figure | value |\n|---|---|\n| CAs | {cas} |\n| fault rules | DynamoDB (the ledger table), S3 and ACM PCA (the account): 1/15 throttled, 1/15 HTTP 500, 1/15 slow (400 ms) each, ≈ 20 % of calls |\n\
         | calls to the three services / faults injected | {seen} / {injected} ({:.1} %) |\n\
         | runs until every CA was served | {runs} (bound asserted: {MAX_RUNS}) |\n\
         | CAs requested twice | 0 |\n| reports accepted but not in the ledger | 0 |\n\
         | ledger reports the emulator never accepted | 0 |\n| claims left | 0 |\n\
         | wall time | {:.1} s |\n\n",
        100.0 * injected as f64 / seen.max(1) as f64,
        begun.elapsed().as_secs_f64()
    );
    for line in &per_run {
        md.push_str(&format!("- {line}\n"));
    }
    figures("faults", &md);
}

#[tokio::test]
async fn with_dynamodb_unreachable_no_report_is_requested_and_the_run_says_why() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 5)]);
    let rule =
        fault(json!({"service": "dynamodb", "table": world.table, "rate": 1, "kind": "reset"}));
    let services = world.fast_services();
    let summary = run::run(&services, &scheduled(), &short("no-ledger", 60)).await;
    clear_fault(&rule);
    assert_eq!(summary.counts.failed, arns.len(), "{summary:#?}");
    for o in &summary.certificate_authorities {
        match &o.outcome {
            Outcome::Failed { error_message, .. } => {
                assert!(error_message.contains(&world.table), "{error_message}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(world.create_calls().is_empty(), "no create without a claim");
    let err = pca_audit_scheduler::entry::verdict(summary)
        .unwrap_err()
        .to_string();
    assert!(err.contains("5 of 5"), "{err}");
}

#[tokio::test]
async fn with_acm_pca_unreachable_claims_are_released_and_windows_untouched() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", 4)]);
    let services = world.fast_services();

    // Listing works, every create fails (after the SDK's own retries).
    let rule = fault(
        json!({"service": "acm-pca", "operation": "CreateCertificateAuthorityAuditReport",
                            "account_id": world.account_id, "rate": 1, "kind": "500"}),
    );
    let summary = run::run(&services, &scheduled(), &short("pca-down", 60)).await;
    clear_fault(&rule);
    assert_eq!(summary.counts.failed, 4, "{summary:#?}");
    for arn in &arns {
        let w = world.window_item(arn).await.expect("the claim was written");
        assert!(!w.contains_key("lease_run_id"), "claim released");
        assert!(!w.contains_key("next_eligible_at"), "window untouched");
        assert!(!w.contains_key("last_report_id"));
        assert_eq!(attr(&w, "last_error_code"), Some("InternalFailure"));
    }
    assert!(world.accepted_creates().is_empty());

    // The whole service down: not even listed, nothing claimed.
    let world2 = World::new().await;
    let arns2 = world2.seeded_arns(&[("ACTIVE", 2)]);
    let rule = fault(
        json!({"service": "acm-pca", "account_id": world2.account_id, "rate": 1, "kind": "500"}),
    );
    let services2 = world2.fast_services();
    let summary = run::run(&services2, &scheduled(), &short("pca-gone", 60)).await;
    clear_fault(&rule);
    assert_eq!(summary.region_errors.len(), 1, "{summary:#?}");
    assert_eq!(summary.region_errors[0].error_code, "InternalFailure");
    for arn in &arns2 {
        assert!(world2.window_item(arn).await.is_none(), "nothing claimed");
    }

    // Back up: the next run serves them all.
    let after = run::run(&services, &scheduled(), &short("pca-back", 60)).await;
    assert_eq!(after.counts.requested, 4, "{after:#?}");
}

#[tokio::test]
async fn a_bucket_deleted_mid_run_fails_the_remaining_cas_clearly() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let world = World::new().await;
    // Reports are written late, so the bucket stays empty and can be deleted mid-run.
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 120}));
    let arns = world.seeded_arns(&[("ACTIVE", 8)]);
    let services = world
        .services(clock())
        .with_create_period(Duration::from_millis(400));
    let (request, invocation) = (scheduled(), short("bucket-gone", 12));
    let run = run::run(&services, &request, &invocation);
    let delete = async {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        world.delete_bucket().await;
    };
    let (summary, ()) = tokio::join!(run, delete);
    let requested = summary.counts.requested;
    let failed: Vec<_> = summary
        .certificate_authorities
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Failed { .. }))
        .collect();
    assert!(requested >= 1 && !failed.is_empty(), "{summary:#?}");
    assert_eq!(requested + failed.len(), arns.len(), "{summary:#?}");
    for o in &failed {
        let Outcome::Failed { error_message, .. } = &o.outcome else {
            unreachable!()
        };
        assert!(
            error_message.contains(&world.bucket) && error_message.contains("does not exist"),
            "{error_message}"
        );
        let w = world
            .window_item(&o.certificate_authority_arn)
            .await
            .unwrap();
        assert!(!w.contains_key("lease_run_id") && !w.contains_key("next_eligible_at"));
    }
}

/// Every report the emulator accepted for `arns` is the one the ledger records, with its
/// history item, and no CA has two.
async fn ledger_holds_every_accepted_report(world: &World, arns: &[String]) {
    let accepted = accepted_reports(world);
    for arn in arns {
        let ids = accepted.get(arn).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "{arn}: one report in the window, not {ids:?}");
        let window = world.window_item(arn).await.expect("window");
        assert_eq!(
            attr(&window, "last_report_id"),
            Some(ids[0].as_str()),
            "{arn}"
        );
        assert!(!window.contains_key("lease_run_id"), "{arn} still claimed");
        let history = world.history(arn).await;
        assert_eq!(history.len(), 1, "{arn}: {history:?}");
        assert_eq!(attr(&history[0], "report_id"), Some(ids[0].as_str()));
    }
}

/// The service accepts a create and the answer is lost (HTTP 500 after acceptance): the
/// retry is refused as too soon, and the report the first attempt made is found in the
/// bucket and recorded, not skipped, not failed, never requested twice.
#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_in_the_bucket_and_recorded() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cas = if full() { 50 } else { 12 };
    let world = World::new().await;
    let arns = world.seeded_arns(&[("ACTIVE", cas)]);
    let rule = fault(json!({"service": "acm-pca", "account_id": world.account_id,
        "operation": "CreateCertificateAuthorityAuditReport", "kind": "accept-then-500",
        "rate": 0.3, "seed": 15}));
    let services = world.services(clock());
    let begun = Instant::now();
    let summary = run(&services, &scheduled(), "lost-answers").await;
    let took = begun.elapsed();
    let injected = injected(&rule);
    clear_fault(&rule);
    assert!(injected > 0, "the fault was injected");

    assert_eq!(summary.counts.failed, 0, "{summary:#?}");
    assert_eq!(
        summary.counts.requested + summary.counts.recovered,
        cas,
        "{summary:#?}"
    );
    assert!(pca_audit_scheduler::entry::verdict(summary.clone()).is_ok());
    let pending: Vec<&str> = summary
        .certificate_authorities
        .iter()
        .filter(|o| {
            matches!(
                o.outcome,
                Outcome::Skipped {
                    reason: SkipReason::LostReportPending,
                    ..
                }
            )
        })
        .map(|o| o.certificate_authority_arn.as_str())
        .collect();
    assert!(pending.is_empty(), "all found within the run: {pending:?}");
    for o in &summary.certificate_authorities {
        if let Outcome::Recovered { detail, .. } = &o.outcome {
            assert!(detail.contains("answer was lost"), "{detail}");
        }
    }
    ledger_holds_every_accepted_report(&world, &arns).await;
    figures(
        "lost-answers",
        &format!(
            "| figure | value |\n|---|---|\n\
             | CAs | {cas}, at AWS's quota (1 create/s), production pacing |\n\
             | creates accepted and their answer lost (HTTP 500) | {injected} (30 % of creates) |\n\
             | requested / recovered from the bucket / failed | {} / {} / 0 |\n\
             | reports accepted but not in the ledger | 0 |\n\
             | CAs with two reports in the window | 0 |\n\
             | invocation | succeeded |\n\
             | run time | {:.1} s |\n",
            summary.counts.requested,
            summary.counts.recovered,
            took.as_secs_f64()
        ),
    );
}

/// Creates fail with HTTP 500 before the service accepts them: each is retried in its CA's
/// next slot, and every CA is served in one run, none twice.
#[tokio::test]
async fn creates_failing_before_acceptance_are_retried_in_the_next_slot() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cas = if full() { 50 } else { 12 };
    let world = World::new().await;
    let arns = world.seeded_arns(&[("ACTIVE", cas)]);
    let rule = fault(json!({"service": "acm-pca", "account_id": world.account_id,
        "operation": "CreateCertificateAuthorityAuditReport", "kind": "500",
        "rate": 0.3, "seed": 16}));
    let services = world.services(clock());
    let begun = Instant::now();
    let summary = run(&services, &scheduled(), "failing-creates").await;
    let took = begun.elapsed();
    let injected = injected(&rule);
    clear_fault(&rule);
    assert!(injected > 0, "the fault was injected");
    assert_eq!(summary.counts.requested, cas, "{summary:#?}");
    assert_eq!(summary.counts.failed, 0, "{summary:#?}");
    let reached = world.create_calls().len();
    ledger_holds_every_accepted_report(&world, &arns).await;
    figures(
        "failing-creates",
        &format!(
            "| figure | value |\n|---|---|\n\
             | CAs | {cas}, at AWS's quota (1 create/s), production pacing |\n\
             | create calls / answered HTTP 500 before acceptance | {} / {} |\n\
             | runs until every CA was served | 1 |\n\
             | CAs requested twice | 0 |\n\
             | run time | {:.1} s |\n",
            reached as u64 + injected,
            injected,
            took.as_secs_f64()
        ),
    );
}

/// A connection that stops answering: one create in five never gets an answer (the request
/// never reaches the service). At AWS's quota and production pacing, with the function's own
/// timeouts and an invocation of 90 s, the run still answers before its deadline with every
/// CA's outcome, and a hung create is retried in its next slot (its answer unknown, never
/// counted twice).
#[tokio::test]
async fn a_create_that_never_answers_does_not_hold_the_run_past_its_deadline() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cas = if full() { 30 } else { 10 };
    let world = World::new().await;
    world.configure_emulator(json!({"report_delay_seconds": 0}));
    let arns = world.seeded_arns(&[("ACTIVE", cas)]);
    let rule = fault(json!({"service": "acm-pca", "account_id": world.account_id,
        "operation": "CreateCertificateAuthorityAuditReport", "kind": "hang",
        "rate": 0.2, "seed": 5}));
    let services = world.services(clock());
    let deadline = Duration::from_secs(90);
    let invocation = Invocation {
        run_id: "hung-creates".into(),
        deadline: tokio::time::Instant::now() + deadline,
        reserve: Invocation::DEFAULT_RESERVE,
        home_account: None,
        partition: None,
    };
    let begun = Instant::now();
    let summary = run::run(&services, &scheduled(), &invocation).await;
    let took = begun.elapsed();
    let hung = injected(&rule);
    clear_fault(&rule);
    assert!(hung > 0, "the fault was injected");
    assert!(took < deadline, "answered after {took:?}");
    assert_eq!(summary.certificate_authorities.len(), cas, "{summary:#?}");
    assert_eq!(summary.counts.requested, cas, "{summary:#?}");
    for (ca, n) in world.accepted_creates() {
        assert_eq!(n, 1, "{ca} requested once");
    }
    ledger_holds_every_accepted_report(&world, &arns).await;
    figures(
        "hung-creates",
        &format!(
            "| figure | value |\n|---|---|\n\
             | CAs | {cas}, at AWS's quota (1 create/s), production pacing |\n\
             | creates that never answered | {hung} (each given up after {} s) |\n\
             | invocation deadline / answered after | {} s / {:.1} s |\n\
             | CAs requested / requested twice | {} / 0 |\n",
            pca_audit_scheduler::aws::timeouts::OPERATION_TIMEOUT.as_secs(),
            deadline.as_secs(),
            took.as_secs_f64(),
            summary.counts.requested,
        ),
    );
}
