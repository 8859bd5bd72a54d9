//! A coverage request against the local stack: seeded history across a period (the function's
//! own run for the window items, history items written as the ledger writes them), with a
//! gap, a FAILED report, a CA never audited and a CA deleted since; the summary, the manifest
//! in S3, and that nothing was claimed or requested.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::Diagnostic;
use pca_audit_scheduler::aws::ledger::{ReportRecord, report_item};
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::bucket::report_prefix;
use pca_audit_scheduler::domain::report::{ReportFormat, ReportStatus};
use pca_audit_scheduler::domain::time::Timestamp;
use pca_audit_scheduler::entry::Response;
use pca_audit_scheduler::services::Services;
use pca_audit_scheduler::services::SystemClock;
use serde_json::{Value, json};
use support::*;

const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;
/// The history retention the seeded items' TTL is set by (the default setting's).
const RETENTION: Duration = Duration::from_secs(400 * DAY);

async fn coverage(services: &Services, payload: Value) -> Result<Value, Diagnostic> {
    match handle(services, payload).await? {
        Response::Coverage(summary) => Ok(serde_json::to_value(*summary).unwrap()),
        other => panic!("a coverage request answered otherwise: {other:?}"),
    }
}

/// Midnight UTC `days` days ago.
fn midnight_days_ago(days: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now - now % DAY - days * DAY
}

fn date(epoch: u64) -> String {
    Timestamp::from_epoch_seconds(epoch).to_string()[..10].to_owned()
}

fn instant(epoch: u64) -> String {
    Timestamp::from_epoch_seconds(epoch).to_string()
}

/// A history item as `Ledger::record` and `Ledger::verified` leave it, made by the ledger's
/// own builder.
async fn put_report(world: &World, arn: &str, at: u64, status: &str) {
    let arn = CaArn::parse(arn).expect("a CA ARN");
    let requested_at = Timestamp::from_epoch_seconds(at);
    let id = uuid::Uuid::new_v4().to_string();
    let status = ReportStatus::parse(status).expect("a report status");
    let report = ReportRecord {
        s3_key: format!("{}{id}.json", report_prefix(&arn)),
        report_id: id,
        s3_bucket: world.bucket.clone(),
        format: ReportFormat::Json,
        requested_at,
        next_eligible_at: requested_at,
        size_bytes: (status == ReportStatus::Success).then_some(120),
        status,
        recovered: false,
        pin: None,
    };
    let item = report_item::history_item(&arn, "seeded", &report, RETENTION);
    let put = world.dynamodb.put_item().table_name(&world.table);
    put.set_item(Some(item))
        .send()
        .await
        .expect("put history item");
}

/// The window item a claim leaves, for a CA no longer listed.
async fn put_window(world: &World, arn: &str) {
    let item = report_item::window_item(&CaArn::parse(arn).expect("a CA ARN"));
    let put = world.dynamodb.put_item().table_name(&world.table);
    put.set_item(Some(item))
        .send()
        .await
        .expect("put window item");
}

fn deleted_arn(world: &World) -> String {
    format!(
        "arn:aws:acm-pca:{REGION}:{}:certificate-authority/{}",
        world.account_id,
        uuid::Uuid::new_v4()
    )
}

fn ca<'a>(summary: &'a Value, arn: &str) -> &'a Value {
    summary["certificateAuthorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["certificateAuthorityArn"] == arn)
        .unwrap_or_else(|| panic!("{arn} not in {summary:#}"))
}

async fn object(world: &World, key: &str) -> String {
    world.object_text(key).await
}

