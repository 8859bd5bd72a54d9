//! Organisation scale against the local stack: CAs of other accounts audited through the
//! member role, scope, the follow-up of every report, orphans found in the bucket, fan-out.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use lambda_runtime::LambdaEvent;
use pca_audit_scheduler::aws::ledger::{PARTITION_KEY, SORT_KEY};
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::outcome::{Outcome, SkipReason};
use pca_audit_scheduler::domain::report::ReportStatus;
use pca_audit_scheduler::entry::{self, Response};
use pca_audit_scheduler::run::summary::RunSummary;
use pca_audit_scheduler::services::Services;
use pca_audit_scheduler::services::{Clock, SystemClock};
use serde_json::json;
use support::{
    Member, Organization, World, accepted_creates_of, attr, clock, fast_account, run_as,
    seed_account,
};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const EXTERNAL_ID: &str = "pca-audit-test-ext";

fn outcomes_by_arn(
    summary: &RunSummary,
) -> HashMap<String, &pca_audit_scheduler::domain::outcome::CaOutcome> {
    summary
        .certificate_authorities
        .iter()
        .map(|o| (o.certificate_authority_arn.clone(), o))
        .collect()
}

#[tokio::test]
async fn three_accounts_in_two_regions_are_audited_once_and_an_account_without_the_role_is_one_error()
 {
    let world = World::new().await;
    let b = Member::new(&world.account_id, Some(EXTERNAL_ID)).await;
    let c = Member::new(&world.account_id, Some(EXTERNAL_ID)).await;
    let locked = Member::new(&world.account_id, None).await;
    for account in [
        &world.account_id,
        &b.account_id,
        &c.account_id,
        &locked.account_id,
    ] {
        fast_account(account);
    }
    world
        .allow_reports_from(&[&world.account_id, &b.account_id, &c.account_id])
        .await;
    let mut seeded: HashMap<String, Vec<String>> = HashMap::new();
    for region in REGIONS {
        for account in [
            &world.account_id,
            &b.account_id,
            &c.account_id,
            &locked.account_id,
        ] {
            seeded
                .entry(account.clone())
                .or_default()
                .extend(seed_account(
                    account,
                    region,
                    &[json!({"state": "ACTIVE", "count": 2, "issued": 1, "revoked": 0})],
                ));
        }
    }
    let accounts = [
        &world.account_id,
        &b.account_id,
        &c.account_id,
        &locked.account_id,
    ]
    .map(|a| a.as_str())
    .join(",");
    let services = Services::new(
        world.settings_with(&[
            ("AUDIT_ACCOUNTS", &accounts),
            ("AUDIT_REGIONS", &REGIONS.join(",")),
            ("MEMBER_ROLE_EXTERNAL_ID", EXTERNAL_ID),
        ]),
        &world.sdk,
        clock(),
    )
    .with_create_period(Duration::ZERO);

    let first = run_as(&services, &world, "org-1").await;
    assert_eq!(first.counts.requested, 12, "{first:#?}");
    assert_eq!(first.counts.failed, 0, "{first:#?}");
    assert_eq!(first.account_errors.len(), 1, "{first:#?}");
    let locked_error = &first.account_errors[0];
    assert_eq!(locked_error.account_id, locked.account_id);
    assert_eq!(locked_error.error_code, "AssumeRoleFailed");
    assert!(
        locked_error.error_message.contains("AccessDenied")
            && locked_error
                .error_message
                .contains("PcaAuditSchedulerMember"),
        "{}",
        locked_error.error_message
    );
    // The locked account's CAs were never requested; the others' once each.
    assert!(accepted_creates_of(&locked.account_id).is_empty());
    for account in [&world.account_id, &b.account_id, &c.account_id] {
        let creates = accepted_creates_of(account);
        assert_eq!(creates.len(), 4, "account {account}: {creates:?}");
        assert!(creates.values().all(|&n| n == 1), "{creates:?}");
    }
    // Every report was followed up in the same run, and landed in the central bucket.
    assert_eq!(first.counts.reports_succeeded, 12, "{first:#?}");
    for o in &first.certificate_authorities {
        let report = o.report.as_ref().expect("followed up");
        assert_eq!(report.status, ReportStatus::Success);
        let Outcome::Requested { s3_key, .. } = &o.outcome else {
            panic!("{o:?}")
        };
        let objects = world.objects(s3_key).await;
        assert_eq!(objects.len(), 1, "{s3_key}");
        assert_eq!(Some(objects[0].1 as u64), report.size_bytes);
        let history = world.history(&o.certificate_authority_arn).await;
        assert_eq!(attr(&history[0], "status"), Some("SUCCESS"));
        assert!(history[0].contains_key("size_bytes"));
        assert_eq!(
            o.account_id,
            CaArn::parse(&o.certificate_authority_arn)
                .unwrap()
                .account()
        );
    }
    // The invocation fails, naming the account, so alarms see it.
    let err = entry::verdict(first).unwrap_err().to_string();
    assert!(err.contains(&locked.account_id), "{err}");

    let second = run_as(&services, &world, "org-2").await;
    assert_eq!(second.counts.requested, 0, "{second:#?}");
    assert_eq!(second.counts.skipped, 12);
    for account in [&world.account_id, &b.account_id, &c.account_id] {
        assert!(accepted_creates_of(account).values().all(|&n| n == 1));
    }
}

