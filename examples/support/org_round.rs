//! What `bench_org.rs` measures and how it turns it into BENCHMARKS.md's "Organisation round":
//! the SQS records the event source would hand the function, the function's environment, the
//! ledger as the round left it, and the round's figures with their monthly price.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use crate::support::World;

/// One invocation of the event source mapping, as a consumer saw it.
pub struct Invocation {
    pub started: Instant,
    pub answered: Instant,
    pub records: usize,
    pub failed: Vec<String>,
}

/// An SQS message as Lambda's event source puts it in the event (`Records[]`).
pub fn record(m: &aws_sdk_sqs::types::Message, queue_arn: &str) -> Value {
    let attributes: HashMap<String, String> = (m.attributes().cloned().unwrap_or_default())
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .collect();
    json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
           "md5OfBody": m.md5_of_body(), "attributes": attributes, "messageAttributes": {},
           "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1"})
}

/// The function's environment in Lambda, pointed at the local stack: the whole organisation
/// in `regions`, the fan-out queue at its default threshold.
pub fn function_env(world: &World, regions: &[&str], queue: &str) -> Vec<(String, String)> {
    let mut env = world.function_env(&[
        ("AUDIT_ACCOUNTS", "ORGANIZATION"),
        ("AUDIT_REGIONS", &regions.join(",")),
        ("FANOUT_QUEUE_URL", queue),
    ]);
    for k in [
        "AWS_ENDPOINT_URL_STS",
        "AWS_ENDPOINT_URL_ORGANIZATIONS",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_IAM",
    ] {
        env.push((k.into(), std::env::var(k).unwrap_or_else(|_| panic!("{k}"))));
    }
    env
}

/// The ledger after the round: each window item's report status, and the mean size of the
/// items a CA's writes touch (DynamoDB's rule: attribute names plus values, in bytes).
#[derive(Default)]
pub struct Ledger {
    pub statuses: BTreeMap<String, usize>,
    pub sizes: BTreeMap<String, (usize, usize)>,
}

fn size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len() / 2 + 1,
                    _ => 1,
                }
        })
        .sum()
}

impl Ledger {
    pub async fn read(world: &World) -> Self {
        let mut ledger = Ledger::default();
        let mut pages = (world.dynamodb.scan().table_name(&world.table))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.expect("scan");
            let record = item.get("record").and_then(|v| v.as_s().ok()).cloned();
            let kind = record.unwrap_or_default();
            let kind = kind.split('#').next().unwrap_or_default().to_owned();
            if kind == "window" {
                let status = (item.get("last_report_status").and_then(|v| v.as_s().ok()))
                    .map_or("none".to_owned(), Clone::clone);
                *ledger.statuses.entry(status).or_default() += 1;
            }
            let e = ledger.sizes.entry(kind).or_default();
            e.0 += 1;
            e.1 += size(&item);
        }
        ledger
    }

    fn mean_size(&self, kind: &str) -> usize {
        self.sizes
            .get(kind)
            .map_or(0, |(n, total)| total / (*n).max(1))
    }
}