#[tokio::test]
async fn coverage_of_a_period_names_every_gap_and_writes_the_manifest() {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 0}));
    let arns = world.seeded_arns(&[("ACTIVE", 3)]);
    let (covered, gappy, never) = (&arns[0], &arns[1], &arns[2]);
    let settings = world.settings_with(&[("MIN_INTERVAL_MINUTES", "1440")]);
    let services = Services::new(settings, &world.sdk, Arc::new(SystemClock::default()))
        .with_create_period(Duration::ZERO);
    // The function's own run makes the window items (and today's reports, after the period).
    let first = run(&services, &scheduled(), "seed-run").await;
    assert_eq!(first.counts.requested, 3, "{first:#?}");

    // The period: eight whole days, ending two days ago.
    let (from, to_day) = (midnight_days_ago(10), midnight_days_ago(3));
    let end = to_day + DAY;
    for day in 0..8 {
        put_report(&world, covered, from + day * DAY + HOUR, "SUCCESS").await;
    }
    put_report(&world, covered, from - 2 * HOUR, "SUCCESS").await;
    for day in [0, 1, 2, 5, 6, 7] {
        put_report(&world, gappy, from + day * DAY + HOUR, "SUCCESS").await;
    }
    put_report(&world, gappy, from + 3 * DAY + HOUR, "FAILED").await;
    // Deleted since: the ledger still knows it, audited in the period's first days.
    let deleted = deleted_arn(&world);
    put_window(&world, &deleted).await;
    for day in 0..4 {
        put_report(&world, &deleted, from + day * DAY, "SUCCESS").await;
    }
    // Deleted long before the period: not part of its answer.
    let gone = deleted_arn(&world);
    put_window(&world, &gone).await;
    put_report(&world, &gone, from - 5 * DAY, "SUCCESS").await;

    let creates_before = world.create_calls().len();
    let windows_before = world.window_item(covered).await;
    let summary = coverage(
        &services,
        json!({"coverage": {"from": date(from), "to": date(to_day)}}),
    )
    .await
    .expect("coverage answered");

    assert_eq!(summary["from"], instant(from));
    assert_eq!(
        summary["to"],
        instant(end),
        "the `to` date is included whole"
    );
    assert_eq!(summary["thresholdMinutes"], 1440 + 60);
    let c = &summary["counts"];
    assert_eq!(c["certificateAuthorities"], 4, "{summary:#}");
    assert_eq!(c["covered"], 2, "{summary:#}");
    assert_eq!(c["withGaps"], 2, "{summary:#}");
    assert_eq!(c["gaps"], 3, "{summary:#}");
    assert_eq!(c["failedReports"], 1);
    assert_eq!(c["neverAudited"], 1);

    let a = ca(&summary, covered);
    assert_eq!(a["coverage"], "covered");
    assert_eq!(
        a["reportCounts"],
        json!({"total": 8, "success": 8, "failed": 0, "pending": 0}),
        "the one before the period is not counted"
    );
    assert_eq!(
        ca(&summary, gappy)["reportCounts"],
        json!({"total": 7, "success": 6, "failed": 1, "pending": 0})
    );

    let b = ca(&summary, gappy);
    assert_eq!(b["coverage"], "gaps");
    assert_eq!(
        b["gaps"],
        json!([
            {"kind": "noSuccess", "from": instant(from + 2 * DAY + HOUR), "to": instant(from + 5 * DAY + HOUR)},
            {"kind": "failedReport", "from": instant(from + 3 * DAY + HOUR), "to": instant(from + 3 * DAY + HOUR), "failedReports": 1},
        ])
    );
    let n = ca(&summary, never);
    assert_eq!(
        n["gaps"],
        json!([{"kind": "neverAudited", "from": instant(from), "to": instant(end)}]),
        "today's report is after the period"
    );
    let d = ca(&summary, &deleted);
    assert_eq!(d["listedNow"], false);
    assert_eq!(
        d["coverage"], "covered",
        "no gap after its last report: {d:#}"
    );
    assert!(
        !summary["certificateAuthorities"]
            .to_string()
            .contains(&gone),
        "a CA gone before the period is not in it"
    );

    // The manifest: one row per report, then one per gap, in CSV and JSON.
    let csv_key = summary["manifest"]["csvKey"].as_str().unwrap();
    let stem = csv_key.strip_suffix(".csv").unwrap().to_owned();
    let period = format!(
        "evidence/coverage/{}_{}/",
        Timestamp::from_epoch_seconds(from).compact(),
        Timestamp::from_epoch_seconds(to_day + DAY).compact()
    );
    assert!(stem.starts_with(&period), "{stem}");
    assert!(!stem.contains(':'), "a safe key: {stem}");
    assert_eq!(summary["manifest"]["jsonKey"], format!("{stem}.json"));
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    let csv = object(&world, &format!("{stem}.csv")).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with(
        "row,account,region,ca_arn,report_id,s3_key,format,requested_at,status,size_bytes,version_id,etag,checksum,sha256,gap_kind"
    ));
    let reports = 8 + 7 + 4;
    assert_eq!(lines.len(), 1 + reports + 3, "{csv}");
    assert!(
        lines[1..=reports].iter().all(|l| l.starts_with("report,")),
        "{csv}"
    );
    assert!(
        lines[reports + 1..].iter().all(|l| l.starts_with("gap,")),
        "{csv}"
    );
    assert!(
        csv.contains(&format!(
            "gap,{},{REGION},{never},,,,,,,,,,,neverAudited,{},{},",
            world.account_id,
            instant(from),
            instant(end)
        )),
        "{csv}"
    );
    assert!(csv.contains(",FAILED,"), "{csv}");
    let json: Value = serde_json::from_str(&object(&world, &format!("{stem}.json")).await).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), reports + 3);
    let row = &json["rows"][0];
    assert_eq!(row["row"], "report");
    assert!(
        row["s3Key"].as_str().unwrap().starts_with("audit-report/"),
        "{row}"
    );
    assert_eq!(json["rows"][reports]["row"], "gap");
    assert_eq!(json["counts"], summary["counts"]);
    assert_eq!(
        json["version"],
        env!("CARGO_PKG_VERSION"),
        "the release that wrote it"
    );

    // Nothing claimed or requested.
    assert_eq!(world.create_calls().len(), creates_before);
    assert_eq!(world.window_item(covered).await, windows_before);
}