#[tokio::test]
async fn exempt_other_types_and_untagged_cas_are_skipped_with_their_reason() {
    let world = World::new().await;
    fast_account(&world.account_id);
    let tagged_sub = seed_account(
        &world.account_id,
        support::REGION,
        &[
            json!({"state": "ACTIVE", "count": 2, "issued": 1, "revoked": 0, "type": "SUBORDINATE", "tags": {"audit": "yes"}}),
        ],
    );
    let untagged_sub = seed_account(
        &world.account_id,
        support::REGION,
        &[
            json!({"state": "ACTIVE", "count": 1, "issued": 1, "revoked": 0, "type": "SUBORDINATE", "tags": {"audit": "no"}}),
        ],
    );
    let root = seed_account(
        &world.account_id,
        support::REGION,
        &[
            json!({"state": "ACTIVE", "count": 1, "issued": 1, "revoked": 0, "type": "ROOT", "tags": {"audit": "yes"}}),
        ],
    );
    let services = Services::new(
        world.settings_with(&[
            ("EXEMPT_CA_ARNS", &tagged_sub[1]),
            ("REQUIRED_TAGS", "audit=yes"),
            ("AUDIT_CA_TYPES", "SUBORDINATE"),
        ]),
        &world.sdk,
        clock(),
    )
    .with_create_period(Duration::ZERO);
    let summary = run_as(&services, &world, "scope").await;
    let by_arn = outcomes_by_arn(&summary);
    let reason = |arn: &str| match &by_arn[arn].outcome {
        Outcome::Skipped { reason, .. } => Some(*reason),
        _ => None,
    };
    assert!(matches!(
        by_arn[&tagged_sub[0]].outcome,
        Outcome::Requested { .. }
    ));
    assert_eq!(reason(&tagged_sub[1]), Some(SkipReason::Exempt));
    assert_eq!(reason(&untagged_sub[0]), Some(SkipReason::MissingTag));
    assert_eq!(reason(&root[0]), Some(SkipReason::CaType));
    let creates = world.accepted_creates();
    assert_eq!(creates.keys().collect::<Vec<_>>(), vec![&tagged_sub[0]]);
}

