//! What counts as evidence: only a report the service made. Tried as someone who may write
//! to the report bucket would try it.

use crate::support;
use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use pca_audit_scheduler::aws::ledger::ClaimResult;
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::bucket::report_prefix;
use pca_audit_scheduler::domain::outcome::Outcome;
use pca_audit_scheduler::domain::time::Timestamp;
use pca_audit_scheduler::entry::Response;
use pca_audit_scheduler::run::summary::RunSummary;
use pca_audit_scheduler::services::{Clock, Services, SystemClock};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{World, attr, fast_account, handle, outcome_of, run_as};

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
    let plant = || {
        world
            .s3
            .put_object()
            .bucket(&world.bucket)
            .key(&forged_key)
            .body(ByteStream::from_static(b"[]"))
            .send()
    };
    // The stack's bucket policy refuses every writer but Private CA under audit-report/ ...
    let refused = plant().await.expect_err("the bucket policy's Deny");
    assert_eq!(
        refused.raw_response().map(|r| r.status().as_u16()),
        Some(403)
    );
    // ... but an account administrator can change the policy, and a bucket of one's own may
    // never have had the Deny: the function must not take the planted object all the same.
    world.lift_the_writers_deny().await;
    plant()
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

/// The report bucket as the stack makes it: versioned, so an overwrite or a delete leaves the
/// service's version behind.
async fn versioned(world: &World) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    world
        .s3
        .put_bucket_versioning()
        .bucket(&world.bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning on");
}

/// A coverage request through the handler, over the last ten minutes and the next ten.
async fn coverage_now(services: &Services, verify: bool) -> Value {
    let now = SystemClock::default().now();
    let at = |t: Timestamp| t.to_string();
    let ten = Duration::from_secs(600);
    let request = json!({"coverage": {
        "from": at(now.minus(ten)), "to": at(now.plus(ten)), "verifyObjects": verify,
    }});
    match handle(services, request).await.expect("coverage answered") {
        Response::Coverage(summary) => serde_json::to_value(*summary).unwrap(),
        other => panic!("a coverage request answered otherwise: {other:?}"),
    }
}

