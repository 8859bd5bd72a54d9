//! The coverage row of BENCHMARKS.md (run by `scripts/bench-coverage`, never by the tests):
//! 1,000 CAs with a year of daily history in DynamoDB Local, and one coverage request of the
//! year, timed against the invocation's 900 s and with its calls counted at the local stack.
//!
//! Settings: BENCH_OUT (the markdown written), BENCH_SCALE (divides the CA count, to try the
//! bench quickly; its figures are then marked as scaled).

#[path = "support/settings.rs"]
mod settings;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::StreamExt;
use pca_audit_scheduler::aws::ledger::{ReportRecord, report_item};
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::report::{ReportFormat, ReportStatus};
use pca_audit_scheduler::domain::request::CoverageRequest;
use pca_audit_scheduler::domain::time::Timestamp;
use pca_audit_scheduler::evidence::coverage;
use pca_audit_scheduler::services::SystemClock;
use pca_audit_scheduler::{invocation::Invocation, services::Services};
use serde_json::json;
use support::World;

const CAS: usize = 1000;
const DAYS: u64 = 365;
const DAY: u64 = 86_400;
const DEADLINE: Duration = Duration::from_secs(900);
/// BatchWriteItem's limit.
const BATCH: usize = 25;
const BEGIN: &str = "<!-- figures of scripts/bench-coverage: begin -->";
const END: &str = "<!-- figures of scripts/bench-coverage: end -->";

fn put(item: HashMap<String, AttributeValue>) -> WriteRequest {
    WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
        .build()
}

/// A CA's window item and a SUCCESS history item per day (every 50th CA misses one day in
/// the middle: a gap to find), made by the ledger's own builders.
fn ca_items(world: &World, i: usize, arn: &str, first_day: u64) -> Vec<WriteRequest> {
    let arn = CaArn::parse(arn).expect("a CA ARN");
    let mut writes = vec![put(report_item::window_item(&arn))];
    for day in 0..DAYS {
        if i.is_multiple_of(50) && day == DAYS / 2 {
            continue;
        }
        let at = Timestamp::from_epoch_seconds(first_day + day * DAY + 1800);
        let id = format!("{i:08}-{day:04}-4000-8000-000000000000");
        let report = ReportRecord {
            s3_key: format!("audit-report/{i}/{id}.json"),
            report_id: id,
            s3_bucket: world.bucket.clone(),
            format: ReportFormat::Json,
            requested_at: at,
            next_eligible_at: at,
            status: ReportStatus::Success,
            size_bytes: Some(2048),
            recovered: false,
            pin: None,
        };
        let retention = Duration::from_secs((DAYS + 35) * DAY);
        writes.push(put(report_item::history_item(
            &arn, "bench", &report, retention,
        )));
    }
    writes
}