#[tokio::test]
async fn a_report_that_ends_failed_fails_the_ca_and_reopens_its_window() {
    let world = World::new().await;
    fast_account(&world.account_id);
    // A bucket whose policy does not let ACM PCA write: the create is accepted, the report fails.
    world.delete_bucket_policy().await;
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let services = world.fast_services();
    let summary = run_as(&services, &world, "failing").await;
    let o = &summary.certificate_authorities[0];
    let report = o.report.as_ref().expect("followed up");
    assert_eq!(report.status, ReportStatus::Failed, "{summary:#?}");
    let detail = report.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("bucket policy") && detail.contains("SSE-KMS"),
        "{detail}"
    );
    assert_eq!(summary.counts.failed, 1);
    assert_eq!(summary.counts.reports_failed, 1);
    assert_eq!(summary.metrics_document("fn")["Failed"], 1);
    assert!(entry::verdict(summary.clone()).is_err());

    let Outcome::Requested { requested_at, .. } = &o.outcome else {
        panic!("{o:?}")
    };
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_report_status"), Some("FAILED"));
    assert_eq!(attr(&window, "last_error_code"), Some("AuditReportFailed"));
    assert_eq!(
        attr(&window, "next_eligible_at"),
        Some(
            requested_at
                .plus(Duration::from_secs(1800))
                .to_string()
                .as_str()
        ),
        "due again once the service allows another report, not after the whole interval"
    );
    assert_eq!(
        attr(&world.history(&arn).await[0], "status"),
        Some("FAILED")
    );
}

#[tokio::test]
async fn a_report_still_creating_is_followed_up_first_thing_next_run() {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 600}));
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let services = world.fast_services();
    // Too little time to wait for the report: it stays CREATING.
    let first = world.run_leaving_reports_creating(&services).await;
    assert_eq!(first.counts.requested, 1, "{first:#?}");
    assert_eq!(first.counts.reports_pending, 1, "{first:#?}");
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_report_status"), Some("CREATING"));

    // The service writes it; the next run sees it end and records it.
    world.finish_reports();
    let second = run_as(&services, &world, "next").await;
    let o = &second.certificate_authorities[0];
    assert!(matches!(
        o.outcome,
        Outcome::Skipped {
            reason: SkipReason::InsideWindow,
            ..
        }
    ));
    assert_eq!(
        o.report.as_ref().map(|r| r.status),
        Some(ReportStatus::Success),
        "{second:#?}"
    );
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_report_status"), Some("SUCCESS"));
    assert_eq!(world.accepted_creates()[&arn], 1);
}

/// A report still CREATING whose history item is gone before its follow-up (DynamoDB's TTL
/// removes an expired item at a time of its own): the window is written alone, and the report
/// is not followed up again on every run.
#[tokio::test]
async fn a_report_whose_history_item_expired_does_not_stay_creating_forever() {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 600}));
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let services = world.fast_services();
    let first = world.run_leaving_reports_creating(&services).await;
    assert_eq!(first.counts.reports_pending, 1, "{first:#?}");
    // As TTL would: the history item goes, the window stays.
    for item in world.history(&arn).await {
        let key = [PARTITION_KEY, SORT_KEY].map(|k| (k.to_owned(), item[k].clone()));
        world
            .dynamodb
            .delete_item()
            .table_name(&world.table)
            .set_key(Some(key.into_iter().collect()))
            .send()
            .await
            .unwrap();
    }
    assert!(world.history(&arn).await.is_empty());

    world.finish_reports();
    let second = run_as(&services, &world, "next").await;
    assert_eq!(
        second.certificate_authorities[0]
            .report
            .as_ref()
            .map(|r| r.status),
        Some(ReportStatus::Success),
        "{second:#?}"
    );
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_report_status"), Some("SUCCESS"));
    assert!(
        world.history(&arn).await.is_empty(),
        "no history item made out of nothing"
    );
    let third = run_as(&services, &world, "after").await;
    assert_eq!(
        third.certificate_authorities[0].report, None,
        "not followed up again: {third:#?}"
    );
}