/// The object as S3 answers for it now: (version id, ETag, checksum).
async fn head(world: &World, key: &str) -> (String, String, String) {
    let out = world
        .s3
        .head_object()
        .bucket(&world.bucket)
        .key(key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("head the report");
    (
        out.version_id().unwrap_or_default().to_owned(),
        out.e_tag().unwrap_or_default().to_owned(),
        out.checksum_crc64_nvme()
            .map(|c| format!("CRC64NVME:{c}"))
            .unwrap_or_default(),
    )
}

/// A report the follow-up finds is pinned (version, ETag, checksum) on its history item and
/// its CA's window, as S3 answers for the object; the coverage manifest lists the pin.
#[tokio::test]
async fn a_report_found_in_the_bucket_is_pinned_and_the_manifest_names_its_version() {
    let world = World::new().await;
    versioned(&world).await;
    fast_account(&world.account_id);
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let services = world.fast_services();

    let summary = run_as(&services, &world, "pinned").await;
    let o = &summary.certificate_authorities[0];
    let key = match &o.outcome {
        Outcome::Requested { s3_key, .. } => s3_key.clone(),
        other => panic!("requested: {other:?}"),
    };
    let check = o.report.as_ref().expect("followed up");
    assert_eq!(check.status.as_str(), "SUCCESS", "{o:#?}");
    let (version, etag, checksum) = head(&world, &key).await;
    assert!(!version.is_empty() && !etag.is_empty(), "S3 pins it");
    assert!(checksum.starts_with("CRC64NVME:"), "S3 keeps a checksum");

    let history = world.history(&arn).await;
    let item = &history[0];
    assert_eq!(attr(item, "version_id"), Some(version.as_str()));
    assert_eq!(attr(item, "etag"), Some(etag.as_str()));
    assert_eq!(attr(item, "checksum"), Some(checksum.as_str()));
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_version_id"), Some(version.as_str()));
    assert_eq!(attr(&window, "last_checksum"), Some(checksum.as_str()));

    let answer = coverage_now(&services, false).await;
    let row = first_manifest_row(&world, &answer).await;
    let field = |name: &str| row[name].as_str();
    assert_eq!(
        (field("version_id"), field("etag"), field("checksum")),
        (version.as_str(), etag.as_str(), checksum.as_str())
    );
}

/// The manifest's first row (the first report's), by column name, as an auditor reads the CSV.
async fn first_manifest_row(world: &World, answer: &Value) -> HashMap<String, String> {
    let csv = world
        .object_text(answer["manifest"]["csvKey"].as_str().unwrap())
        .await;
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers().unwrap().clone();
    let row = rows.records().next().expect("the report's row").unwrap();
    header
        .iter()
        .map(str::to_owned)
        .zip(row.iter().map(str::to_owned))
        .collect()
}

/// What `sha256sum` prints of the version `version_id` of the object, as S3 returns it: an
/// auditor's own check, made without the function's code.
async fn sha256_of_version(world: &World, key: &str, version_id: &str) -> String {
    let out = world
        .s3
        .get_object()
        .bucket(&world.bucket)
        .key(key)
        .version_id(version_id)
        .send()
        .await
        .expect("get the pinned version");
    let bytes = out.body.collect().await.expect("its body").into_bytes();
    assert!(!bytes.is_empty(), "a report with its certificates");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key of the report a run requested of its only CA.
fn requested_key(summary: &RunSummary) -> String {
    match &summary.certificate_authorities[0].outcome {
        Outcome::Requested { s3_key, .. } => s3_key.clone(),
        other => panic!("requested: {other:?}"),
    }
}

/// With READ_REPORTS, the SHA-256 of the bytes read is pinned with the version read: the
/// summary, the history item, the window and both manifests hold what `sha256sum` gives of
/// the version S3 returns (S3 keeps only a CRC64NVME of it: the SHA-256 is the function's).
#[tokio::test]
async fn a_report_read_is_pinned_with_the_sha256_of_the_version_s3_returns() {
    let world = World::new().await;
    versioned(&world).await;
    fast_account(&world.account_id);
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let settings = world.settings_with(&[("READ_REPORTS", "true")]);
    let services =
        Services::new(settings, &world.sdk, support::clock()).with_create_period(Duration::ZERO);

    let summary = run_as(&services, &world, "read").await;
    let key = requested_key(&summary);
    let check = summary.certificate_authorities[0].report.as_ref().unwrap();
    assert!(check.contents.is_some(), "read: {check:#?}");
    let (version, _, checksum) = head(&world, &key).await;
    assert!(checksum.starts_with("CRC64NVME:"), "{checksum}");
    let sha256 = sha256_of_version(&world, &key, &version).await;
    let pin = check.pin.as_ref().expect("pinned");
    assert_eq!(pin.version_id.as_deref(), Some(version.as_str()));
    assert_eq!(pin.sha256.as_deref(), Some(sha256.as_str()));

    let history = world.history(&arn).await;
    assert_eq!(attr(&history[0], "sha256"), Some(sha256.as_str()));
    let window = world.window_item(&arn).await.unwrap();
    assert_eq!(attr(&window, "last_sha256"), Some(sha256.as_str()));

    let answer = coverage_now(&services, false).await;
    let row = first_manifest_row(&world, &answer).await;
    let field = |name: &str| row[name].as_str();
    assert_eq!(
        (field("version_id"), field("sha256")),
        (version.as_str(), sha256.as_str())
    );
    let json_key = answer["manifest"]["jsonKey"].as_str().unwrap().to_owned();
    let json: Value = serde_json::from_str(&world.object_text(&json_key).await).unwrap();
    assert_eq!(json["rows"][0]["sha256"], sha256.as_str(), "{json:#}");
}

/// A report whose object S3 keeps a full-object SHA-256 of is pinned with it, unread (here
/// copied onto itself with one, as an administrator adds a checksum to an object: the same
/// bytes, a new version). A report read or not, the manifest gives an auditor the SHA-256
/// wherever S3 or the function knows it.
#[tokio::test]
async fn a_report_s3_keeps_a_sha256_of_is_pinned_with_it_unread() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, MetadataDirective};
    let world = World::new().await;
    versioned(&world).await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 600}));
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let services = world.fast_services();
    let key = requested_key(&world.run_leaving_reports_creating(&services).await);
    world.finish_reports();
    world.lift_the_writers_deny().await;
    world
        .s3
        .copy_object()
        .bucket(&world.bucket)
        .key(&key)
        .copy_source(format!("{}/{key}", world.bucket))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("checksum", "sha256")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("the report copied onto itself with a SHA-256");

    let summary = run_as(&services, &world, "next").await;
    let check = summary.certificate_authorities[0].report.as_ref().unwrap();
    assert_eq!(check.status.as_str(), "SUCCESS", "{check:#?}");
    assert!(check.contents.is_none(), "not read");
    let pin = check.pin.as_ref().expect("pinned");
    let version = pin.version_id.clone().expect("a version");
    let sha256 = sha256_of_version(&world, &key, &version).await;
    assert!(
        pin.checksum
            .as_deref()
            .is_some_and(|c| c.starts_with("SHA256:")),
        "{pin:?}"
    );
    assert_eq!(pin.sha256.as_deref(), Some(sha256.as_str()));
    let history = world.history(&arn).await;
    assert_eq!(attr(&history[0], "sha256"), Some(sha256.as_str()));
}