/// Every CA's items, 25 a call, 8 CAs at once; made CA by CA so the seeding itself holds
/// little memory (the bench measures the coverage request's).
async fn seed(world: &World, arns: &[String], first_day: u64) -> usize {
    let written: Vec<usize> =
        futures::stream::iter(arns.iter().enumerate().map(|(i, arn)| async move {
            let writes = ca_items(world, i, arn, first_day);
            let n = writes.len();
            for chunk in writes.chunks(BATCH) {
                let mut pending = chunk.to_vec();
                while !pending.is_empty() {
                    let out = world
                        .dynamodb
                        .batch_write_item()
                        .request_items(&world.table, pending)
                        .send()
                        .await
                        .expect("batch write");
                    pending = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(&world.table))
                        .unwrap_or_default();
                }
            }
            n
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    written.iter().sum()
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn calls() -> BTreeMap<String, u64> {
    let out = support::control("GET", "/requests", None);
    let mut found = BTreeMap::new();
    for r in out["requests"].as_array().expect("requests") {
        found.insert(
            format!(
                "{}: {}",
                r["service"].as_str().unwrap(),
                r["operation"].as_str().unwrap()
            ),
            r["count"].as_u64().unwrap(),
        );
    }
    found
}

#[tokio::main]
async fn main() {
    let scale = settings::scale();
    let cas = CAS / scale;
    let world = World::new().await;
    let arns = world.seeded_arns(&[("ACTIVE", cas)]);
    let now = Timestamp::from_system_time(std::time::SystemTime::now()).epoch_seconds();
    let today = now - now % DAY;
    let first_day = today - DAYS * DAY;
    let started = Instant::now();
    let items = seed(&world, &arns, first_day).await;
    let seeding = started.elapsed();
    println!("seeded {items} items in {:.0} s", seeding.as_secs_f64());

    let settings = world.settings_with(&[("MIN_INTERVAL_MINUTES", "1440")]);
    let services = Services::new(settings, &world.sdk, Arc::new(SystemClock::default()));
    let from = Timestamp::from_epoch_seconds(first_day).to_string()[..10].to_owned();
    let to = Timestamp::from_epoch_seconds(today - DAY).to_string()[..10].to_owned();
    let request =
        CoverageRequest::from_value(json!({"coverage": {"from": from, "to": to}})).unwrap();
    let invocation = Invocation {
        run_id: "bench-coverage".into(),
        deadline: tokio::time::Instant::now() + DEADLINE,
        reserve: Invocation::DEFAULT_RESERVE,
        home_account: None,
        partition: None,
    };
    support::control("DELETE", "/requests", None);
    // The peak measured from here on is the request's, not the seeding's ("5" resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let summary = coverage::answer(&services, &request, &invocation)
        .await
        .expect("coverage answered");
    let took = started.elapsed().as_secs_f64();
    let calls = calls();
    let peak = peak_mib();
    let c = summary.counts;
    let csv = world
        .objects("evidence/")
        .await
        .into_iter()
        .find(|(k, _)| k.ends_with(".csv"))
        .map_or(0, |(_, size)| size);
    let mut scaled = if scale > 1 {
        format!(" (scaled by {scale})")
    } else {
        String::new()
    };
    if cfg!(debug_assertions) {
        // A debug build is slower: its figures are an upper bound of the release's.
        scaled.push_str(" (debug build)");
    }
    // The function's MemorySize in template.yaml.
    const MEMORY_MIB: f64 = 128.0;
    let met =
        took < DEADLINE.as_secs_f64() && c.certificate_authorities == cas && peak < MEMORY_MIB;
    let row = format!(
        "| 9. Coverage of a year: {cas} CAs × {DAYS} daily reports{scaled} | {took:.1} s ({:.1}% of the 900 s invocation), peak memory {peak:.0} MiB | < 900 s, every CA answered, peak memory < 128 MiB (the function's) | {} |\n",
        took / 9.0,
        if met { "yes" } else { "no" }
    );
    let details = format!(
        "- **9. Coverage of a year**: {} CAs answered, {} covered, {} with gaps ({} gaps), {} reports listed; manifest CSV {:.1} MiB; peak memory (VmHWM, reset after seeding) {peak:.0} MiB; calls: {}; seeded {items} items with BatchWriteItem in {:.0} s (not timed)\n",
        c.certificate_authorities,
        c.covered,
        c.with_gaps,
        c.gaps,
        c.reports,
        csv as f64 / 1_048_576.0,
        calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        seeding.as_secs_f64()
    );
    let md = format!(
        "Figures of one run of `scripts/bench-coverage` on {} against the local stack (DynamoDB Local).\n\n| Benchmark | Measured | Target | Met |\n|---|---|---|---|\n{row}\n{details}",
        Timestamp::from_epoch_seconds(now)
            .to_string()
            .get(..10)
            .unwrap_or_default()
    );
    print!("{md}");
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "BENCHMARKS.md".into());
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let text = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) => format!("{}{BEGIN}\n{md}{}", &text[..b], &text[e..]),
        _ => format!("{text}\n## Coverage\n\n{BEGIN}\n{md}{END}\n"),
    };
    std::fs::write(&out, text).expect("write the results");
    println!("wrote {out}");
}
