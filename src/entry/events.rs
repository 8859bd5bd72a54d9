//! The events the function accepts, and the run each one asks for.
//!
//! Three shapes arrive: an EventBridge rule's "Scheduled Event" envelope, EventBridge
//! Scheduler's (its envelope when the schedule has no Input, or the Input our template sets),
//! and a request written by a person. A first look at the JSON picks the shape, then each is
//! read strictly: `aws_lambda_events`' `EventBridgeEvent` alone cannot be the handler's type,
//! because a rule with custom Input has no `detail-type` (aws-lambda-rust-runtime issue 1064).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::domain::arn::{CaArn, shorten};
use crate::domain::ids::{Account, Region};
use crate::domain::report::ReportFormat;
use crate::domain::request::{RunRequest, RunScope, Trigger, WorkItem};
use crate::entry::error::RequestError;

/// More ARNs than one invocation could request at one per second in 15 minutes is a mistake.
pub const MAX_REQUESTED_ARNS: usize = 1000;

/// A person's request: `{"certificateAuthorityArns": [...], "dryRun": true, "format": "CSV"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ManualRequest {
    #[serde(default)]
    certificate_authority_arns: Option<Vec<String>>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    format: Option<ReportFormat>,
}

/// The Input our template gives EventBridge Scheduler, with its context attributes filled in.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SchedulerInput {
    source: String,
    #[serde(default)]
    execution_id: Option<String>,
    #[serde(default)]
    scheduled_time: Option<String>,
    #[serde(default)]
    schedule_arn: Option<String>,
}

impl RunRequest {
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        Self::from_value(serde_json::from_slice(bytes).map_err(RequestError::NotJson)?)
    }

    pub fn from_value(event: Value) -> Result<Self, RequestError> {
        let Value::Object(fields) = &event else {
            return Err(RequestError::NotAnObject(json_kind(&event)));
        };
        if fields.contains_key("detail-type") {
            let extra: Vec<String> = fields
                .keys()
                .filter(|k| !ENVELOPE_FIELDS.contains(&k.as_str()))
                .take(5)
                .map(|k| format!("`{}`", shorten(k)))
                .collect();
            return Self::from_envelope(event, &extra);
        }
        if fields.contains_key("source") {
            return Self::from_scheduler_input(event);
        }
        Self::from_manual(event)
    }

    /// An EventBridge rule's Scheduled Event, or Scheduler's envelope; `extra` are the fields
    /// an envelope does not have.
    fn from_envelope(event: Value, extra: &[String]) -> Result<Self, RequestError> {
        // `EventBridgeEvent` ignores fields it does not know: a Scheduled Event with a
        // manual request's fields in it would otherwise become a real run of every CA.
        if !extra.is_empty() {
            return Err(RequestError::Malformed {
                shape: "EventBridge event",
                message: format!(
                    "unknown field {}: a Scheduled Event carries no request of its own; \
                     send a manual request instead",
                    extra.join(", ")
                ),
            });
        }
        let envelope: EventBridgeEvent<Value> = read("EventBridge event", event)?;
        if !matches!(envelope.source.as_str(), "aws.events" | "aws.scheduler")
            || envelope.detail_type != "Scheduled Event"
        {
            return Err(RequestError::UnsupportedEvent {
                event_source: shorten(&envelope.source),
                detail_type: shorten(&envelope.detail_type),
            });
        }
        Ok(Self::scheduled(
            envelope.source,
            envelope.id,
            envelope.time.map(|t| t.to_rfc3339()),
        ))
    }

    /// The Input our template gives an EventBridge Scheduler schedule.
    fn from_scheduler_input(event: Value) -> Result<Self, RequestError> {
        let input: SchedulerInput = read("EventBridge Scheduler input", event)?;
        if input.source != "aws.scheduler" {
            return Err(RequestError::UnsupportedEvent {
                event_source: shorten(&input.source),
                detail_type: String::new(),
            });
        }
        Ok(Self::scheduled(
            input.source,
            input.execution_id.or(input.schedule_arn),
            input.scheduled_time,
        ))
    }

    /// A person's request.
    fn from_manual(event: Value) -> Result<Self, RequestError> {
        let manual: ManualRequest = read("manual request", event)?;
        let scope = match manual.certificate_authority_arns {
            None => RunScope::Every,
            Some(arns) if arns.is_empty() => return Err(RequestError::NoArns),
            Some(arns) if arns.len() > MAX_REQUESTED_ARNS => {
                return Err(RequestError::TooManyArns(arns.len()));
            }
            Some(arns) => {
                let mut parsed: Vec<CaArn> = Vec::with_capacity(arns.len());
                for (index, text) in arns.iter().enumerate() {
                    let arn = CaArn::parse(text)
                        .map_err(|source| RequestError::InvalidArn { index, source })?;
                    if !parsed.contains(&arn) {
                        parsed.push(arn);
                    }
                }
                RunScope::These(parsed)
            }
        };
        Ok(Self {
            trigger: Trigger::Manual,
            scope,
            dry_run: manual.dry_run,
            format: manual.format,
        })
    }

    /// The run one fan-out message asks for.
    pub fn from_work_item(body: &str) -> Result<Self, RequestError> {
        let item: WorkItem =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(body))
                .map_err(|e| RequestError::InvalidWorkItem(explain(&e)))?;
        // The function's own account, named by its id, is told apart when the run starts.
        let account = Account::parse_label(&item.account_id, None)
            .map_err(|e| RequestError::InvalidWorkItem(format!("accountId {e}")))?;
        let region = Region::parse(&item.region)
            .map_err(|e| RequestError::InvalidWorkItem(format!("region {e}")))?;
        Ok(Self {
            trigger: Trigger::FanOut {
                parent_run_id: item.parent_run_id,
            },
            scope: RunScope::AccountRegion { account, region },
            dry_run: item.dry_run,
            format: item.format,
        })
    }

    fn scheduled(source: String, id: Option<String>, time: Option<String>) -> Self {
        Self {
            trigger: Trigger::Schedule { source, id, time },
            scope: RunScope::Every,
            dry_run: false,
            format: None,
        }
    }
}