#[tokio::test]
async fn the_sample_coverage_request_is_answered_with_its_manifest() {
    let world = World::new().await;
    let arns = world.seeded_arns(&[("ACTIVE", 1)]);
    let services = world.services(Arc::new(SystemClock::default()));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/events/coverage.json");
    let sample: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let summary = coverage(&services, sample.clone())
        .await
        .expect("sample answered");
    assert_eq!(
        ca(&summary, &arns[0])["gaps"][0]["kind"],
        "neverAudited",
        "{summary:#}"
    );
    let keys: Vec<String> = world
        .objects("evidence/")
        .await
        .into_iter()
        .map(|o| o.0)
        .collect();
    let folder = "evidence/coverage/20260701T000000Z_20261001T000000Z/";
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(folder)), "{keys:?}");
    assert_eq!(
        keys[0].strip_suffix(".csv"),
        keys[1].strip_suffix(".json"),
        "{keys:?}"
    );

    // The same request again: a second manifest beside the first, which stays as it was.
    let first = object(&world, &keys[0]).await;
    coverage(&services, sample).await.expect("answered again");
    let again: Vec<String> = world
        .objects("evidence/")
        .await
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(again.len(), 4, "nothing overwritten: {again:?}");
    assert!(again.iter().all(|k| k.starts_with(folder)), "{again:?}");
    assert_eq!(object(&world, &keys[0]).await, first);
}

#[tokio::test]
async fn bad_coverage_requests_are_refused_naming_the_field_and_write_nothing() {
    let world = World::new().await;
    world.seeded_arns(&[("ACTIVE", 1)]);
    let services = world.services(Arc::new(SystemClock::default()));
    let old = midnight_days_ago(500);
    let cases = [
        (
            json!({"coverage": {"from": date(old), "to": date(midnight_days_ago(1))}}),
            "the history is kept",
        ),
        (
            json!({"coverage": {"from": "2026-09-30", "to": "2026-07-01"}}),
            "coverage.from",
        ),
        (
            json!({"coverage": {"from": "yesterday", "to": "2026-07-01"}}),
            "coverage.from `yesterday`",
        ),
        (
            json!({"coverage": {"from": "2026-07-01", "to": "2026-09-30"}, "dryRun": true}),
            "dryRun",
        ),
    ];
    for (event, says) in cases {
        let err = coverage(&services, event.clone())
            .await
            .expect_err("refused");
        assert_eq!(err.error_type, "InvalidRequest", "{event}");
        assert!(
            err.error_message.contains("coverage") && err.error_message.contains(says),
            "{event}: {}",
            err.error_message
        );
    }
    assert!(world.objects("evidence/").await.is_empty());
    assert!(world.create_calls().is_empty());
}

