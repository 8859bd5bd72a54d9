//! Every corpus file is refused where it enters, naming its problem; and the gaps the corpus
//! found (now closed).

use std::collections::HashMap;

use pca_audit_scheduler::config::Settings;
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::ids::is_region;
use pca_audit_scheduler::domain::request::RunRequest;
use pca_audit_scheduler::entry::RequestError;
use serde_json::json;

use super::properties::config;
use super::{CA, CORPUS, assert_says, corpus_bytes, corpus_path, too_many_arns};

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