#[tokio::test]
async fn the_report_of_a_run_that_died_before_recording_it_is_recovered_from_the_bucket() {
    let world = World::new().await;
    fast_account(&world.account_id);
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let ca = CaArn::parse(&arn).unwrap();
    let services = world.fast_services();

    // A run claims the CA, requests the report and dies before recording it.
    let clock = SystemClock::default();
    let now = clock.now();
    let claim = services
        .ledger
        .claim(&ca, "dead-run", now, now.plus(Duration::from_secs(1)))
        .await
        .expect("claim");
    assert!(matches!(
        claim,
        pca_audit_scheduler::aws::ledger::ClaimResult::Won(_)
    ));
    let lost = world
        .acm_pca
        .create_certificate_authority_audit_report()
        .certificate_authority_arn(&arn)
        .s3_bucket_name(&world.bucket)
        .audit_report_response_format(aws_sdk_acmpca::types::AuditReportResponseFormat::Json)
        .send()
        .await
        .expect("the dead run's create");
    let lost_id = lost.audit_report_id().unwrap().to_owned();
    // Its lease runs out.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let summary = run_as(&services, &world, "after").await;
    let o = &summary.certificate_authorities[0];
    match &o.outcome {
        Outcome::Recovered {
            report_id,
            size_bytes,
            ..
        } => {
            assert_eq!(report_id, &lost_id);
            assert!(*size_bytes > 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(summary.counts.recovered, 1);
    assert_eq!(
        world.accepted_creates()[&arn],
        1,
        "no second report was requested"
    );
    let history = world.history(&arn).await;
    assert_eq!(history.len(), 1);
    assert_eq!(attr(&history[0], "report_id"), Some(lost_id.as_str()));
    assert_eq!(
        history[0].get("recovered").and_then(|v| v.as_bool().ok()),
        Some(&true)
    );
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_report_id"), Some(lost_id.as_str()));
    assert!(!window.contains_key("lease_run_id"), "no CA stays locked");

    // And the next run finds the CA inside its window.
    let again = run_as(&services, &world, "again").await;
    assert_eq!(again.counts.skipped, 1, "{again:#?}");
    assert_eq!(world.accepted_creates()[&arn], 1);
}

#[tokio::test]
async fn a_large_round_fans_out_one_work_item_per_account_region_and_each_is_done_once() {
    let world = World::new().await;
    let b = Member::new(&world.account_id, Some("")).await;
    let c = Member::new(&world.account_id, Some("")).await;
    let members = [&world.account_id, &b.account_id, &c.account_id];
    for a in members {
        fast_account(a);
    }
    world.allow_reports_from(&members.map(|a| a.as_str())).await;
    let mut all = Vec::new();
    for region in REGIONS {
        for a in members {
            all.extend(seed_account(
                a,
                region,
                &[json!({"state": "ACTIVE", "count": 2, "issued": 1, "revoked": 0})],
            ));
        }
    }
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let queue = sqs
        .create_queue()
        .queue_name(format!("fan-out-{}", &world.table))
        .send()
        .await
        .expect("queue")
        .queue_url
        .unwrap();
    // The ARN SQS puts on the records it delivers from this queue (eventSourceARN).
    let queue_arn = format!(
        "arn:aws:sqs:us-east-1:{}:fan-out-{}",
        world.account_id, &world.table
    );
    let services = Services::new(
        world.settings_with(&[
            ("AUDIT_ACCOUNTS", &members.map(|a| a.as_str()).join(",")),
            ("AUDIT_REGIONS", &REGIONS.join(",")),
            ("FANOUT_QUEUE_URL", &queue),
            ("FANOUT_THRESHOLD", "4"),
        ]),
        &world.sdk,
        clock(),
    )
    .with_create_period(Duration::ZERO);

    let round = run_as(&services, &world, "round").await;
    assert_eq!(round.fanned_out.len(), 6, "{round:#?}");
    assert!(
        round.certificate_authorities.is_empty(),
        "the round itself audits nothing"
    );
    for a in members {
        assert!(accepted_creates_of(a).is_empty());
    }

    // Lambda's event source mapping: batches of the queue's messages, to the same handler.
    let mut delivered = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            break;
        }
        delivered.extend(out.messages().to_vec());
        for m in out.messages() {
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("delete");
        }
    }
    assert_eq!(delivered.len(), 6);
    let records: Vec<_> = delivered
        .iter()
        .map(|m| {
            json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                   "body": m.body(), "eventSource": "aws:sqs", "awsRegion": "us-east-1",
                   "eventSourceARN": queue_arn, "attributes": {}, "messageAttributes": {}})
        })
        .collect();
    let invoke = |records: Vec<serde_json::Value>| {
        let context = support::context(
            &uuid::Uuid::new_v4().to_string(),
            &support::function_arn(&world.account_id),
        );
        entry::handle(
            &services,
            LambdaEvent::new(json!({"Records": records}), context),
        )
    };
    // Two batches of three, as the event source mapping may group them.
    for batch in records.chunks(3) {
        match invoke(batch.to_vec()).await.expect("batch") {
            Response::Batch(b) => assert!(b.batch_item_failures.is_empty(), "{b:?}"),
            other => panic!("{other:?}"),
        }
    }
    let mut requested = 0;
    for a in members {
        let creates = accepted_creates_of(a);
        assert!(creates.values().all(|&n| n == 1), "{creates:?}");
        requested += creates.len();
    }
    assert_eq!(
        requested,
        all.len(),
        "every CA of every account-region, once"
    );

    // SQS delivers at least once: a work item given again requests nothing, and a malformed
    // one is reported as a batch item failure, not lost.
    let mut again = records[..1].to_vec();
    again.push(
        json!({"messageId": "bad-1", "body": "{\"accountId\": 5}", "eventSource": "aws:sqs",
               "eventSourceARN": queue_arn}),
    );
    match invoke(again).await.expect("batch") {
        Response::Batch(b) => {
            let failed: Vec<_> = b
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            assert_eq!(failed, vec!["bad-1"]);
        }
        other => panic!("{other:?}"),
    }
    for a in members {
        assert!(accepted_creates_of(a).values().all(|&n| n == 1));
    }
}

