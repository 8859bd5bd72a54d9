//! Alerts against the local stack: a rule on the local bus delivers the run's events to a
//! local queue, as a consumer's rule would in AWS; the overdue count and its metric.

use std::time::Duration;

use pca_audit_scheduler::services::Services;
use serde_json::{Value, json};

use crate::support::World;
use crate::support::lambda::{clock_at, invocation, scheduled};
use crate::support::stack::unique_suffix;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTES_31: Duration = Duration::from_secs(31 * 60);

/// An event bus of the test's own, and a queue that a rule on it fills with every event of
/// the function (pattern `{"source": ["pca-audit-scheduler"]}`).
struct Subscriber {
    bus: String,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

impl Subscriber {
    async fn new(world: &World) -> Self {
        let events = aws_sdk_eventbridge::Client::new(&world.sdk);
        let sqs = aws_sdk_sqs::Client::new(&world.sdk);
        let suffix = unique_suffix();
        let bus = format!("alerts-{suffix}");
        events
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .expect("bus");
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("alerts-{suffix}"))
            .send()
            .await
            .expect("queue")
            .queue_url
            .unwrap();
        let queue_arn = format!("arn:aws:sqs:us-east-1:{}:alerts-{suffix}", world.account_id);
        let pattern = json!({"source": ["pca-audit-scheduler"]}).to_string();
        (events.put_rule().name("alerts").event_bus_name(&bus))
            .event_pattern(pattern)
            .send()
            .await
            .expect("rule");
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(queue_arn)
            .build()
            .unwrap();
        (events.put_targets().rule("alerts").event_bus_name(&bus))
            .targets(target)
            .send()
            .await
            .expect("target");
        Self {
            bus,
            queue_url,
            sqs,
        }
    }

    /// Every event the queue holds now, taken off it.
    async fn events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let out = (self.sqs.receive_message().queue_url(&self.queue_url))
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            for m in messages {
                all.push(serde_json::from_str(m.body().unwrap()).unwrap());
                (self.sqs.delete_message().queue_url(&self.queue_url))
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
}

fn of_type<'a>(events: &'a [Value], detail_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["detail-type"] == detail_type)
        .collect()
}

/// A world whose emulator makes reports at once and allows a CA's next one at once (the
/// function's own ledger still keeps the service's 30 minutes), with one CA.
async fn world_with_a_ca() -> (World, String) {
    let world = World::new().await;
    world.configure_emulator(
        json!({"create_rps": 1000, "report_delay_seconds": 0, "window_seconds": 0}),
    );
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
    (world, arn)
}

/// The function's services sending events to `bus`, on a clock `offset` ahead.
fn services(world: &World, bus: &str, offset: Duration) -> Services {
    let settings = world.settings_with(&[("EVENT_BUS", bus)]);
    Services::new(settings, &world.sdk, clock_at(offset)).with_create_period(Duration::ZERO)
}

async fn run_at(world: &World, bus: &str, offset: Duration, run_id: &str) -> Value {
    let services = services(world, bus, offset);
    let mut inv = invocation(run_id, Duration::from_secs(600));
    inv.home_account = Some(world.account_id.clone());
    let summary = pca_audit_scheduler::run::run(&services, &scheduled(), &inv).await;
    json!({
        "counts": summary.counts,
        "metrics": summary.metrics_document("fn"),
    })
}

