//! Bad input: malformed events, work items and settings are refused where they enter, with a
//! message naming the problem; a refused event touches nothing in AWS; the event parser
//! survives arbitrary input; ARNs are safe S3 prefixes; the logs carry no secrets.
//!
//! The malformed inputs live in `tests/corpus/` (one file each, so a person can replay one:
//! `cargo lambda invoke --data-file tests/corpus/events/dry-run-yes.json`); what each refusal
//! must say is in `CORPUS` below. The tests, by what they check: `corpus` (each
//! file refused, naming its problem), `handler` (a refused event loses nothing, through the
//! Lambda handler), `logs` (no secrets in them), `properties` (the parser on arbitrary input).

mod corpus;
mod handler;
mod logs;
mod properties;

use pca_audit_scheduler::entry::events::MAX_REQUESTED_ARNS;
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

fn too_many_arns() -> Value {
    let arns: Vec<String> = (0..=MAX_REQUESTED_ARNS)
        .map(|i| format!("arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/{:08x}-2222-3333-4444-555555555555", i))
        .collect();
    json!({ "certificateAuthorityArns": arns })
}

/// That `message` says each of `says`.
fn assert_says(what: &str, message: &str, says: &[&str]) {
    for s in says {
        assert!(message.contains(s), "{what}: `{message}` should say `{s}`");
    }
}
