//! Property tests. `PROPTEST_CASES` raises the number of cases (the long reliability run).

use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::ids::is_region;
use pca_audit_scheduler::domain::report::ReportFormat;
use pca_audit_scheduler::domain::request::{RunRequest, RunScope, Trigger};
use pca_audit_scheduler::entry::RequestError;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value, json};

use super::{CORPUS, corpus_bytes};

/// `cases` by default; with `PROPTEST_CASES`, that many for a test whose default is 2000, and
/// the same share for the others (a case of 50 ARNs costs more than one JSON value).
pub(super) fn config(cases: u32) -> ProptestConfig {
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

/// The partitions of the AWS SDK's endpoint rules (`partitions.json`: aws, aws-cn, aws-us-gov,
/// aws-iso, aws-iso-b, aws-iso-e, aws-iso-f, aws-eusc), written out here rather than taken
/// from the crate, so the oracle does not agree with the code by construction. The list had
/// five until a run of 100,000 cases drew `aws-iso-f` (accepted by the crate since stop 17).
const PARTITIONS: [&str; 8] = [
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

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
            .map(|e| e.unwrap().path())
            // events/alerts/ holds the events the function sends, not ones it takes.
            .filter(|p| p.is_file())
            .map(|p| std::fs::read(p).unwrap())
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