#[tokio::test]
async fn a_failed_report_reaches_a_rule_on_the_bus_and_its_next_success_closes_it() {
    let (world, arn) = world_with_a_ca().await;
    let subscriber = Subscriber::new(&world).await;
    // A bucket the service may not write to: the create is accepted, the report FAILS.
    world.delete_bucket_policy().await;
    let first = run_at(&world, &subscriber.bus, Duration::ZERO, "failing").await;
    assert_eq!(first["counts"]["failed"], 1, "{first}");

    let events = subscriber.events().await;
    let failed = of_type(&events, "Certificate Authority Audit Failed");
    assert_eq!(failed.len(), 1, "{events:#?}");
    let e = failed[0];
    assert_eq!(e["source"], "pca-audit-scheduler");
    assert_eq!(e["resources"], json!([arn]));
    let d = &e["detail"];
    assert_eq!(d["certificateAuthorityArn"], arn.as_str());
    assert_eq!(d["accountId"], world.account_id.as_str());
    assert_eq!(d["region"], "us-east-1");
    assert_eq!(d["errorCode"], "AuditReportFailed");
    assert_eq!(d["runId"], "failing");
    assert!(
        d["reason"].as_str().unwrap().contains("bucket policy"),
        "{d}"
    );
    assert!(d["reportId"].is_string(), "{d}");
    assert_eq!(d["lastSuccess"], Value::Null, "never audited: {d}");
    // Never audited at all: overdue from its first run, as coverage calls it neverAudited.
    assert_eq!(
        of_type(&events, "Certificate Authority Audit Overdue").len(),
        1
    );
    assert_eq!(first["counts"]["eventsSent"], 2, "{first}");

    // The bucket mended: the next run (after the service's 30 minutes) audits the CA again.
    world.allow_reports_from(&[&world.account_id]).await;
    let second = run_at(&world, &subscriber.bus, MINUTES_31, "mended").await;
    assert_eq!(second["counts"]["reportsSucceeded"], 1, "{second}");
    let events = subscriber.events().await;
    let again = of_type(&events, "Certificate Authority Audited Again");
    assert_eq!(again.len(), 1, "{events:#?}");
    let d = &again[0]["detail"];
    assert_eq!(d["certificateAuthorityArn"], arn.as_str());
    assert_eq!(d["runId"], "mended");
    assert_eq!(d["lastSuccess"]["reportId"], d["reportId"]);
    assert!(
        d["lastSuccess"]["s3Key"]
            .as_str()
            .unwrap()
            .starts_with("audit-report/")
    );
    assert!(d["closes"]["kind"].is_string(), "{d}");
    assert_eq!(events.len(), 1, "nothing else: {events:#?}");

    // Announced once: a later SUCCESS is not "again".
    let third = run_at(&world, &subscriber.bus, MINUTES_31 * 2, "later").await;
    assert_eq!(third["counts"]["reportsSucceeded"], 1, "{third}");
    assert_eq!(subscriber.events().await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_ca_past_the_threshold_is_counted_overdue_and_announced_once() {
    let (world, arn) = world_with_a_ca().await;
    let subscriber = Subscriber::new(&world).await;
    let bus = subscriber.bus.clone();
    let first = run_at(&world, &bus, Duration::ZERO, "audited").await;
    assert_eq!(first["counts"]["overdue"], 0, "{first}");
    assert_eq!(first["metrics"]["OverdueCertificateAuthorities"], 0);
    assert_eq!(
        subscriber.events().await,
        Vec::<Value>::new(),
        "a SUCCESS: nothing to say"
    );

    // Three days on, every report fails: past the threshold (30 minutes + 60 of slack).
    world.delete_bucket_policy().await;
    let days = 72 * HOUR;
    let late = run_at(&world, &bus, days, "late").await;
    assert_eq!(late["counts"]["overdue"], 1, "{late}");
    assert_eq!(late["metrics"]["OverdueCertificateAuthorities"], 1);
    let events = subscriber.events().await;
    let overdue = of_type(&events, "Certificate Authority Audit Overdue");
    assert_eq!(overdue.len(), 1, "{events:#?}");
    let d = &overdue[0]["detail"];
    assert_eq!(d["certificateAuthorityArn"], arn.as_str());
    assert_eq!(d["thresholdMinutes"], 90);
    assert!(d["lastSuccess"]["requestedAt"].is_string(), "{d}");
    assert!(d["lastSuccess"]["reportId"].is_string(), "{d}");

    // Still overdue next run, its last report FAILED (the SUCCESS read from the history):
    // counted again, but not announced again.
    let again = run_at(&world, &bus, days + MINUTES_31, "still-late").await;
    assert_eq!(again["counts"]["overdue"], 1, "{again}");
    let events = subscriber.events().await;
    assert_eq!(
        of_type(&events, "Certificate Authority Audit Overdue").len(),
        0
    );
    assert_eq!(
        of_type(&events, "Certificate Authority Audit Failed").len(),
        1
    );
}

#[tokio::test]
async fn events_off_send_nothing_and_a_missing_bus_is_counted_not_failed() {
    let (world, _arn) = world_with_a_ca().await;
    world.delete_bucket_policy().await;
    let off = run_at(&world, "", Duration::ZERO, "off").await;
    assert_eq!(off["counts"]["eventsSent"], 0, "{off}");
    assert_eq!(off["counts"]["eventsNotSent"], 0, "{off}");

    let missing = run_at(&world, "no-such-bus", MINUTES_31, "missing").await;
    assert_eq!(
        missing["counts"]["failed"], 1,
        "the CA's failure, not the events': {missing}"
    );
    assert_eq!(missing["counts"]["eventsSent"], 0, "{missing}");
    assert!(
        missing["counts"]["eventsNotSent"].as_u64() >= Some(1),
        "{missing}"
    );
    assert_eq!(
        missing["metrics"]["EventsNotSent"],
        missing["counts"]["eventsNotSent"]
    );
}

/// A run with events off and Security Hub findings `on` or off.
async fn run_with_findings(world: &World, on: bool, offset: Duration, run_id: &str) -> Value {
    let on = if on { "true" } else { "false" };
    let settings = world.settings_with(&[("EVENT_BUS", ""), ("SECURITY_HUB_FINDINGS", on)]);
    let services =
        Services::new(settings, &world.sdk, clock_at(offset)).with_create_period(Duration::ZERO);
    let mut inv = invocation(run_id, Duration::from_secs(600));
    inv.home_account = Some(world.account_id.clone());
    let summary = pca_audit_scheduler::run::run(&services, &scheduled(), &inv).await;
    json!({"counts": summary.counts, "metrics": summary.metrics_document("fn")})
}

/// The findings Security Hub holds about the CA, as a user filters them (`ResourceId`).
async fn findings_about(hub: &aws_sdk_securityhub::Client, arn: &str) -> Vec<Value> {
    use aws_sdk_securityhub::types::{
        AwsSecurityFindingFilters, StringFilter, StringFilterComparison,
    };
    let resource = StringFilter::builder()
        .value(arn)
        .comparison(StringFilterComparison::Equals)
        .build();
    let filters = AwsSecurityFindingFilters::builder()
        .resource_id(resource)
        .build();
    let out = (hub.get_findings().filters(filters).send().await).expect("findings");
    (out.findings().iter())
        .map(|f| {
            let r = &f.resources()[0];
            json!({
                "id": f.id(),
                "awsAccountId": f.aws_account_id(),
                "productArn": f.product_arn(),
                "recordState": f.record_state().map(|s| s.as_str()),
                "compliance": f.compliance().and_then(|c| c.status()).map(|s| s.as_str()),
                "workflow": f.workflow().and_then(|w| w.status()).map(|s| s.as_str()),
                "resourceId": r.id(),
                "resourceType": r.r#type(),
                "remediation": f.remediation().and_then(|r| r.recommendation()).and_then(|r| r.text()),
                "title": f.title(),
            })
        })
        .collect()
}

#[tokio::test]
async fn with_findings_on_a_failed_ca_is_one_active_finding_until_its_next_success_resolves_it() {
    let (world, arn) = world_with_a_ca().await;
    let hub = aws_sdk_securityhub::Client::new(&world.sdk);
    hub.enable_security_hub().send().await.expect("enable");
    world.delete_bucket_policy().await;
    let first = run_with_findings(&world, true, Duration::ZERO, "failing").await;
    assert_eq!(first["counts"]["failed"], 1, "{first}");
    assert_eq!(first["counts"]["findingsImported"], 1, "{first}");
    assert_eq!(first["counts"]["findingsNotImported"], 0, "{first}");

    let found = findings_about(&hub, &arn).await;
    assert_eq!(found.len(), 1, "one finding for the CA: {found:#?}");
    let f = &found[0];
    assert_eq!(f["id"], format!("pca-audit-scheduler/{arn}"));
    assert_eq!(f["awsAccountId"], world.account_id.as_str());
    let product = format!(
        "arn:aws:securityhub:us-east-1:{0}:product/{0}/default",
        world.account_id
    );
    assert_eq!(f["productArn"], product);
    assert_eq!(f["resourceId"], arn.as_str());
    assert_eq!(f["resourceType"], "Other");
    assert_eq!(
        (&f["recordState"], &f["compliance"], &f["workflow"]),
        (&json!("ACTIVE"), &json!("FAILED"), &json!("NEW"))
    );
    assert!(
        f["remediation"]
            .as_str()
            .unwrap()
            .contains("bucket's policy"),
        "{f}"
    );
    assert!(f["title"].as_str().unwrap().contains("failed"), "{f}");

    // The bucket mended: the next run audits the CA again, and its finding is resolved.
    world.allow_reports_from(&[&world.account_id]).await;
    let second = run_with_findings(&world, true, MINUTES_31, "mended").await;
    assert_eq!(second["counts"]["reportsSucceeded"], 1, "{second}");
    assert_eq!(second["counts"]["findingsImported"], 1, "{second}");
    let found = findings_about(&hub, &arn).await;
    assert_eq!(found.len(), 1, "the same finding: {found:#?}");
    let f = &found[0];
    assert_eq!(
        (&f["recordState"], &f["compliance"], &f["workflow"]),
        (&json!("ARCHIVED"), &json!("PASSED"), &json!("RESOLVED"))
    );
}

#[tokio::test]
async fn findings_off_import_nothing_and_a_hub_not_enabled_is_counted_not_failed() {
    let (world, arn) = world_with_a_ca().await;
    world.delete_bucket_policy().await;
    // Security Hub not enabled in the account: the findings are refused, the run goes on.
    let refused = run_with_findings(&world, true, Duration::ZERO, "no-hub").await;
    assert_eq!(refused["counts"]["failed"], 1, "{refused}");
    assert_eq!(refused["counts"]["findingsImported"], 0, "{refused}");
    assert_eq!(refused["counts"]["findingsNotImported"], 1, "{refused}");
    assert_eq!(refused["metrics"]["FindingsNotImported"], 1, "{refused}");

    let hub = aws_sdk_securityhub::Client::new(&world.sdk);
    hub.enable_security_hub().send().await.expect("enable");
    let off = run_with_findings(&world, false, MINUTES_31, "off").await;
    assert_eq!(off["counts"]["failed"], 1, "{off}");
    assert_eq!(off["counts"]["findingsImported"], 0, "{off}");
    assert_eq!(off["counts"]["findingsNotImported"], 0, "{off}");
    assert_eq!(findings_about(&hub, &arn).await, Vec::<Value>::new());
}
