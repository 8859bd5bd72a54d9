//! The benchmarks of BENCHMARKS.md (run by `scripts/bench`, never by the test command).
//!
//! Each row runs against the local stack with the emulator's default AWS quotas and windows,
//! in an account of its own. The function runs as its release binary under cargo-lambda's
//! runtime emulator, as a process started cold, except the row that needs an invocation
//! shorter than the emulator's fixed 10 minutes: that one calls the scheduler as the binary
//! does, with the deadline Lambda would give it. Calls are counted where they arrive, at the
//! emulator, not by the function.
//!
//! Settings (scripts/bench sets them): BENCH_FUNCTION (the release binary), BENCH_OUT (the
//! markdown written), BENCH_CARGO_LAMBDA (the cargo-lambda executable), optionally
//! BENCH_BOOTSTRAP and BENCH_ZIP (the arm64 bootstrap and the zip SAM would upload),
//! BENCH_SCALE (1 for the sizes; smaller only to try the bench itself quickly).

#[path = "support/function.rs"]
mod function;
#[path = "support/settings.rs"]
mod settings;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use function::Function;
use pca_audit_scheduler::domain::outcome::Outcome;
use pca_audit_scheduler::run;
use pca_audit_scheduler::run::summary::RunSummary;
use pca_audit_scheduler::services::SystemClock;
use pca_audit_scheduler::{invocation::Invocation, services::Services};
use serde_json::{Value, json};
use settings::env;
use support::World;

/// The bound of a full run: AWS accepts one create per second per account and region.
const CREATE_QUOTA_PER_SECOND: f64 = 1.0;
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];

/// Calls the emulator received, per service and operation, and its throttling answers.
#[derive(Default)]
struct Calls {
    by_operation: BTreeMap<(String, String), u64>,
    throttled: BTreeMap<String, u64>,
}

impl Calls {
    fn reset() {
        support::control("DELETE", "/requests", None);
    }

    fn read() -> Self {
        let out = support::control("GET", "/requests", None);
        let mut calls = Calls::default();
        for r in out["requests"].as_array().expect("requests") {
            calls.by_operation.insert(
                (
                    r["service"].as_str().unwrap().to_owned(),
                    r["operation"].as_str().unwrap().to_owned(),
                ),
                r["count"].as_u64().unwrap(),
            );
        }
        for t in out["throttled"].as_array().expect("throttled") {
            calls.throttled.insert(
                t["operation"].as_str().unwrap().to_owned(),
                t["count"].as_u64().unwrap(),
            );
        }
        calls
    }