/// `verifyObjects` holds each SUCCESS report of the period to the version the follow-up
/// pinned: one written over and one deleted are gaps of their own (`evidenceChanged`, naming
/// the report), the untouched one is covered; without the option nothing is looked at.
#[tokio::test]
async fn verify_objects_finds_the_overwritten_and_the_deleted_report_and_not_the_untouched() {
    let world = World::new().await;
    versioned(&world).await;
    fast_account(&world.account_id);
    let arns = world.seeded_arns(&[("ACTIVE", 3)]);
    let services = world.fast_services();
    let summary = run_as(&services, &world, "made").await;
    assert_eq!(summary.counts.requested, 3, "{summary:#?}");
    let key_of = |arn: &str| -> String {
        let o = summary
            .certificate_authorities
            .iter()
            .find(|o| o.certificate_authority_arn == arn)
            .unwrap();
        assert_eq!(o.report.as_ref().unwrap().status.as_str(), "SUCCESS");
        match &o.outcome {
            Outcome::Requested { s3_key, .. } => s3_key.clone(),
            other => panic!("requested: {other:?}"),
        }
    };
    let (overwritten, deleted) = (key_of(&arns[0]), key_of(&arns[1]));
    // As an administrator who changed the bucket policy could.
    world.lift_the_writers_deny().await;
    world
        .s3
        .put_object()
        .bucket(&world.bucket)
        .key(&overwritten)
        .body(ByteStream::from_static(b"[]"))
        .send()
        .await
        .expect("a writer of the bucket overwrites a report");
    world
        .s3
        .delete_object()
        .bucket(&world.bucket)
        .key(&deleted)
        .send()
        .await
        .expect("and deletes another");

    let unchecked = coverage_now(&services, false).await;
    assert_eq!(unchecked["counts"]["evidenceChanged"], 0, "{unchecked:#}");
    assert!(unchecked["counts"].get("objectsVerified").is_none());

    let answer = coverage_now(&services, true).await;
    assert_eq!(answer["counts"]["objectsVerified"], 3, "{answer:#}");
    assert_eq!(answer["counts"]["evidenceChanged"], 2, "{answer:#}");
    let ca = |arn: &str| {
        answer["certificateAuthorities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["certificateAuthorityArn"] == arn)
            .unwrap()
            .clone()
    };
    for (arn, key, change) in [
        (&arns[0], &overwritten, "written over"),
        (&arns[1], &deleted, "deleted"),
    ] {
        let gaps = ca(arn)["gaps"].as_array().unwrap().clone();
        let changed: Vec<&Value> = gaps
            .iter()
            .filter(|g| g["kind"] == "evidenceChanged")
            .collect();
        assert_eq!(changed.len(), 1, "{gaps:#?}");
        assert_eq!(changed[0]["report"]["s3Key"], key.as_str());
        let said = changed[0]["report"]["change"].as_str().unwrap();
        assert!(said.contains(change), "{said}");
    }
    assert_eq!(ca(&arns[2])["coverage"], "covered");
    // The manifest's gap rows name the report and what changed.
    let csv_key = answer["manifest"]["csvKey"].as_str().unwrap().to_owned();
    let csv = world.object_text(&csv_key).await;
    let changed_rows = csv.lines().filter(|l| l.contains(",evidenceChanged,"));
    assert_eq!(
        changed_rows.filter(|l| l.contains("audit-report/")).count(),
        2,
        "{csv}"
    );
}

/// The report bucket must belong to the configured owner: every S3 call names it, and S3
/// refuses the call otherwise. A run fails every CA before claiming a window or requesting a
/// report; a coverage request writes no manifest.
#[tokio::test]
async fn a_bucket_of_another_owner_is_refused_before_anything_is_claimed() {
    let world = World::new().await;
    fast_account(&world.account_id);
    let arns = world.seeded_arns(&[("ACTIVE", 2)]);
    let stranger = support::new_account_id();
    let settings = world.settings_with(&[("REPORT_BUCKET_OWNER", &stranger)]);
    let services =
        Services::new(settings, &world.sdk, support::clock()).with_create_period(Duration::ZERO);

    let summary = run_as(&services, &world, "wrong-owner").await;
    assert_eq!(summary.counts.failed, 2, "{summary:#?}");
    for arn in &arns {
        let o = outcome_of(&summary, arn);
        let message = o["errorMessage"].as_str().unwrap();
        assert!(
            message.contains(&world.bucket) && message.contains(&stranger),
            "{message}"
        );
        world.assert_no_window_consumed(arn).await;
    }
    assert!(world.create_calls().is_empty(), "nothing requested");

    let err = handle(
        &services,
        json!({"coverage": {"from": "2026-01-01", "to": "2026-01-02"}}),
    )
    .await
    .expect_err("no manifest in a bucket of another owner");
    assert!(
        err.error_message.contains(&world.bucket),
        "{}",
        err.error_message
    );
    assert!(world.objects("evidence/").await.is_empty());
}

/// The caller's write check at its narrowest: the member role may write the two
/// permission-test objects only (member-role.yaml's default grant, and the bucket policy's
/// statement for the member roles). Should AWS's check also write the report's own key (the
/// stack's reading 2), every create of that account is refused naming the bucket and the
/// parameter that widens the grant; at the likely reading (1) the same grant passes.
#[tokio::test]
async fn a_caller_write_check_wider_than_the_grant_says_which_parameter_widens_it() {
    let world = World::new().await;
    let member = support::Member::new(&world.account_id, Some("")).await;
    member.fast();
    let arn = member.seed_in(support::REGION, 1).remove(0);
    let role = pca_audit_scheduler::config::DEFAULT_MEMBER_ROLE;
    let keys = json!([
        format!("arn:aws:s3:::{}/acm-pca-permission-test-key", world.bucket),
        format!(
            "arn:aws:s3:::{}/acm-pca-permission-test-key-private",
            world.bucket
        ),
    ]);
    let grant = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": keys}
    ]});
    let (_, creds) = support::account_config(&member.account_id).await;
    let out = support::query_api(
        "AWS_ENDPOINT_URL_IAM",
        creds.access_key_id(),
        vec![
            ("Action", "PutRolePolicy".into()),
            ("Version", "2010-05-08".into()),
            ("RoleName", role.into()),
            ("PolicyName", "audit-reports".into()),
            ("PolicyDocument", grant.to_string()),
        ],
    )
    .await;
    assert!(
        out.contains("PutRolePolicyResponse"),
        "PutRolePolicy: {out}"
    );
    // The bucket's policy as the template writes it for a list of accounts: Private CA for
    // both accounts' CAs, the Deny of other writers, and the member roles on the two keys.
    let mut policy: Value = serde_json::from_str(&support::bucket_policy(
        &world.bucket,
        &[&world.account_id, &member.account_id],
    ))
    .unwrap();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "MemberRolesPassTheWriteCheck",
        "Effect": "Allow",
        "Principal": {"AWS": [member.account_id]},
        "Action": "s3:PutObject",
        "Resource": keys,
        "Condition": {"ArnLike": {"aws:PrincipalArn": format!("arn:aws:iam::*:role/{role}")}}
    }));
    world
        .s3
        .put_bucket_policy()
        .bucket(&world.bucket)
        .policy(policy.to_string())
        .send()
        .await
        .expect("bucket policy");
    let settings = world.settings_with(&[("AUDIT_ACCOUNTS", &member.account_id)]);
    let services =
        Services::new(settings, &world.sdk, support::clock()).with_create_period(Duration::ZERO);

    member.configure_emulator(json!({"check_caller_write": 2}));
    let refused = run_as(&services, &world, "wider-check").await;
    let o = outcome_of(&refused, &arn);
    assert_eq!(o["outcome"], "failed", "{o:#}");
    let message = o["errorMessage"].as_str().unwrap();
    assert!(
        message.contains(&world.bucket) && message.contains("CallerWriteGrant=AuditReports"),
        "{message}"
    );
    assert!(member.accepted_creates().is_empty(), "no report made");

    member.configure_emulator(json!({"check_caller_write": 1}));
    let passed = run_as(&services, &world, "likely-check").await;
    assert_eq!(
        outcome_of(&passed, &arn)["outcome"],
        "requested",
        "{passed:#?}"
    );
    assert_eq!(member.accepted_creates()[&arn], 1);
}