/// What an event asks for: a run, or the coverage of a period (`coverage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Run(RunRequest),
    Coverage(crate::domain::request::CoverageRequest),
}

impl Request {
    /// A manual request with a `coverage` field asks for coverage; every other event for a run.
    pub fn from_value(event: Value) -> Result<Self, RequestError> {
        if event.get("coverage").is_some() && event.get("detail-type").is_none() {
            return crate::domain::request::CoverageRequest::from_value(event)
                .map(Self::Coverage)
                .map_err(RequestError::InvalidCoverage);
        }
        RunRequest::from_value(event).map(Self::Run)
    }
}

/// The top-level fields of an EventBridge event (a rule's Scheduled Event, or Scheduler's
/// envelope when the schedule has no Input).
const ENVELOPE_FIELDS: [&str; 10] = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
    "replay-name",
];

/// Reads one shape strictly, naming the field at fault.
fn read<T: serde::de::DeserializeOwned>(
    shape: &'static str,
    event: Value,
) -> Result<T, RequestError> {
    serde_path_to_error::deserialize(event).map_err(|e| RequestError::Malformed {
        shape,
        message: explain(&e),
    })
}

/// serde's message with the path to the field it is about, and without the values it
/// quotes: an event can carry anything, a secret in the wrong field included, and the
/// message is logged.
fn explain<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let message = without_values(&e.inner().to_string());
    let path = e.path().to_string();
    if path == "." || message.contains(&format!("`{path}`")) {
        message
    } else {
        format!("`{}`: {message}", shorten(&path))
    }
}