#[tokio::test]
async fn a_manifest_that_cannot_be_written_is_a_clear_error() {
    let world = World::new().await;
    let services = world.services(Arc::new(SystemClock::default()));
    world.delete_bucket_policy().await;
    world.delete_bucket().await;
    let err = coverage(
        &services,
        json!({"coverage": {"from": date(midnight_days_ago(3)), "to": date(midnight_days_ago(1))}}),
    )
    .await
    .expect_err("no bucket");
    assert_eq!(err.error_type, "CoverageFailed");
    assert!(
        err.error_message.contains("manifest could not be written")
            && err.error_message.contains(&world.bucket)
            && err.error_message.contains("NoSuchBucket"),
        "{}",
        err.error_message
    );
}

/// Coverage asks about the CAs a run would audit: not those out of scope by state, exemption
/// or a missing required tag (they would otherwise show as never audited).
#[tokio::test]
async fn coverage_answers_for_the_cas_in_scope_only() {
    let world = World::new().await;
    let seed = |state: &str, tag: &str| {
        seed_account(
            &world.account_id,
            REGION,
            &[json!({"state": state, "count": 1, "issued": 1, "revoked": 0, "tags": {"audit": tag}})],
        )
        .remove(0)
    };
    let in_scope = seed("ACTIVE", "yes");
    let untagged = seed("ACTIVE", "no");
    let exempt = seed("ACTIVE", "yes");
    let pending = seed("PENDING_CERTIFICATE", "yes");
    let settings =
        world.settings_with(&[("REQUIRED_TAGS", "audit=yes"), ("EXEMPT_CA_ARNS", &exempt)]);
    let services = Services::new(settings, &world.sdk, Arc::new(SystemClock::default()));
    let summary = coverage(
        &services,
        json!({"coverage": {"from": date(midnight_days_ago(3)), "to": date(midnight_days_ago(1))}}),
    )
    .await
    .expect("coverage answered");
    let answered: Vec<&str> = summary["certificateAuthorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["certificateAuthorityArn"].as_str().unwrap())
        .collect();
    assert_eq!(
        answered,
        [in_scope.as_str()],
        "not {untagged}, {exempt} or {pending}"
    );
}

/// A manifest larger than one part: written in parts, completed whole, byte for byte; and an
/// upload given up leaves no object behind.
#[tokio::test]
async fn evidence_larger_than_a_part_arrives_whole_and_an_aborted_one_not_at_all() {
    use pca_audit_scheduler::aws::multipart::{EvidenceObject, PART_SIZE};
    use pca_audit_scheduler::aws::s3::Store;
    let world = World::new().await;
    let store = Store::new(world.s3.clone(), Some(world.account_id.clone()));
    let line = |i: usize| format!("report,{i:012},us-east-1,row {i}\n");
    let mut expected = String::new();
    let mut big =
        EvidenceObject::start(&store, &world.bucket, "evidence/big.csv", "text/csv", None)
            .await
            .unwrap();
    let mut i = 0;
    // Two and a half parts, written a row at a time as the manifest is.
    while expected.len() < PART_SIZE * 5 / 2 {
        let row = line(i);
        big.write(row.as_bytes()).await.unwrap();
        expected.push_str(&row);
        i += 1;
    }
    big.finish().await.unwrap();
    let got = object(&world, "evidence/big.csv").await;
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the object differs from what was written");
    // S3 checked each part's SHA-256 and keeps the object's (a checksum of the parts'), for
    // an auditor to read back.
    let head = world
        .s3
        .head_object()
        .bucket(&world.bucket)
        .key("evidence/big.csv")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    // (S3 writes a multipart object's as the checksum of the parts' checksums, `…-3`; the
    // emulator leaves the part count off.)
    let sha = head.checksum_sha256().unwrap_or_default();
    assert!(
        sha.len() >= 44,
        "a SHA-256 kept for the object, not {sha:?}"
    );

    let mut aborted =
        EvidenceObject::start(&store, &world.bucket, "evidence/half.csv", "text/csv", None)
            .await
            .unwrap();
    aborted
        .write(&expected.as_bytes()[..PART_SIZE + 10])
        .await
        .unwrap();
    aborted.abort().await;
    assert!(world.objects("evidence/half.csv").await.is_empty());
    let uploads = world
        .s3
        .list_multipart_uploads()
        .bucket(&world.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

/// A month in which every report FAILED (a bucket policy broken for a month: a report every
/// 30 minutes): each CA's failures in a row are one gap with their count, the answer stays
/// small whatever the number of failures, and the manifest still lists every report.
#[tokio::test]
async fn a_month_of_failed_reports_is_one_gap_a_ca_and_the_answer_stays_small() {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    use futures::StreamExt;
    const CAS: usize = 6;
    const PER_DAY: u64 = 48;
    let world = World::new().await;
    let arns = world.seeded_arns(&[("ACTIVE", CAS)]);
    let first = midnight_days_ago(32);
    let bucket = &world.bucket;
    let writes: Vec<WriteRequest> = arns
        .iter()
        .flat_map(|arn| {
            let ca = CaArn::parse(arn).unwrap();
            (0..31 * PER_DAY).map(move |i| {
                let at = Timestamp::from_epoch_seconds(first + i * 1800 + 60);
                let id = uuid::Uuid::new_v4().to_string();
                let report = ReportRecord {
                    s3_key: format!("{}{id}.json", report_prefix(&ca)),
                    report_id: id,
                    s3_bucket: bucket.clone(),
                    format: ReportFormat::Json,
                    requested_at: at,
                    next_eligible_at: at,
                    size_bytes: None,
                    status: ReportStatus::Failed,
                    recovered: false,
                    pin: None,
                };
                let item = report_item::history_item(&ca, "seeded", &report, RETENTION);
                let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
                WriteRequest::builder().put_request(put).build()
            })
        })
        .collect();
    let batches: Vec<Vec<WriteRequest>> = writes.chunks(25).map(<[_]>::to_vec).collect();
    futures::stream::iter(batches.into_iter().map(|mut pending| {
        let world = &world;
        async move {
            while !pending.is_empty() {
                let out = (world.dynamodb.batch_write_item())
                    .request_items(&world.table, pending)
                    .send()
                    .await
                    .expect("batch write");
                pending = (out.unprocessed_items)
                    .and_then(|mut u| u.remove(&world.table))
                    .unwrap_or_default();
            }
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<()>>()
    .await;

    let services = world.services(Arc::new(SystemClock::default()));
    let request = json!({"coverage": {"from": date(first), "to": date(first + 30 * DAY)}});
    let answer = coverage(&services, request).await.expect("answered");
    let size = answer.to_string().len();
    assert!(size < 64 * 1024, "{size} bytes for {CAS} CAs");
    for arn in &arns {
        let failed: Vec<&Value> = ca(&answer, arn)["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["kind"] == "failedReport")
            .collect();
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert_eq!(failed[0]["failedReports"], 31 * PER_DAY);
    }
    assert_eq!(answer["counts"]["reports"], (CAS as u64) * 31 * PER_DAY);
    let csv_key = answer["manifest"]["csvKey"].as_str().unwrap().to_owned();
    let csv = object(&world, &csv_key).await;
    let rows = csv.lines().filter(|l| l.starts_with("report,")).count();
    assert_eq!(
        rows as u64,
        (CAS as u64) * 31 * PER_DAY,
        "every report in the manifest"
    );
    assert!(csv.contains(&format!("{} FAILED reports in a row", 31 * PER_DAY)));
}
