//! Bad input: malformed events, work items and settings are refused where they enter, with a
//! message naming the problem; a refused event touches nothing in AWS; the event parser
//! survives arbitrary input; ARNs are safe S3 prefixes; the logs carry no secrets.
//!
//! The malformed inputs live in `tests/corpus/` (one file each, so a person can replay one:
//! `cargo lambda invoke --data-file tests/corpus/events/dry-run-yes.json`); what each refusal
//! must say is in `CORPUS` below.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lambda_runtime::{Context, LambdaEvent};
use pca_audit_scheduler::config::Settings;
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::ids::is_region;
use pca_audit_scheduler::domain::report::ReportFormat;
use pca_audit_scheduler::entry::events::{
    MAX_REQUESTED_ARNS, RequestError, RunRequest, RunScope, Trigger,
};
use pca_audit_scheduler::entry::{self, Response, RunError};
use pca_audit_scheduler::services::Services;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};

const CA: &str = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555";

/// Every corpus file, and what its refusal must say (all of it).
const CORPUS: &[(&str, &[&str])] = &[
    // Events: wrong types.
    (
        "events/dry-run-yes.json",
        &[
            "invalid manual request",
            "`dryRun`: invalid type: a string, expected a boolean",
        ],
    ),
    (
        "events/format-a-number.json",
        &["invalid manual request", "invalid type: integer `1`"],
    ),
    (
        "events/format-negative.json",
        &["invalid manual request", "invalid type: integer `-1`"],
    ),
    (
        "events/number-beyond-u64.json",
        &["invalid manual request", "invalid type: floating point"],
    ),
    (
        "events/format-xml.json",
        &[
            "invalid manual request",
            "unknown variant `XML`",
            "`JSON`",
            "`CSV`",
        ],
    ),
    (
        "events/arns-a-string.json",
        &[
            "invalid manual request",
            "invalid type: a string",
            "expected a sequence",
        ],
    ),
    (
        "events/arns-of-numbers.json",
        &[
            "invalid manual request",
            "invalid type: integer `1`, expected a string",
        ],
    ),
    (
        "events/nested-within-limit.json",
        &[
            "invalid manual request",
            "invalid type: sequence, expected a boolean",
        ],
    ),
    // Events: unknown fields, empty lists.
    (
        "events/unknown-field.json",
        &["invalid manual request", "unknown field `dryrun`", "dryRun"],
    ),
    (
        "events/secret-looking-field.json",
        &["invalid manual request", "unknown field `apiKey`"],
    ),
    (
        "events/records-from-s3.json",
        &["invalid manual request", "unknown field `Records`"],
    ),
    (
        "events/arns-empty.json",
        &["certificateAuthorityArns is empty", "leave it out"],
    ),
    // Events: ARNs that are not CA ARNs, each named by its index.
    (
        "events/arn-of-s3.json",
        &[
            "certificateAuthorityArns[1]",
            "arn:aws:s3:::my-evidence-bucket",
            "not an acm-pca ARN",
        ],
    ),
    (
        "events/arn-of-acm.json",
        &["certificateAuthorityArns[0]", "not an acm-pca ARN"],
    ),
    (
        "events/arn-unknown-partition.json",
        &["certificateAuthorityArns[0]", "unknown partition"],
    ),
    (
        "events/arn-invalid-region.json",
        &["certificateAuthorityArns[0]", "invalid region"],
    ),
    (
        "events/arn-short-account.json",
        &["certificateAuthorityArns[0]", "account must be 12 digits"],
    ),
    (
        "events/arn-ca-id-not-uuid.json",
        &[
            "certificateAuthorityArns[0]",
            "CA id is not a lowercase UUID",
        ],
    ),
    (
        "events/arn-ca-id-uppercase.json",
        &[
            "certificateAuthorityArns[0]",
            "CA id is not a lowercase UUID",
        ],
    ),
    (
        "events/arn-path-traversal.json",
        &[
            "certificateAuthorityArns[2]",
            "CA id is not a lowercase UUID",
        ],
    ),
    (
        "events/arn-trailing-junk.json",
        &[
            "certificateAuthorityArns[0]",
            "CA id is not a lowercase UUID",
        ],
    ),
    (
        "events/arn-leading-space.json",
        &["certificateAuthorityArns[0]", "does not start with `arn:`"],
    ),
    (
        "events/arn-template.json",
        &[
            "certificateAuthorityArns[0]",
            "resource is not `certificate-authority/<id>`",
        ],
    ),
    // Events: JSON that is not an object, or not JSON.
    (
        "events/an-array.json",
        &["must be a JSON object, not an array"],
    ),
    (
        "events/a-string.json",
        &["must be a JSON object, not a string"],
    ),
    ("events/null.json", &["must be a JSON object, not null"]),
    (
        "events/a-number.json",
        &["must be a JSON object, not a number"],
    ),
    (
        "events/a-boolean.json",
        &["must be a JSON object, not a boolean"],
    ),
    (
        "events/nested-too-deep.json",
        &["the event is not JSON", "recursion limit exceeded"],
    ),
    (
        "events/number-out-of-range.json",
        &["the event is not JSON", "number out of range"],
    ),
    (
        "events/trailing-junk.txt",
        &["the event is not JSON", "trailing characters"],
    ),
    ("events/truncated.txt", &["the event is not JSON", "line 1"]),
    (
        "events/empty.txt",
        &["the event is not JSON", "EOF while parsing"],
    ),
    (
        "events/not-utf8.bin",
        &["the event is not JSON", "invalid unicode"],
    ),
    (
        "events/latin1.bin",
        &["the event is not JSON", "invalid unicode"],
    ),
    // Events: envelopes of something else.
    (
        "events/eventbridge-other-source.json",
        &[
            "unsupported event",
            "source `aws.s3`",
            "detail-type `Object Created`",
        ],
    ),
    (
        "events/eventbridge-other-detail-type.json",
        &[
            "unsupported event",
            "detail-type `EC2 Instance State-change Notification`",
        ],
    ),
    (
        "events/eventbridge-source-a-number.json",
        &[
            "invalid EventBridge event",
            "invalid type: integer `1`, expected a string",
        ],
    ),
    (
        "events/eventbridge-without-detail.json",
        &["invalid EventBridge event", "missing field `detail`"],
    ),
    (
        "events/eventbridge-bad-time.json",
        &[
            "invalid EventBridge event",
            "input contains invalid characters",
        ],
    ),
    (
        "events/scheduler-wrong-source.json",
        &["unsupported event", "source `aws.events`"],
    ),
    (
        "events/scheduler-unknown-field.json",
        &[
            "invalid EventBridge Scheduler input",
            "unknown field `dryRun`",
        ],
    ),
    (
        "events/scheduler-source-null.json",
        &[
            "invalid EventBridge Scheduler input",
            "invalid type: null, expected a string",
        ],
    ),
    // Fan-out work items (SQS message bodies).
    (
        "work-items/account-short.json",
        &[
            "invalid work item",
            "accountId `1111` is not a 12-digit account id",
        ],
    ),
    (
        "work-items/account-with-letters.json",
        &["invalid work item", "accountId `11111111111a`"],
    ),
    (
        "work-items/account-a-number.json",
        &[
            "invalid work item",
            "invalid type: integer `111111111111`, expected a string",
        ],
    ),
    (
        "work-items/region-invalid.json",
        &["invalid work item", "region `mars-1` is not a region name"],
    ),
    (
        "work-items/region-uppercase.json",
        &[
            "invalid work item",
            "region `EU-WEST-1` is not a region name",
        ],
    ),
    (
        "work-items/unknown-field.json",
        &[
            "invalid work item",
            "unknown field `certificateAuthorityArns`",
        ],
    ),
    (
        "work-items/parent-run-missing.json",
        &["invalid work item", "missing field `parentRunId`"],
    ),
    (
        "work-items/dry-run-a-string.json",
        &[
            "invalid work item",
            "`dryRun`: invalid type: a string, expected a boolean",
        ],
    ),
    (
        "work-items/not-json.txt",
        &["invalid work item", "expected value"],
    ),
    // Settings (the function's whole environment).
    (
        "settings/ledger-table-missing.json",
        &["LEDGER_TABLE is missing"],
    ),
    (
        "settings/ledger-table-with-spaces.json",
        &["LEDGER_TABLE", "not a DynamoDB table name"],
    ),
    (
        "settings/bucket-missing.json",
        &["REPORT_BUCKET is missing"],
    ),
    (
        "settings/bucket-with-capitals.json",
        &["REPORT_BUCKET", "Evidence_Bucket", "not an S3 bucket name"],
    ),
    (
        "settings/bucket-too-short.json",
        &["REPORT_BUCKET", "not an S3 bucket name"],
    ),
    (
        "settings/report-format-xml.json",
        &["REPORT_FORMAT", "must be JSON or CSV"],
    ),
    (
        "settings/audit-regions-invalid.json",
        &["AUDIT_REGIONS", "`atlantis` is not a region name"],
    ),
    (
        "settings/audit-regions-empty-list.json",
        &["AUDIT_REGIONS", "names no region"],
    ),
    (
        "settings/aws-region-invalid.json",
        &["AWS_REGION", "moon", "not a region name"],
    ),
    (
        "settings/interval-29-minutes.json",
        &["MIN_INTERVAL_MINUTES", "29 minutes is below", "30 minutes"],
    ),
    (
        "settings/interval-negative.json",
        &["MIN_INTERVAL_MINUTES", "not a whole number of minutes"],
    ),
    (
        "settings/interval-overflowing.json",
        &["MIN_INTERVAL_MINUTES", "not a whole number of minutes"],
    ),
    (
        "settings/interval-in-words.json",
        &["MIN_INTERVAL_MINUTES", "not a whole number of minutes"],
    ),
    (
        "settings/ca-states-unknown.json",
        &["AUDIT_CA_STATES", "`SLEEPING` is not a CA state"],
    ),
    (
        "settings/history-retention-zero.json",
        &["HISTORY_RETENTION_DAYS", "from 1 to 36500"],
    ),
    (
        "settings/max-concurrency-zero.json",
        &["MAX_CONCURRENCY", "from 1 to 64"],
    ),
    (
        "settings/max-concurrency-negative.json",
        &["MAX_CONCURRENCY", "from 1 to 64"],
    ),
    (
        "settings/audit-accounts-short-id.json",
        &["AUDIT_ACCOUNTS", "`12345` is not a 12-digit account id"],
    ),
    (
        "settings/ous-without-organization.json",
        &[
            "AUDIT_ORGANIZATIONAL_UNITS",
            "only applies with AUDIT_ACCOUNTS=ORGANIZATION",
        ],
    ),
    (
        "settings/ou-id-invalid.json",
        &["AUDIT_ORGANIZATIONAL_UNITS", "`ou-x` is not an OU id"],
    ),
    (
        "settings/member-role-name-with-slashes.json",
        &["MEMBER_ROLE_NAME", "not an IAM role name"],
    ),
    (
        "settings/external-id-with-spaces.json",
        &["MEMBER_ROLE_EXTERNAL_ID", "(not shown)", "2-1224"],
    ),
    (
        "settings/exempt-not-a-ca-arn.json",
        &["EXEMPT_CA_ARNS", "is not a CA ARN", "not an acm-pca ARN"],
    ),
    (
        "settings/required-tags-empty-key.json",
        &["REQUIRED_TAGS", "`=x` is not key or key=value"],
    ),
    (
        "settings/ca-types-unknown.json",
        &["AUDIT_CA_TYPES", "`INTERMEDIATE` is not a CA type"],
    ),
    (
        "settings/ca-types-empty-list.json",
        &["AUDIT_CA_TYPES", "names no type"],
    ),
    (
        "settings/fanout-queue-not-a-url.json",
        &["FANOUT_QUEUE_URL", "not an SQS queue URL"],
    ),
    (
        "settings/fanout-threshold-too-large.json",
        &["FANOUT_THRESHOLD", "from 0 (always) to 10000"],
    ),
    (
        "settings/fanout-threshold-negative.json",
        &["FANOUT_THRESHOLD", "from 0 (always) to 10000"],
    ),
];

