//! The hung-create row of BENCHMARKS.md's "At Lambda's CPU share" (issue 22, part 6), run by
//! `scripts/bench-hang`, never by the tests: a whole scheduled run in which one create in five
//! never answers (the local stack's fault kind `hang`: the request is held unanswered for
//! longer than any invocation). The function's release binary runs cold at a 128 MB function's
//! CPU (`scripts/lambda-cpu`), at production settings: the emulator's quota of one create a
//! second per account-region, the function's own pacing and timeouts. Measured: when it
//! answered against its deadline, what its summary said, whether its metric line was written,
//! and whether any CA was requested twice.
//!
//! Settings: BENCH_FUNCTION (the release binary), BENCH_OUT (the markdown written),
//! BENCH_HANG_CAS (1000 unless set), BENCH_HANG_DEADLINE (the invocation's seconds, 900 unless
//! set: the template's Timeout), LAMBDA_MEMORY_MB (128 unless set), BENCH_HANG_RATE (the share
//! of creates that hang, 0.2 unless set; 0 makes the control row L11b, the same run without the
//! fault, written in a block of its own).

#[path = "support/lambda_cpu.rs"]
mod lambda_cpu;
#[path = "support/settings.rs"]
mod settings;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{World, clear_fault, fault, function_arn, injected};

const BEGIN: &str = "<!-- figures of scripts/bench-hang: begin -->";
const END: &str = "<!-- figures of scripts/bench-hang: end -->";
const CONTROL_BEGIN: &str =
    "<!-- figures of scripts/bench-hang, control without the fault: begin -->";