#[tokio::test]
async fn organization_discovery_audits_the_accounts_under_the_chosen_units_only() {
    // The world's account is the organization's management account.
    let world = World::new().await;
    let org = Organization::new(&world).await;
    let pki = org.unit("pki", &org.root).await;
    let nested = org.unit("pki-prod", &pki).await;
    let other = org.unit("sandbox", &org.root).await;
    let in_pki = org.account("pki", &pki).await;
    let in_nested = org.account("pki-prod", &nested).await;
    let in_sandbox = org.account("sandbox", &other).await;
    let mut members = Vec::new();
    for id in [&in_pki, &in_nested, &in_sandbox] {
        let m = Member::existing(id, &world.account_id).await;
        m.fast();
        m.seed_in(support::REGION, 1);
        members.push(m);
    }
    world
        .allow_reports_from(&[&world.account_id, &in_pki, &in_nested, &in_sandbox])
        .await;
    let services = Services::new(
        world.settings_with(&[
            ("AUDIT_ACCOUNTS", "ORGANIZATION"),
            ("AUDIT_ORGANIZATIONAL_UNITS", &pki),
        ]),
        &world.sdk,
        clock(),
    )
    .with_create_period(Duration::ZERO);
    let summary = run_as(&services, &world, "org").await;
    let mut audited = summary.accounts.clone();
    audited.sort();
    let mut expected = vec![in_pki.clone(), in_nested.clone()];
    expected.sort();
    assert_eq!(
        audited, expected,
        "the OU and the OU nested in it, nothing else: {summary:#?}"
    );
    assert_eq!(summary.counts.requested, 2, "{summary:#?}");
    assert!(accepted_creates_of(&in_sandbox).is_empty());
    assert_eq!(accepted_creates_of(&in_nested).len(), 1);
}