fn corpus_path(name: &str) -> String {
    format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn corpus_bytes(name: &str) -> Vec<u8> {
    std::fs::read(corpus_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn corpus_json(name: &str) -> Value {
    serde_json::from_slice(&corpus_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn settings_from(env: &HashMap<String, String>) -> Result<Settings, String> {
    Settings::from_lookup(|k| env.get(k).cloned()).map_err(|e| e.to_string())
}

/// What the entry point of a corpus file's kind says about it: `Ok` is a bug.
fn refusal(name: &str) -> Result<(), String> {
    let bytes = corpus_bytes(name);
    if name.starts_with("events/") {
        RunRequest::from_json(&bytes)
            .map(drop)
            .map_err(|e| e.to_string())
    } else if name.starts_with("work-items/") {
        let body = String::from_utf8(bytes).expect("work items are text");
        RunRequest::from_work_item(&body)
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        let env: HashMap<String, String> =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        settings_from(&env).map(drop)
    }
}

fn corpus_files() -> Vec<String> {
    let mut names = Vec::new();
    for dir in ["events", "work-items", "settings"] {
        for entry in std::fs::read_dir(corpus_path(dir)).expect("corpus directory") {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            names.push(format!("{dir}/{file}"));
        }
    }
    names.sort();
    names
}

fn too_many_arns() -> Value {
    let arns: Vec<String> = (0..=MAX_REQUESTED_ARNS)
        .map(|i| format!("arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/{:08x}-2222-3333-4444-555555555555", i))
        .collect();
    json!({ "certificateAuthorityArns": arns })
}

fn assert_says(what: &str, message: &str, says: &[&str]) {
    for s in says {
        assert!(message.contains(s), "{what}: `{message}` should say `{s}`");
    }
}

#[test]
fn every_corpus_case_is_refused_naming_its_problem() {
    let listed: Vec<String> = CORPUS.iter().map(|(n, _)| n.to_string()).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        corpus_files(),
        sorted,
        "every file in tests/corpus/ needs its expectation in CORPUS, and every entry its file"
    );
    let mut refused = 0;
    for (name, says) in CORPUS {
        let message = match refusal(name) {
            Ok(()) => panic!("{name} was accepted"),
            Err(m) => m,
        };
        assert_says(name, &message, says);
        refused += 1;
    }

    // Too large for a file a person would open.
    let err = RunRequest::from_value(too_many_arns()).unwrap_err();
    assert_says(
        "1001 ARNs",
        &err.to_string(),
        &["certificateAuthorityArns has 1001 entries", "at most 1000"],
    );
    refused += 1;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = RunRequest::from_json(format!(r#"{{"detail":{deep}}}"#).as_bytes()).unwrap_err();
    assert_says(
        "100000 deep",
        &err.to_string(),
        &["not JSON", "recursion limit"],
    );
    refused += 1;
    let err = RunRequest::from_json(b"\xff\xfe{}").unwrap_err();
    assert_says("a UTF-16 BOM", &err.to_string(), &["not JSON"]);
    refused += 1;

    assert!(refused >= 30, "only {refused} malformed inputs");
    assert_eq!(refused, CORPUS.len() + 3);

    // The figures of the long run (scripts/reliability): what was refused, and how many cases
    // each property test ran.
    if let Ok(dir) = std::env::var("RELIABILITY_FIGURES") {
        let of_kind = |kind: &str| CORPUS.iter().filter(|(n, _)| n.starts_with(kind)).count();
        let cases = |default: u32| config(default).cases;
        let md = format!(
            "| figure | value |\n|---|---|\n\
             | malformed inputs refused, each with a message naming the problem | {refused}: \
             {} events, {} SQS work items, {} settings (files in `tests/corpus/`), 3 built in the test |\n\
             | property test: arbitrary JSON through every entry point, no panic | {} cases |\n\
             | property test: arbitrary bytes, no panic | {} cases |\n\
             | property test: valid manual requests of 1 to 50 ARNs parse and keep their ARNs | {} cases |\n\
             | property test: only CA-shaped ARNs parse, their ids are safe S3 prefixes | {} cases |\n",
            of_kind("events/"),
            of_kind("work-items/"),
            of_kind("settings/"),
            cases(2000),
            cases(2000),
            cases(500),
            cases(3000),
        );
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/bad_input.md"), md).unwrap();
    }
}

#[test]
fn one_bad_arn_refuses_the_whole_request() {
    let event = json!({"certificateAuthorityArns": [CA, CA, "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/x"], "dryRun": true});
    let err = RunRequest::from_value(event).unwrap_err();
    assert!(
        matches!(err, RequestError::InvalidArn { index: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn an_invalid_external_id_is_named_but_never_shown() {
    let secret = "some secret value";
    let env: HashMap<String, String> = [
        ("LEDGER_TABLE", "audit-ledger"),
        ("REPORT_BUCKET", "evidence-bucket"),
        ("AWS_REGION", "eu-west-1"),
        ("MEMBER_ROLE_EXTERNAL_ID", secret),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let err = Settings::from_lookup(|k| env.get(k).cloned()).unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(text.contains("MEMBER_ROLE_EXTERNAL_ID"), "{text}");
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Gaps the corpus found (now closed): each test says what must happen.

/// A region's number is digits only: `str::parse::<u8>` alone would take `+1` and `01`.
#[test]
fn region_names_with_a_sign_or_a_leading_zero_are_refused() {
    for region in ["us-east-+1", "us-east-01", "eu-west-+20"] {
        assert!(!is_region(region), "`{region}` taken as a region");
        let arn = CA.replace("us-east-1", region);
        assert!(CaArn::parse(&arn).is_err(), "{arn} accepted");
        let body = json!({"accountId": "111111111111", "region": region, "parentRunId": "r"});
        assert!(
            RunRequest::from_work_item(&body.to_string()).is_err(),
            "work item for `{region}` accepted"
        );
        let env: HashMap<String, String> = [
            ("LEDGER_TABLE", "audit-ledger"),
            ("REPORT_BUCKET", "evidence-bucket"),
            ("AUDIT_REGIONS", region),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let refused = settings_from(&env);
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("AUDIT_REGIONS")),
            "AUDIT_REGIONS={region}: {refused:?}"
        );
    }
}

/// An interval without an upper bound would reach past the year 9999, which the ledger's
/// fixed-width instants cannot hold; it would be found only after a create, too late.
#[test]
fn an_interval_past_the_year_9999_is_refused_at_start_up() {
    for minutes in ["10000000000", "18446744073709551615"] {
        let env: HashMap<String, String> = [
            ("LEDGER_TABLE", "audit-ledger"),
            ("REPORT_BUCKET", "evidence-bucket"),
            ("AWS_REGION", "eu-west-1"),
            ("MIN_INTERVAL_MINUTES", minutes),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let refused = settings_from(&env);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("MIN_INTERVAL_MINUTES")),
            "MIN_INTERVAL_MINUTES={minutes}: {refused:?}"
        );
    }
}

/// serde's own messages carry no path (`invalid type: string "yes", expected a boolean`):
/// the refusal must say which field was wrong.
#[test]
fn a_wrong_typed_field_is_named_in_the_refusal() {
    for (event, field) in [
        (json!({"dryRun": "yes"}), "dryRun"),
        (json!({"format": 1}), "format"),
        (
            json!({"certificateAuthorityArns": CA}),
            "certificateAuthorityArns",
        ),
        (json!({"source": null}), "source"),
    ] {
        let err = RunRequest::from_value(event.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(field),
            "{event}: `{err}` does not name `{field}`"
        );
    }
}

/// Refusals are logged: they quote no more than a screenful of what they were given (an
/// event can carry anything, a secret in the wrong field included).
#[test]
fn refusals_quote_at_most_a_screenful_of_the_input() {
    let long = "x".repeat(5000);
    let events = [
        json!({"source": long, "detail-type": long, "detail": {}}),
        json!({"source": long}),
        json!({"dryRun": long}),
        json!({"format": long}),
        json!({ long.clone(): true }),
    ];
    for event in events {
        let err = RunRequest::from_value(event).unwrap_err().to_string();
        assert!(
            err.chars().count() < 1000,
            "{} characters: {}…",
            err.len(),
            &err[..200]
        );
    }
    let item = json!({"accountId": long, "region": "eu-west-1", "parentRunId": "r"});
    let err = RunRequest::from_work_item(&item.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.chars().count() < 1000,
        "{} characters: {}…",
        err.len(),
        &err[..200]
    );
}

// ---------------------------------------------------------------------------------------
// Refused input loses nothing, through the Lambda handler against the local stack.

fn context(run_id: &str, account: &str) -> Context {
    let mut context = Context::default();
    context.request_id = run_id.to_string();
    context.invoked_function_arn = format!("arn:aws:lambda:{REGION}:{account}:function:audit");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context.deadline = now_ms + 300_000;
    context
}

async fn invoke(
    services: &Services,
    world: &World,
    run_id: &str,
    payload: Value,
) -> Result<Response, RunError> {
    entry::handle(
        services,
        LambdaEvent::new(payload, context(run_id, &world.account_id)),
    )
    .await
}

async fn ledger_items(world: &World) -> i32 {
    world
        .dynamodb
        .scan()
        .table_name(&world.table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan ledger")
        .count
}

async fn fast_world_with_one_ca() -> (World, String, Services) {
    let world = World::new().await;
    world.fast();
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    let services = world.fast_services();
    (world, arn, services)
}

#[tokio::test]
async fn refused_events_request_nothing_and_write_nothing() {
    let (world, arn, services) = fast_world_with_one_ca().await;
    let mut many = too_many_arns();
    many["certificateAuthorityArns"][0] = json!(arn);
    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"certificateAuthorityArns": [arn, "arn:aws:s3:::my-evidence-bucket"]}),
            &["certificateAuthorityArns[1]", "not an acm-pca ARN"],
        ),
        (
            json!({"certificateAuthorityArns": [arn], "dryRun": "no"}),
            &["`dryRun`: invalid type: a string"],
        ),
        (
            json!({"certificateAuthorityArns": [arn], "dryrun": false}),
            &["unknown field `dryrun`"],
        ),
        (
            json!({"certificateAuthorityArns": [arn], "format": "XML"}),
            &["unknown variant `XML`"],
        ),
        (many, &["1001 entries"]),
        (
            json!({"Records": [{"messageId": "m-1", "eventSource": "aws:sqs", "body": 5}]}),
            &["invalid SQS event"],
        ),
        (corpus_json("events/arns-empty.json"), &["is empty"]),
        (corpus_json("events/an-array.json"), &["not an array"]),
        (corpus_json("events/null.json"), &["not null"]),
        (
            corpus_json("events/eventbridge-other-source.json"),
            &["aws.s3"],
        ),
        (
            corpus_json("events/eventbridge-bad-time.json"),
            &["invalid EventBridge event"],
        ),
        (
            corpus_json("events/scheduler-wrong-source.json"),
            &["unsupported event"],
        ),
        (
            corpus_json("events/scheduler-unknown-field.json"),
            &["unknown field `dryRun`"],
        ),
        (
            corpus_json("events/secret-looking-field.json"),
            &["unknown field `apiKey`"],
        ),
    ];
    for (i, (event, says)) in cases.into_iter().enumerate() {
        let what = event.to_string();
        let what = &what[..what.len().min(200)];
        match invoke(&services, &world, &format!("refused-{i}"), event).await {
            Err(RunError::InvalidRequest(e)) => assert_says(what, &e.to_string(), says),
            Err(e) => panic!("{what}: refused as {e:?}, not as an invalid request"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }

    // Work items that are refused one by one come back as batch item failures.
    let bad_items = [
        "work-items/account-short.json",
        "work-items/region-invalid.json",
        "work-items/unknown-field.json",
        "work-items/not-json.txt",
    ];
    let records: Vec<Value> = bad_items
        .iter()
        .map(|name| {
            json!({"messageId": name, "eventSource": "aws:sqs",
                   "body": String::from_utf8(corpus_bytes(name)).unwrap()})
        })
        .collect();
    match invoke(
        &services,
        &world,
        "refused-batch",
        json!({"Records": records}),
    )
    .await
    {
        Ok(Response::Batch(b)) => {
            let failed: Vec<&str> = b
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            assert_eq!(failed, bad_items, "every bad work item is a failure");
        }
        other => panic!("a batch answered {other:?}"),
    }

    assert!(
        world.create_calls().is_empty(),
        "{:?}",
        world.create_calls()
    );
    assert!(world.accepted_creates().is_empty());
    assert_eq!(ledger_items(&world).await, 0, "the ledger was written");
    assert!(world.objects("").await.is_empty(), "the bucket was written");
    assert!(world.window_item(&arn).await.is_none());
}

/// `EventBridgeEvent` ignores fields it does not know: a Scheduled Event envelope that also
/// carries a manual request's fields must be refused, not run as a full, real scheduled run.
#[tokio::test]
async fn a_scheduled_envelope_carrying_a_dry_run_is_refused_and_requests_nothing() {
    let (world, arn, services) = fast_world_with_one_ca().await;
    let event = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-11-25T02:00:00Z", "detail": {},
        "dryRun": true, "certificateAuthorityArns": [arn]
    });
    let result = invoke(&services, &world, "envelope-with-dry-run", event).await;
    let accepted = world.accepted_creates();
    match result {
        Err(RunError::InvalidRequest(e)) => assert!(e.to_string().contains("dryRun"), "{e}"),
        Err(e) => panic!("refused as {e:?}"),
        Ok(_) => panic!("accepted as a real scheduled run; creates: {accepted:?}"),
    }
    assert!(accepted.is_empty(), "{accepted:?}");
    assert!(world.window_item(&arn).await.is_none());
}

// ---------------------------------------------------------------------------------------
// Logs: captured as the function writes them (JSON lines), at the production level (INFO).

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// A JSON subscriber writing here, as the function's own is (no ANSI, one object a line).
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let sink = self.clone();
        tracing_subscriber::fmt()
            .json()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || sink.clone())
            .finish()
    }
}

/// A current-thread runtime, so every task of the run logs through the thread's subscriber.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn assert_absent(logs: &str, secret: &str, what: &str) {
    assert!(!secret.is_empty(), "{what} is empty");
    assert!(!logs.contains(secret), "the logs carry {what}:\n{logs}");
}

#[test]
fn logs_of_a_refused_and_a_valid_request_carry_no_secret_and_no_event_body() {
    block_on(async {
        let (world, arn, services) = fast_world_with_one_ca().await;
        let secret_value = "sk-live-5f0e9a1c-never-log-this";
        let refused =
            json!({"certificateAuthorityArns": [arn], "awsSecretAccessKey": secret_value});
        let valid = json!({"certificateAuthorityArns": [arn], "format": "CSV"});
        let (refused_run, valid_run) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );

        let captured = Captured::default();
        let guard = tracing::subscriber::set_default(captured.subscriber());
        let err = invoke(&services, &world, &refused_run, refused.clone()).await;
        assert!(matches!(err, Err(RunError::InvalidRequest(_))), "{err:?}");
        let summary = match invoke(&services, &world, &valid_run, valid.clone()).await {
            Ok(Response::Run(s)) => s,
            other => panic!("{other:?}"),
        };
        drop(guard);
        assert_eq!(summary.counts.requested, 1, "{summary:#?}");

        let logs = captured.text();
        assert_absent(&logs, secret_value, "the refused field's value");
        assert_absent(&logs, &refused.to_string(), "the refused event");
        assert_absent(&logs, &valid.to_string(), "the valid event");
        assert_absent(
            &logs,
            world.credentials.secret_access_key(),
            "the secret access key",
        );
        assert_absent(
            &logs,
            world.credentials.session_token().unwrap_or_default(),
            "the session token",
        );
        // And they say what happened, so the test above can fail.
        assert!(
            logs.contains(&refused_run) && logs.contains("refused the event"),
            "{logs}"
        );
        assert!(
            logs.contains("unknown field `awsSecretAccessKey`"),
            "{logs}"
        );
        assert!(logs.contains(&valid_run), "{logs}");
        let requested = logs
            .lines()
            .any(|l| l.contains(&arn) && l.contains("\"outcome\":\"requested\""));
        assert!(requested, "no requested line for {arn}:\n{logs}");
    });
}

#[test]
fn logs_of_an_account_that_cannot_be_entered_carry_no_external_id_or_keys() {
    block_on(async {
        let external_id = "some-secret-value";
        let world = World::new().await;
        world.fast();
        let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
        let locked = Member::new(&world.account_id, None).await;
        let accounts = format!("{},{}", world.account_id, locked.account_id);
        let services = Services::new(
            world.settings_with(&[
                ("AUDIT_ACCOUNTS", &accounts),
                ("MEMBER_ROLE_EXTERNAL_ID", external_id),
            ]),
            &world.sdk,
            clock(),
        )
        .with_create_period(Duration::ZERO);
        let run_id = uuid::Uuid::new_v4().to_string();
        let scheduled = json!({"source": "aws.scheduler", "executionId": run_id});

        let captured = Captured::default();
        let guard = tracing::subscriber::set_default(captured.subscriber());
        let result = invoke(&services, &world, &run_id, scheduled).await;
        drop(guard);
        match result {
            Err(RunError::Failed(m)) => assert!(
                m.contains(&locked.account_id) && m.contains("AssumeRoleFailed"),
                "{m}"
            ),
            other => panic!("the locked account should fail the run: {other:?}"),
        }

        let logs = captured.text();
        assert_absent(&logs, external_id, "the external id");
        assert_absent(
            &logs,
            world.credentials.secret_access_key(),
            "the secret access key",
        );
        assert_absent(
            &logs,
            world.credentials.session_token().unwrap_or_default(),
            "the session token",
        );
        assert!(logs.contains(&run_id), "{logs}");
        assert!(
            logs.lines()
                .any(|l| l.contains(&locked.account_id) && l.contains("AssumeRoleFailed")),
            "no line for the locked account:\n{logs}"
        );
        assert!(
            logs.lines()
                .any(|l| l.contains(&arn) && l.contains("\"outcome\":\"requested\"")),
            "no outcome line for {arn}:\n{logs}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Property tests. `PROPTEST_CASES` raises the number of cases (the long reliability run).

/// `cases` by default; with `PROPTEST_CASES`, that many for a test whose default is 2000, and
/// the same share for the others (a case of 50 ARNs costs more than one JSON value).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(cases, |n| {
            (n * u64::from(cases) / 2000).clamp(1, u64::from(u32::MAX)) as u32
        });
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn run_property<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

const PREFIXES: [&str; 7] = [
    "the event is not JSON: ",
    "the event must be a JSON object, not ",
    "unsupported event from source `",
    "invalid manual request: ",
    "invalid EventBridge event: ",
    "invalid EventBridge Scheduler input: ",
    "invalid work item: ",
];

fn check_refusal(err: &RequestError) -> Result<(), TestCaseError> {
    let text = err.to_string();
    let prefix = PREFIXES.iter().find(|p| text.starts_with(*p));
    prop_assert!(prefix.is_some(), "unrecognised refusal: {text}");
    prop_assert!(
        text.len() > prefix.unwrap().len(),
        "refusal says nothing: {text}"
    );
    Ok(())
}

/// The part of a CA ARN that names an S3 prefix must stay one path segment.
fn check_safe_id(arn: &CaArn) -> Result<(), TestCaseError> {
    let id = arn.id();
    prop_assert!(!id.is_empty());
    prop_assert!(!id.contains('/') && !id.contains(".."), "{id}");
    prop_assert!(
        !id.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{id:?}"
    );
    prop_assert_eq!(format!("audit-report/{id}/").split('/').count(), 3);
    Ok(())
}

const PARTITIONS: [&str; 5] = ["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"];

fn region() -> impl Strategy<Value = String> {
    "[a-z]{2}(-[a-z]{1,9}){1,2}-([1-9]|1[0-9]|20)".prop_filter("at most 25", |r| r.len() <= 25)
}

fn valid_arn() -> impl Strategy<Value = String> {
    (
        prop::sample::select(PARTITIONS.to_vec()),
        region(),
        "[0-9]{12}",
        any::<u128>(),
    )
        .prop_map(|(p, r, a, id)| {
            format!(
                "arn:{p}:acm-pca:{r}:{a}:certificate-authority/{}",
                uuid::Uuid::from_u128(id).hyphenated()
            )
        })
}

const KEYS: [&str; 20] = [
    "certificateAuthorityArns",
    "dryRun",
    "format",
    "source",
    "detail-type",
    "detail",
    "time",
    "id",
    "version",
    "account",
    "region",
    "resources",
    "executionId",
    "scheduledTime",
    "scheduleArn",
    "accountId",
    "parentRunId",
    "Records",
    "eventSource",
    "body",
];

const WORDS: [&str; 9] = [
    "aws.events",
    "aws.scheduler",
    "Scheduled Event",
    "JSON",
    "CSV",
    "2026-11-25T02:00:00Z",
    "111111111111",
    "eu-west-1",
    "self",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(WORDS.to_vec()).prop_map(str::to_owned),
        1 => valid_arn(),
        2 => "\\PC{0,24}",
        1 => ".{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        text().prop_map(Value::String),
    ];
    let key =
        prop_oneof![3 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned), 1 => text()];
    leaf.prop_recursive(6, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly objects, the shape every accepted event has.
fn event_value() -> impl Strategy<Value = Value> {
    let key =
        prop_oneof![4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned), 1 => text()];
    prop_oneof![
        1 => json_value(),
        3 => prop::collection::btree_map(key, json_value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

fn parse_everywhere(value: &Value) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(value).unwrap();
    let direct = RunRequest::from_value(value.clone());
    let from_bytes = RunRequest::from_json(&bytes);
    prop_assert_eq!(direct.is_ok(), from_bytes.is_ok());
    for result in [&direct, &from_bytes] {
        match result {
            Err(e) => check_refusal(e)?,
            Ok(r) => {
                for arn in r.scope.named_cas() {
                    check_safe_id(arn)?;
                }
            }
        }
    }
    match RunRequest::from_work_item(&String::from_utf8(bytes).unwrap()) {
        Err(e) => check_refusal(&e)?,
        Ok(r) => {
            let RunScope::AccountRegion { account, region } = &r.scope else {
                return Err(TestCaseError::fail("a work item runs one account-region"));
            };
            let label = account.label();
            prop_assert!(label == "self" || label.len() == 12);
            prop_assert!(is_region(region.as_str()));
        }
    }
    Ok(())
}

#[test]
fn arbitrary_json_never_panics_and_every_refusal_says_what_it_refused() {
    run_property(2000, event_value(), |v| parse_everywhere(&v));
}

fn sample_events() -> Vec<Vec<u8>> {
    let mut samples: Vec<Vec<u8>> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/events"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
    samples.extend(CORPUS.iter().map(|(n, _)| corpus_bytes(n)));
    samples
}

#[test]
fn arbitrary_bytes_never_panic_and_every_refusal_says_what_it_refused() {
    let samples = sample_events();
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6);
    let mutated = (prop::sample::select(samples), edits).prop_map(|(mut bytes, edits)| {
        for (at, byte) in edits {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
        }
        bytes
    });
    let bytes = prop_oneof![1 => prop::collection::vec(any::<u8>(), 0..256), 3 => mutated];
    run_property(2000, bytes, |bytes| {
        match RunRequest::from_json(&bytes) {
            Err(e) => check_refusal(&e)?,
            Ok(r) => {
                for arn in r.scope.named_cas() {
                    check_safe_id(arn)?;
                }
            }
        }
        if let Err(e) = RunRequest::from_work_item(&String::from_utf8_lossy(&bytes)) {
            check_refusal(&e)?;
        }
        Ok(())
    });
}

#[test]
fn any_valid_manual_request_parses_and_keeps_its_arns_in_order() {
    let request = (
        prop::collection::vec(valid_arn(), 1..=50),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec![
            ReportFormat::Json,
            ReportFormat::Csv,
        ])),
        any::<bool>(),
    );
    run_property(500, request, |(arns, dry_run, format, repeat_first)| {
        let mut listed = arns.clone();
        if repeat_first {
            listed.push(arns[0].clone());
        }
        let mut event = json!({ "certificateAuthorityArns": listed });
        if let Some(d) = dry_run {
            event["dryRun"] = json!(d);
        }
        if let Some(f) = format {
            event["format"] = json!(f.as_str());
        }
        let r = RunRequest::from_json(event.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{event}: {e}")))?;
        prop_assert_eq!(&r.trigger, &Trigger::Manual);
        prop_assert_eq!(r.dry_run, dry_run.unwrap_or(false));
        prop_assert_eq!(r.format, format);
        let mut unique: Vec<&String> = Vec::new();
        for a in &arns {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        let parsed = r.scope.named_cas();
        let back: Vec<&str> = parsed.iter().map(CaArn::as_str).collect();
        prop_assert_eq!(back, unique.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        for (arn, text) in parsed.iter().zip(unique) {
            let parts: Vec<&str> = text.split(':').collect();
            prop_assert_eq!(arn.region(), parts[3]);
            prop_assert_eq!(arn.account(), parts[4]);
            prop_assert_eq!(
                arn.id(),
                parts[5].trim_start_matches("certificate-authority/")
            );
            prop_assert_eq!(arn.to_string(), text.clone());
            check_safe_id(arn)?;
        }
        Ok(())
    });
}

/// The shape `CaArn::parse` must accept, written independently of it (region names are
/// `is_region`'s, tested on their own above).
fn shaped_like_a_ca_arn(s: &str) -> bool {
    let shape = || -> Option<bool> {
        let rest = s.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        let rest = rest.strip_prefix("acm-pca:")?;
        let (region, rest) = rest.split_once(':')?;
        let (account, rest) = rest.split_once(':')?;
        let id = rest.strip_prefix("certificate-authority/")?;
        Some(
            PARTITIONS.contains(&partition)
                && is_region(region)
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && id.len() == 36
                && id.char_indices().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => c == '-',
                    _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
                }),
        )
    };
    s.len() <= 200 && shape().unwrap_or(false)
}

const MUTANTS: [char; 22] = [
    '/', '.', ' ', '\t', '\n', '\0', '\u{7f}', ':', '-', 'A', 'a', 'f', 'g', '0', '9', '+', 'é',
    '\u{202e}', '%', '*', '\\', '~',
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, char),
    Delete(prop::sample::Index),
    Replace(prop::sample::Index, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let c = prop_oneof![3 => prop::sample::select(MUTANTS.to_vec()), 1 => any::<char>()];
    prop_oneof![
        (any::<prop::sample::Index>(), c.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), c).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn mutated_arn() -> impl Strategy<Value = String> {
    (valid_arn(), prop::collection::vec(edit(), 0..4)).prop_map(|(arn, edits)| {
        let mut chars: Vec<char> = arn.chars().collect();
        for e in edits {
            match e {
                Edit::Insert(i, c) => chars.insert(i.index(chars.len() + 1), c),
                Edit::Delete(i) if !chars.is_empty() => {
                    chars.remove(i.index(chars.len()));
                }
                Edit::Replace(i, c) if !chars.is_empty() => {
                    let at = i.index(chars.len());
                    chars[at] = c;
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    })
}

#[test]
fn only_ca_shaped_arns_parse_and_their_ids_are_safe_s3_prefixes() {
    let candidates = prop_oneof![
        4 => mutated_arn(),
        2 => "arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-mars|):(acm-pca|acm|s3|):[a-z0-9+-]{0,16}:[0-9]{11,13}:certificate-authority/[0-9a-fA-F./ -]{34,38}",
        1 => "\\PC{0,220}",
        1 => ".{0,80}",
    ];
    run_property(3000, candidates, |text| {
        let parsed = CaArn::parse(&text);
        prop_assert_eq!(
            parsed.is_ok(),
            shaped_like_a_ca_arn(&text),
            "{:?}: {:?}",
            text,
            parsed
        );
        match parsed {
            Ok(arn) => {
                prop_assert_eq!(arn.as_str(), text.as_str());
                let region_account = format!(":{}:{}:", arn.region(), arn.account());
                prop_assert!(text.contains(&region_account));
                prop_assert!(is_region(arn.region()));
                check_safe_id(&arn)?;
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.contains("is not a certificate authority ARN: "),
                    "{}",
                    message
                );
                prop_assert!(message.chars().count() < 400, "{}", message);
            }
        }
        Ok(())
    });
}