    fn of(&self, operation: &str) -> u64 {
        self.by_operation
            .iter()
            .filter(|((_, op), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    fn throttled_total(&self) -> u64 {
        self.throttled.values().sum()
    }

    /// `acm-pca: ListCertificateAuthorities 2, ...; dynamodb: ...`
    fn describe(&self) -> String {
        let mut by_service: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((service, op), n) in &self.by_operation {
            by_service
                .entry(service)
                .or_default()
                .push(format!("{op} {n}"));
        }
        by_service
            .iter()
            .map(|(s, ops)| format!("{s}: {}", ops.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn scheduled_event() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/events/scheduled.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn count(summary: &Value, name: &str) -> u64 {
    summary["counts"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counts.{name} in the answer: {summary}"))
}

/// Creates the emulator accepted per CA, and how many it refused for another reason than
/// the quota (a create wasted on a CA inside its window, or worse), for this account.
/// Throttled creates are retried in the next slot and counted apart.
fn creates(world: &World) -> (HashMap<String, usize>, usize) {
    let calls = world.create_calls();
    let refused = calls
        .iter()
        .filter(|(_, o)| o != "Accepted" && o != "ThrottlingException")
        .count();
    (world.accepted_creates(), refused)
}

struct Row {
    name: String,
    measured: String,
    target: String,
    met: bool,
    detail: String,
}

struct Bench {
    scale: usize,
    logs: PathBuf,
    rows: Vec<Row>,
    cold: Option<ColdStart>,
}

impl Bench {
    fn row(&mut self, name: &str, measured: String, target: String, met: bool, detail: String) {
        println!(
            "{name}: {measured} (target {target}: {})\n  {detail}",
            if met { "met" } else { "MISSED" }
        );
        self.rows.push(Row {
            name: name.into(),
            measured,
            target,
            met,
            detail,
        });
    }

    fn seed(&self, world: &World, region: &str, n: usize) -> Vec<String> {
        // The control API seeds in batches; a CA has one issued certificate.
        let mut arns = Vec::new();
        let mut left = n;
        while left > 0 {
            let batch = left.min(100);
            arns.extend(
                world
                    .seed_in(region, &[("ACTIVE", batch)])
                    .iter()
                    .map(|c| c["arn"].as_str().unwrap().to_owned()),
            );
            left -= batch;
        }
        arns
    }

    /// A full run of every CA of `regions` by a cold function, against the bound of one
    /// create per second per region (the regions run side by side); the function is kept
    /// for what comes next.
    async fn full_run(
        &mut self,
        name: &str,
        world: &World,
        regions: &[&str],
        log: &str,
    ) -> Function {
        let per_region = 200 / self.scale;
        let bound = per_region as f64 / CREATE_QUOTA_PER_SECOND;
        let limit = 1.05 * bound + 2.0;
        let mut function = Function::emulator();
        function.start(
            &world.function_env(&[("AUDIT_REGIONS", &regions.join(","))]),
            &self.logs.join(log),
        );
        Calls::reset();
        let (summary, wall) = function.invoke(&scheduled_event());
        let calls = Calls::read();
        let (accepted, refused) = creates(world);
        let requested = count(&summary, "requested");
        let failed = count(&summary, "failed");
        let duplicates = accepted.values().filter(|&&n| n > 1).count();
        let secs = wall.as_secs_f64();
        self.row(
            name,
            format!("{secs:.1} s (bound {bound:.0} s, {:.3}× it)", secs / bound),
            format!("≤ {limit:.0} s, 0 failed, no wasted create"),
            secs <= limit
                && failed == 0
                && refused == 0
                && duplicates == 0
                && requested as usize == per_region * regions.len(),
            format!(
                "{requested} requested, {failed} failed; creates accepted {}, wasted (refused \
                 other than by the quota) {refused}; throttled {} (each retried in the next \
                 slot); calls: {}",
                accepted.values().sum::<usize>(),
                calls.throttled_total(),
                calls.describe()
            ),
        );
        function
    }

    /// Rows 1 to 3 and the memory of row 5: full runs at the quota, then the idle run.
    async fn full_runs(&mut self) {
        let per_region = 200 / self.scale;

        // Row 1: one region.
        let world = World::new().await;
        self.seed(&world, REGIONS[0], per_region);
        let function = self
            .full_run(
                &format!("1. Full run, one region, {per_region} CAs"),
                &world,
                &REGIONS[..1],
                "row1.log",
            )
            .await;
        drop(function);

        // Row 2: four regions side by side.
        let world = World::new().await;
        for region in REGIONS {
            self.seed(&world, region, per_region);
        }
        let total = per_region * REGIONS.len();
        let function = self
            .full_run(
                &format!("2. Full run, four regions × {per_region} CAs"),
                &world,
                &REGIONS,
                "row2-3.log",
            )
            .await;

        // Row 3: the same CAs right after, in the same (warm) function.
        Calls::reset();
        let (summary, wall) = function.invoke(&scheduled_event());
        let calls = Calls::read();
        let skipped = count(&summary, "skipped");
        let creates_made = calls.of("CreateCertificateAuthorityAuditReport");
        let reads = calls.of("BatchGetItem");
        let per_ca_reads = calls.of("GetItem") + calls.of("Query");
        let secs = wall.as_secs_f64();
        self.row(
            &format!("3. Idle run, {total} CAs inside their window"),
            format!("{secs:.2} s, {creates_made} creates"),
            "< 2 s, 0 creates, reads batched".into(),
            secs < 2.0
                && creates_made == 0
                && skipped as usize == total
                && per_ca_reads == 0
                && reads as usize <= total.div_ceil(100) + REGIONS.len(),
            format!(
                "{skipped} skipped; {reads} BatchGetItem calls for {total} windows, \
                 {per_ca_reads} per-CA reads; calls: {}",
                calls.describe()
            ),
        );
        let peak_after_full = function.peak_rss_mib();
        drop(function);

        // Row 5: a cold process answering a dry run over the same CAs.
        let mut function = Function::emulator();
        let pending = function.invoke_async(&json!({"dryRun": true}));
        // The invocation waits in the emulator, as Lambda's does for a new instance.
        std::thread::sleep(Duration::from_millis(200));
        let started = function.start(
            &world.function_env(&[("AUDIT_REGIONS", &REGIONS.join(","))]),
            &self.logs.join("row5-dry-run.log"),
        );
        let (summary, arrived) = pending.join().unwrap();
        let cold_800 = arrived - started;
        let would = count(&summary, "wouldRequest") + count(&summary, "skipped");
        let peak_dry = function.peak_rss_mib();
        drop(function);
        self.cold = Some(ColdStart {
            cas: total,
            answered_cas: would as usize,
            first_answer: cold_800,
            peak_after_full,
            peak_dry,
        });
    }

    /// Eight invocations started together over one account-region's CAs, at the quota: they
    /// share the create slots through the ledger, so together they finish in about the time
    /// the quota allows, every CA requested once.
    async fn overlapping(&mut self) {
        const INVOCATIONS: usize = 8;
        let n = 200 / self.scale;
        let world = World::new().await;
        let arns = self.seed(&world, REGIONS[0], n);
        let services: Vec<Services> = (0..INVOCATIONS)
            .map(|_| {
                Services::new(
                    world.settings_with(&[("AUDIT_REGIONS", REGIONS[0])]),
                    &world.sdk,
                    Arc::new(SystemClock::default()),
                )
            })
            .collect();
        let request = support::scheduled();
        let started = Instant::now();
        let summaries: Vec<RunSummary> =
            futures::future::join_all(services.iter().enumerate().map(|(i, s)| {
                let request = &request;
                async move {
                    let invocation = Invocation {
                        run_id: format!("bench-overlap-{i}"),
                        deadline: tokio::time::Instant::now() + Duration::from_secs(900),
                        reserve: Invocation::DEFAULT_RESERVE,
                        home_account: None,
                        partition: None,
                    };
                    run::run(s, request, &invocation).await
                }
            }))
            .await;
        let secs = started.elapsed().as_secs_f64();
        let bound = n as f64 / CREATE_QUOTA_PER_SECOND;
        let limit = 1.05 * bound + 3.0;
        let requested: usize = summaries.iter().map(|s| s.counts.requested).sum();
        let failed: usize = summaries.iter().map(|s| s.counts.failed).sum();
        let deferred: usize = summaries.iter().map(|s| s.counts.deferred).sum();
        let (accepted, refused) = creates(&world);
        let twice = accepted.values().filter(|&&c| c > 1).count();
        let throttled = world
            .create_calls()
            .iter()
            .filter(|(_, o)| o == "ThrottlingException")
            .count();
        let per_invocation = summaries
            .iter()
            .map(|s| s.counts.requested.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.row(
            &format!("{INVOCATIONS} overlapping invocations, {n} CAs"),
            format!("{secs:.1} s (bound {bound:.0} s, {:.3}× it)", secs / bound),
            format!("≤ {limit:.0} s, every CA once, none deferred or failed"),
            secs <= limit
                && requested == arns.len()
                && accepted.len() == arns.len()
                && twice == 0
                && failed == 0
                && deferred == 0,
            format!(
                "{INVOCATIONS} invocations (each its own clients, as separate Lambda execution \
                 environments) started together over {n} CAs of one account-region; {requested} \
                 requested (per invocation: {per_invocation}), {failed} failed, {deferred} \
                 deferred; creates accepted {}, twice for a CA {twice}, wasted {refused}, \
                 throttled {throttled}",
                accepted.values().sum::<usize>()
            ),
        );
    }

    /// Row 4: more CAs than one invocation can request, scaled down with the timeout.
    async fn beyond_one_invocation(&mut self) {
        // 1,000 CAs in 900 s, scaled by ten: 100 CAs in 90 s invocations.
        let timeout = Duration::from_secs(90);
        let n = 100 / self.scale.min(2);
        let world = World::new().await;
        let arns = self.seed(&world, REGIONS[0], n);
        let sdk = world
            .sdk
            .to_builder()
            .retry_config(RetryConfig::adaptive().with_max_attempts(5))
            .build();
        let services = Services::new(
            world.settings_with(&[("AUDIT_REGIONS", REGIONS[0])]),
            &sdk,
            Arc::new(SystemClock::default()),
        );
        let request = support::scheduled();
        let mut runs: Vec<(RunSummary, Duration)> = Vec::new();
        let mut ordered_ok = true;
        let mut previous_deferred: Vec<String> = Vec::new();
        while runs.len() < 10 {
            let started = Instant::now();
            let invocation = Invocation {
                run_id: format!("bench-run-{}", runs.len() + 1),
                deadline: tokio::time::Instant::now() + timeout,
                reserve: Invocation::DEFAULT_RESERVE,
                home_account: None,
                partition: None,
            };
            let summary = run::run(&services, &request, &invocation).await;
            let requested: Vec<String> = summary
                .certificate_authorities
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Requested { .. }))
                .map(|o| o.certificate_authority_arn.clone())
                .collect();
            // The CAs deferred last time are the first ones requested now.
            let k = previous_deferred.len().min(requested.len());
            if requested[..k] != previous_deferred[..k] {
                ordered_ok = false;
            }
            previous_deferred = summary
                .certificate_authorities
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Deferred { .. }))
                .map(|o| o.certificate_authority_arn.clone())
                .collect();
            runs.push((summary, started.elapsed()));
            if previous_deferred.is_empty() {
                break;
            }
        }
        let (accepted, refused) = creates(&world);
        let twice = accepted.values().filter(|&&c| c > 1).count();
        let served: HashSet<&String> = accepted.keys().collect();
        let missing = arns.iter().filter(|a| !served.contains(a)).count();
        let failed: usize = runs.iter().map(|(s, _)| s.counts.failed).sum();
        let per_run = runs
            .iter()
            .enumerate()
            .map(|(i, (s, wall))| {
                format!(
                    "run {}: {} requested, {} deferred, {} skipped in {:.1} s",
                    i + 1,
                    s.counts.requested,
                    s.counts.deferred,
                    s.counts.skipped,
                    wall.as_secs_f64()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        self.row(
            &format!(
                "4. Beyond one invocation: {n} CAs, {} s invocations (1,000 CAs in 900 s, scaled by {})",
                timeout.as_secs(),
                1000 / n
            ),
            format!("{} runs", runs.len()),
            "every CA once, none twice, deferred first".into(),
            twice == 0 && missing == 0 && refused == 0 && failed == 0 && ordered_ok,
            format!(
                "{per_run}. CAs requested twice: {twice}; never requested: {missing}; creates \
                 wasted (refused other than by the quota): {refused}; deferred CAs first in \
                 the next run: {}",
                if ordered_ok { "yes" } else { "NO" }
            ),
        );
    }

    /// Row 5: cold start of a small account, and the sizes.
    /// A cold process of the function answering a dry run over one CA: the time from its
    /// start to the answer, the invocation already waiting as Lambda's does.
    async fn cold_start(&self, world: &World) -> (Duration, u64) {
        let mut function = Function::emulator();
        let pending = function.invoke_async(&json!({"dryRun": true}));
        std::thread::sleep(Duration::from_millis(200));
        let started = function.start(
            &world.function_env(&[("AUDIT_REGIONS", REGIONS[0])]),
            &self.logs.join("row5-cold.log"),
        );
        let (summary, arrived) = pending.join().unwrap();
        (arrived - started, count(&summary, "wouldRequest"))
    }

    async fn cold_start_and_size(&mut self) {
        let world = World::new().await;
        self.seed(&world, REGIONS[0], 1);
        let (cold_one, would) = self.cold_start(&world).await;

        let cold = self.cold.take().expect("full runs first");
        let peak = cold.peak_after_full.max(cold.peak_dry);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        self.row(
            "5a. Cold start to the first answer (dry run)",
            format!(
                "{:.0} ms (1 CA), {:.0} ms ({} CAs, 4 regions)",
                ms(cold_one),
                ms(cold.first_answer),
                cold.cas
            ),
            "< 50 ms".into(),
            ms(cold_one) < 50.0,
            format!(
                "from spawning the process to the emulator's answer, the invocation already \
                 waiting; {would} and {} CAs answered",
                cold.answered_cas
            ),
        );
        self.row(
            &format!("5b. Peak memory (RSS) at {} CAs", cold.cas),
            format!("{peak:.1} MiB"),
            "< 40 MiB".into(),
            peak < 40.0,
            format!(
                "VmHWM of the process that made the full and idle runs: {:.1} MiB; of a cold \
                 process answering the dry run: {:.1} MiB",
                cold.peak_after_full, cold.peak_dry
            ),
        );
        let mib = |p: &str| {
            std::fs::metadata(p)
                .map(|m| m.len() as f64 / 1048576.0)
                .ok()
        };
        let host = mib(&env("BENCH_FUNCTION"));
        let bootstrap = std::env::var("BENCH_BOOTSTRAP").ok().and_then(|p| mib(&p));
        let zip = std::env::var("BENCH_ZIP").ok().and_then(|p| mib(&p));
        let show = |v: Option<f64>| v.map_or("not built".into(), |v| format!("{v:.2} MiB"));
        self.row(
            "5c. Size",
            format!("zip {}, bootstrap {}", show(zip), show(bootstrap)),
            "zip < 5 MiB".into(),
            zip.is_some_and(|z| z < 5.0),
            format!(
                "arm64 bootstrap as `cargo lambda build --release --arm64` makes it for SAM, \
                 zipped with deflate as SAM does; the x86_64 binary measured above: {}",
                show(host)
            ),
        );
    }
}

struct ColdStart {
    cas: usize,
    answered_cas: usize,
    first_answer: Duration,
    peak_after_full: f64,
    peak_dry: f64,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.1} GiB", kb / 1048576.0));
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} memory, Linux; {rustc}")
}

#[tokio::main]
async fn main() {
    let scale = settings::scale();
    let logs = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench"));
    std::fs::create_dir_all(&logs).unwrap();
    let mut bench = Bench {
        scale,
        logs,
        rows: Vec::new(),
        cold: None,
    };
    // `BENCH_COLD_ONLY=N`: only the cold start, N times, for comparing builds (the release
    // profile's opt-level); prints the median and writes nothing.
    if let Some(n) = std::env::var("BENCH_COLD_ONLY")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let world = World::new().await;
        bench.seed(&world, REGIONS[0], 1);
        let mut times: Vec<f64> = Vec::new();
        for _ in 0..n.max(1) {
            times.push(bench.cold_start(&world).await.0.as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "cold start of {}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} starts",
            env("BENCH_FUNCTION"),
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            times.len()
        );
        return;
    }
    let begun = Instant::now();
    bench.full_runs().await;
    bench.overlapping().await;
    bench.beyond_one_invocation().await;
    bench.cold_start_and_size().await;

    let mut md = String::new();
    writeln!(
        md,
        "Figures of one run of `scripts/bench` on {} (took {:.0} s), against the local stack with \
         the emulator's default AWS quotas (1 create per second, 20 reads per second, per account \
         and region) and 30-minute service window.{}\n",
        common_today(),
        begun.elapsed().as_secs_f64(),
        if scale > 1 {
            format!(" **Scaled down by {scale}: not the published figures.**")
        } else {
            String::new()
        }
    )
    .unwrap();
    writeln!(md, "Machine: {}.\n", machine()).unwrap();
    writeln!(md, "| Benchmark | Measured | Target | Met |").unwrap();
    writeln!(md, "|---|---|---|---|").unwrap();
    for r in &bench.rows {
        writeln!(
            md,
            "| {} | {} | {} | {} |",
            r.name,
            r.measured,
            r.target,
            if r.met { "yes" } else { "**no**" }
        )
        .unwrap();
    }
    writeln!(md, "\n## Details\n").unwrap();
    for r in &bench.rows {
        writeln!(md, "- **{}**: {}", r.name, r.detail).unwrap();
    }
    // The figures go between the markers; what people wrote around them stays.
    let out = env("BENCH_OUT");
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    let text = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{BEGIN}\n{md}{}", &old[..b], &old[e..])
        }
        _ => format!("# Benchmarks\n\n{BEGIN}\n{md}{END}\n"),
    };
    std::fs::write(&out, text).expect("write the results");
    println!("wrote {out}");
}

const BEGIN: &str = "<!-- figures of scripts/bench: begin -->";
const END: &str = "<!-- figures of scripts/bench: end -->";

fn common_today() -> String {
    let now = pca_audit_scheduler::domain::time::Timestamp::from_system_time(
        std::time::SystemTime::now(),
    );
    now.to_string()[..10].to_owned()
}