const CONTROL_END: &str = "<!-- figures of scripts/bench-hang, control without the fault: end -->";

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's counts: the answer's, or (when a CA failed and the invocation failed with it)
/// the metric line's, which the function writes either way.
fn counts_text(answered: &lambda_cpu::Answered, metric: Option<&Value>) -> String {
    let nonzero = |c: &serde_json::Map<String, Value>| {
        c.iter()
            .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if answered.kind == "response"
        && let Some(c) = answered.json()["counts"].as_object()
    {
        return nonzero(c);
    }
    metric.and_then(Value::as_object).map_or_else(
        || "no counts found".into(),
        |m| {
            let mut m = m.clone();
            m.retain(|k, _| k != "_aws");
            format!("(from the metric line) {}", nonzero(&m))
        },
    )
}

#[tokio::main]
async fn main() {
    let cas = number("BENCH_HANG_CAS", 1000) as usize;
    let deadline = Duration::from_secs(number("BENCH_HANG_DEADLINE", 900));
    let world = World::new().await;
    let seeding = Instant::now();
    let arns = world.seeded_arns(&[("ACTIVE", cas)]);
    println!(
        "seeded {} CAs in {:.0} s",
        arns.len(),
        seeding.elapsed().as_secs_f64()
    );
    let rate: f64 = std::env::var("BENCH_HANG_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.2);
    let rule = (rate > 0.0).then(|| {
        fault(json!({"service": "acm-pca", "account_id": world.account_id,
            "operation": "CreateCertificateAuthorityAuditReport", "kind": "hang",
            "rate": rate, "seed": 5}))
    });
    let event = lambda_cpu::scheduled_event();
    let log = lambda_cpu::bench_log("hang-function");
    println!(
        "invoking: {cas} CAs, deadline {} s, {} MB's CPU",
        deadline.as_secs(),
        lambda_cpu::memory_mb()
    );
    let load_before = lambda_cpu::load();
    let answered = lambda_cpu::invoke(
        &world.function_env(&[]),
        &function_arn(&world.account_id),
        &event,
        deadline,
        &log,
    );
    let hung = rule.as_deref().map_or(0, injected);
    if let Some(rule) = &rule {
        clear_fault(rule);
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let metric: Option<Value> = text
        .lines()
        .filter(|l| l.contains("\"_aws\"") && l.contains("PcaAuditScheduler"))
        .find_map(|l| serde_json::from_str(l).ok());
    let metric_line = metric.is_some();
    let counts = counts_text(&answered, metric.as_ref());
    let accepted = world.accepted_creates();
    let twice = accepted.values().filter(|&&n| n > 1).count();
    let calls = world.create_calls().len();
    let took = answered.took.as_secs_f64();
    let met = answered.kind != "no answer" && answered.took < deadline && metric_line && twice == 0;
    let md = format!(
        "Figures of one run of `scripts/bench-hang` on {} (release build, {} MB's CPU: {:.4} vCPU by `scripts/lambda-cpu`; machine {} at the start, {} at the end).\n\n\
         | Benchmark | Measured | Target | Met |\n|---|---|---|---|\n\
         | L11. One create in five never answers: {cas} CAs, one account-region, {} s invocation | answered after {took:.1} s of {} s ({:.1}% of the deadline, {:.1} s before it); {} | answers before the deadline with every CA's outcome, metric line written, no CA requested twice | {} |\n\n\
         - **L11. One create in five never answers**: the release binary, cold, under a Runtime API handing out one invocation with a {} s deadline (the template's Timeout: 900 s), at the emulator's quota (1 create/s per account-region) and production pacing; a `hang` fault on the CreateCertificateAuthorityAuditReport calls of account {} (rate 0.2, seed 5: the stack holds the request unanswered longer than any invocation), so each hung create is given up by the function's own timeout (`aws::timeouts`, a create's single attempt 9 s). Hung creates: {hung}; create calls that reached the emulator: {calls}; CAs with an accepted create: {}, requested twice: {twice}. Answer: {} ({} bytes); summary counts: {}; EMF metric line in the log: {}; peak RSS {:.1} MiB, CPU time {:.1} s of the function process.\n",
        lambda_cpu::today(),
        answered.memory_mb,
        lambda_cpu::vcpu(answered.memory_mb),
        load_before,
        lambda_cpu::load(),
        deadline.as_secs(),
        deadline.as_secs(),
        took / deadline.as_secs_f64() * 100.0,
        deadline.as_secs_f64() - took,
        counts,
        if met { "yes" } else { "**no**" },
        deadline.as_secs(),
        world.account_id,
        accepted.len(),
        answered.kind,
        answered.body.len(),
        counts,
        if metric_line {
            "written"
        } else {
            "**missing**"
        },
        answered.peak_rss_mib,
        answered.cpu_secs,
    );
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "BENCHMARKS.md".into());
    if rule.is_none() {
        let md = format!(
            "Control, on {} (machine {load_before} at the start): the same run without the fault.\n\n\
             | Benchmark | Measured | Target | Met |\n|---|---|---|---|\n\
             | L11b. Control: {cas} CAs, no fault, {} s invocation, {} MB's CPU | answered after {took:.1} s ({:.2} CAs requested a second); {counts} | as L11 | {} |\n\n\
             - **L11b**: create calls {calls}, CAs with an accepted create {}, requested twice {twice}; EMF metric line {}; peak RSS {:.1} MiB, CPU time {:.1} s of the function process; machine {} at the end.\n",
            lambda_cpu::today(),
            deadline.as_secs(),
            answered.memory_mb,
            accepted.len() as f64 / took,
            if met { "yes" } else { "**no**" },
            accepted.len(),
            if metric_line {
                "written"
            } else {
                "**missing**"
            },
            answered.peak_rss_mib,
            answered.cpu_secs,
            lambda_cpu::load(),
        );
        print!("{md}");
        lambda_cpu::write_block(&out, CONTROL_BEGIN, CONTROL_END, &md);
        println!("wrote {out}");
        return;
    }
    print!("{md}");
    lambda_cpu::write_block(&out, BEGIN, END, &md);
    println!("wrote {out}");
}