/// Replaces each `string "…"` serde quotes with `a string`, and keeps the message short.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(300));
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let quoted = &rest[at + "string \"".len()..];
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(i, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes.then_some(i)
        });
        rest = end.map_or("", |i| &quoted[i + 1..]);
    }
    out.push_str(rest);
    const MAX: usize = 300;
    if out.chars().count() > MAX {
        out = out.chars().take(MAX).collect::<String>() + "…";
    }
    out
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555";

    fn parse(text: &str) -> Result<RunRequest, RequestError> {
        RunRequest::from_json(text.as_bytes())
    }

    #[test]
    fn eventbridge_rule_envelope_is_a_scheduled_run() {
        let r = parse(
            r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event",
               "source":"aws.events","account":"123456789012","time":"2026-11-25T01:00:00Z",
               "region":"us-east-1","resources":["arn:aws:events:us-east-1:123456789012:rule/audit"],"detail":{}}"#,
        )
        .unwrap();
        assert_eq!(r.scope, RunScope::Every);
        assert!(!r.dry_run);
        assert!(
            matches!(r.trigger, Trigger::Schedule { ref source, .. } if source == "aws.events")
        );
    }

    #[test]
    fn scheduler_envelope_with_string_detail_is_accepted() {
        let r = parse(
            r#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.scheduler",
               "account":"123456789012","time":"2026-11-25T01:00:00Z","region":"us-east-1",
               "resources":["arn:aws:scheduler:us-east-1:123456789012:schedule/default/audit"],"detail":"{}"}"#,
        )
        .unwrap();
        assert!(
            matches!(r.trigger, Trigger::Schedule { ref source, .. } if source == "aws.scheduler")
        );
    }

    #[test]
    fn scheduler_input_carries_its_execution() {
        let r = parse(
            r#"{"source":"aws.scheduler","executionId":"e-1","scheduledTime":"2026-11-25T01:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            r.trigger,
            Trigger::Schedule {
                source: "aws.scheduler".into(),
                id: Some("e-1".into()),
                time: Some("2026-11-25T01:00:00Z".into())
            }
        );
    }

    #[test]
    fn manual_request_reads_every_field() {
        let r = parse(&format!(
            r#"{{"certificateAuthorityArns":["{CA}","{CA}"],"dryRun":true,"format":"CSV"}}"#
        ))
        .unwrap();
        assert_eq!(r.trigger, Trigger::Manual);
        assert!(
            matches!(&r.scope, RunScope::These(arns) if arns.len() == 1),
            "duplicates collapse"
        );
        assert!(r.dry_run);
        assert_eq!(r.format, Some(ReportFormat::Csv));
        assert_eq!(parse("{}").unwrap().scope, RunScope::Every);
    }

    #[test]
    fn refusals_name_the_field_and_never_quote_its_value() {
        let e = parse(r#"{"dryRun":"hunter2"}"#).unwrap_err().to_string();
        assert!(
            e.contains("`dryRun`") && e.contains("expected a boolean"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse(r#"{"source":null}"#).unwrap_err().to_string();
        assert!(e.contains("`source`"), "{e}");
        assert_eq!(
            without_values(r#"invalid value: string "a \"b\" c", expected x"#),
            "invalid value: a string, expected x"
        );
    }

    #[test]
    fn a_scheduled_event_with_a_requests_fields_is_refused() {
        let e = parse(
            r#"{"detail-type":"Scheduled Event","source":"aws.events","detail":{},"dryRun":true}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `dryRun`"), "{e}");
    }

    #[test]
    fn a_work_item_names_one_account_region() {
        let r = RunRequest::from_work_item(
            r#"{"accountId":"111111111111","region":"eu-west-1","parentRunId":"run-1"}"#,
        )
        .unwrap();
        assert_eq!(
            r.scope,
            RunScope::AccountRegion {
                account: Account::parse_label("111111111111", None).unwrap(),
                region: Region::parse("eu-west-1").unwrap()
            }
        );
        assert_eq!(
            r.trigger,
            Trigger::FanOut {
                parent_run_id: "run-1".into()
            }
        );
        for (body, says) in [
            ("{}", "missing field"),
            (
                r#"{"accountId":"1111","region":"eu-west-1","parentRunId":"r"}"#,
                "12-digit",
            ),
            (
                r#"{"accountId":"111111111111","region":"mars-1","parentRunId":"r"}"#,
                "region",
            ),
            (
                r#"{"accountId":"111111111111","region":"eu-west-1","parentRunId":"r","extra":1}"#,
                "unknown field",
            ),
        ] {
            let e = RunRequest::from_work_item(body).unwrap_err().to_string();
            assert!(
                e.contains("invalid work item") && e.contains(says),
                "{body}: {e}"
            );
        }
    }

    #[test]
    fn each_bad_event_is_refused_with_its_reason() {
        let cases = [
            ("not json", "not JSON"),
            ("[1,2]", "an array"),
            (r#"{"certificateAuthorityArns":[]}"#, "is empty"),
            (
                r#"{"certificateAuthorityArns":["arn:aws:s3:::bucket"]}"#,
                "certificateAuthorityArns[0]",
            ),
            (r#"{"dryrun":true}"#, "unknown field `dryrun`"),
            (r#"{"dryRun":"yes"}"#, "invalid type"),
            (r#"{"format":"XML"}"#, "unknown variant `XML`"),
            (
                r#"{"source":"aws.s3","detail-type":"Object Created","detail":{}}"#,
                "unsupported event",
            ),
            (
                r#"{"source":"aws.events","detail":{}}"#,
                "unknown field `detail`",
            ),
            (
                r#"{"source":"aws.scheduler","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"detail-type":"Scheduled Event","detail":{}}"#,
                "missing field `source`",
            ),
        ];
        for (input, reason) in cases {
            let err = parse(input).expect_err(input);
            assert!(
                err.to_string().contains(reason),
                "{input}: `{err}` should say `{reason}`"
            );
        }
    }

    #[test]
    fn too_many_arns_are_refused() {
        let list = vec![format!("\"{CA}\""); MAX_REQUESTED_ARNS + 1].join(",");
        let err = parse(&format!(r#"{{"certificateAuthorityArns":[{list}]}}"#)).unwrap_err();
        assert!(err.to_string().contains("at most 1000"));
    }
}