/// Bytes the function wrote to its logs (what Lambda sends to CloudWatch Logs), and the
/// metric names of its Embedded Metric Format lines.
pub fn log_bytes(dir: &Path) -> (u64, Vec<String>) {
    let mut bytes = 0;
    let mut metrics = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("logs") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        bytes += text.len() as u64;
        for line in text.lines().filter(|l| l.contains("\"_aws\"")) {
            let doc: Value = serde_json::from_str(line).unwrap_or_default();
            for set in doc["_aws"]["CloudWatchMetrics"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for m in set["Metrics"].as_array().into_iter().flatten() {
                    metrics.insert(m["Name"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    (bytes, metrics.into_iter().collect())
}

/// Replaces the figures between the markers of its section in `path`.
pub fn write_section(path: &str, text: &str) {
    let (begin, end) = (
        "<!-- figures of scripts/bench-org: begin -->",
        "<!-- figures of scripts/bench-org: end -->",
    );
    let doc = std::fs::read_to_string(path).expect("BENCHMARKS.md");
    let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
        panic!("{path} has no markers {begin} ... {end}");
    };
    let out = format!("{}{begin}\n{text}{}", &doc[..b], &doc[e..]);
    std::fs::write(path, out).expect("write BENCHMARKS.md");
}

pub struct Figures {
    pub accounts: usize,
    pub regions: usize,
    pub cas_per_region: usize,
    pub consumers: usize,
    pub batch: usize,
    pub seeded: Vec<String>,
    pub creates: HashMap<String, HashMap<String, usize>>,
    pub round_answer: Value,
    pub round_took: Duration,
    pub round_time: Duration,
    pub invocations: Vec<Invocation>,
    pub calls: Value,
    pub ledger: Ledger,
    pub log_bytes: (u64, Vec<String>),
}

#[path = "org_price.rs"]
mod price;

impl Figures {
    fn calls_of(&self, service: &str, operation: &str) -> u64 {
        (self.calls["requests"].as_array().into_iter().flatten())
            .filter(|r| {
                r["service"] == service && (operation.is_empty() || r["operation"] == operation)
            })
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum()
    }

    /// Every seeded CA's accepted creates: (requested once, twice or more, never).
    fn once(&self) -> (usize, usize, usize) {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for per_ca in self.creates.values() {
            for (arn, n) in per_ca {
                counts.insert(arn, *n);
            }
        }
        let seeded = self
            .seeded
            .iter()
            .map(|a| counts.get(a.as_str()).copied().unwrap_or(0));
        seeded.fold((0, 0, 0), |(one, more, none), n| match n {
            0 => (one, more, none + 1),
            1 => (one + 1, more, none),
            _ => (one, more + 1, none),
        })
    }

    pub fn markdown(&self, cpu: &str) -> String {
        let cas = self.seeded.len();
        let items = self.accounts * self.regions;
        let bound = (cas as f64) / self.consumers as f64;
        let time = self.round_time.as_secs_f64();
        let (once, twice, never) = self.once();
        let failed: usize = self.invocations.iter().map(|i| i.failed.len()).sum();
        let durations: Vec<f64> = (self.invocations.iter())
            .map(|i| (i.answered - i.started).as_secs_f64())
            .collect();
        let busy: f64 = durations.iter().sum();
        let max = durations.iter().copied().fold(0.0, f64::max);
        let records: usize = self.invocations.iter().map(|i| i.records).sum();
        let mut t = String::new();
        let machine = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = machine
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let before = std::env::var("BENCH_ORG_LOAD_BEFORE").unwrap_or_default();
        let date = std::env::var("BENCH_ORG_DATE").unwrap_or_default();
        let _ = writeln!(
            t,
            "Figures of one run of `scripts/bench-org` on {date}, {} accounts × {} regions × {} \
             CAs = {items} account-regions, {cas} CAs; {} consumers, batches of up to {}; the \
             function {cpu}; load average {before} before the round, {load} at its end (2 cores \
             shared with other builds).\n",
            self.accounts, self.regions, self.cas_per_region, self.consumers, self.batch,
        );
        let _ = writeln!(t, "| Measured | Value |\n|---|---|");
        let _ = writeln!(
            t,
            "| Round time (scheduled invocation to the last work item's answer) | {time:.1} s |\n\
             | Creates' bound (creates × 1 s / consumers) | {bound:.0} s; ratio {:.2} × |\n\
             | Scheduled invocation (list the organisation, send {items} work items: sent {}, not sent {}) | {:.1} s |\n\
             | CAs requested once / twice or more / never | {once} / {twice} / {never} |\n\
             | Window items by last report status | {:?} |\n\
             | Consumer invocations; records; batch item failures | {} ; {records} ; {failed} |\n\
             | Invocation time: mean, longest; summed (billed) | {:.2} s, {max:.2} s; {busy:.0} s |",
            time / bound,
            self.round_answer["fannedOut"]
                .as_array()
                .map_or(0, Vec::len),
            self.round_answer["regionErrors"]
                .as_array()
                .map_or(0, Vec::len),
            self.round_took.as_secs_f64(),
            self.ledger.statuses,
            self.invocations.len(),
            busy / durations.len().max(1) as f64,
        );
        let _ = writeln!(t, "\n{}", self.per_ca());
        let _ = writeln!(t, "{}", price::monthly(self));
        t
    }

    /// Calls per CA by service and operation, as the stack counted them.
    fn per_ca(&self) -> String {
        let cas = self.seeded.len() as f64;
        let mut lines = Vec::new();
        for r in self.calls["requests"].as_array().into_iter().flatten() {
            let n = r["count"].as_u64().unwrap_or(0);
            lines.push(format!(
                "{} {} {n} ({:.2}/CA)",
                r["service"].as_str().unwrap_or_default(),
                r["operation"].as_str().unwrap_or_default(),
                n as f64 / cas
            ));
        }
        lines.sort();
        let throttled: Vec<String> = (self.calls["throttled"].as_array().into_iter().flatten())
            .map(|r| {
                format!(
                    "{} {}",
                    r["operation"].as_str().unwrap_or_default(),
                    r["count"]
                )
            })
            .collect();
        format!(
            "Calls counted at the stack during the round: {}. Throttled by the emulator's quotas \
             (each retried in its next slot): {}.",
            lines.join("; "),
            if throttled.is_empty() {
                "none".to_owned()
            } else {
                throttled.join(", ")
            }
        )
    }
}
