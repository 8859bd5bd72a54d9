//! The report-reading row of BENCHMARKS.md (READ_REPORTS, issue 14), run by
//! `scripts/bench-reports` on its own: the function's release binary, started cold under
//! cargo-lambda's runtime emulator, follows up a report of 100,000 certificates and reads it;
//! its peak RSS (VmHWM) and the invocation's time are measured.
//!
//! How the report comes about: a first run (in-process, invocation too short to wait) has the
//! local stack's emulator accept a real report and leaves it CREATING in the ledger; the
//! emulator then writes it, and the object is overwritten with a generated report of 100,000
//! rows in the documented JSON form (the stack cannot make a CA issue 100,000 certificates in
//! reasonable time). The next invocation of the binary finds it SUCCESS and reads it: the
//! same path as any report, only larger.
//!
//! With BENCH_LAMBDA_CPU=1 (`scripts/bench-reports --lambda-cpu`) it measures instead what the
//! reading costs at a 128 MB function's CPU (`scripts/lambda-cpu`; LAMBDA_MEMORY_MB changes it):
//! per format, reports of 1,000 and 100,000 certificates and one just under READ_REPORTS_MAX_MIB
//! (256 MiB unless BENCH_READ_MAX_MIB says), each read by a cold invocation of the binary with
//! READ_REPORTS_MAX_SECONDS at its 600 s maximum, so that the time measured is the reading's own,
//! not the budget's cut; the rate is the difference of sizes over the difference of times.
//!
//! Settings: BENCH_FUNCTION (the release binary), BENCH_CARGO_LAMBDA (cargo-lambda),
//! BENCH_OUT (the markdown the row goes into), BENCH_REPORT_ROWS (100000 unless set).

#[path = "support/function.rs"]
mod function;
#[path = "support/lambda_cpu.rs"]
mod lambda_cpu;
#[path = "support/settings.rs"]
mod settings;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use function::Function;
use pca_audit_scheduler::run;
use pca_audit_scheduler::services::Services;
use pca_audit_scheduler::services::SystemClock;
use serde_json::{Value, json};
use settings::env;
use support::{World, control, function_arn, invocation, scheduled};

const NAME: &str = "6. Reading a report of 100,000 certificates (READ_REPORTS)";
const LIMIT_MIB: f64 = 64.0;

/// A report of `rows` certificates in the guide's CSV form (the subject quoted: it holds
/// commas), a tenth of them revoked.
fn csv_report(ca_arn: &str, rows: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * 400);
    out.extend_from_slice(
        pca_audit_scheduler::evidence::contents::CSV_COLUMNS
            .join(",")
            .as_bytes(),
    );
    out.push(b'\n');
    for i in 0..rows {
        let (revoked_at, reason) = if i % 10 == 0 {
            ("2026-02-01T00:00:00+0000", "KEY_COMPROMISE")
        } else {
            ("", "")
        };
        let line = format!(
            "123456789012,,{ca_arn}/certificate/{i:032x},{:02x}:{:02x}:{:02x}:{:02x},\"CN=host-{i}.example.internal,OU=Sales,O=Example Company,L=Seattle,ST=Washington,C=US\",2026-01-01T00:00:00+0000,2027-01-01T00:00:00+0000,2026-01-01T00:00:01+0000,{revoked_at},{reason},arn:aws:acm-pca:::template/EndEntityCertificate/V1\n",
            i >> 24 & 255,
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// A report of `rows` certificates in the guide's JSON form, a tenth of them revoked.
fn report(ca_arn: &str, rows: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * 560);
    out.push(b'[');
    for i in 0..rows {
        if i > 0 {
            out.push(b',');
        }
        let mut row = json!({
            "awsAccountId": "123456789012",
            "certificateArn": format!("{ca_arn}/certificate/{i:032x}"),
            "serial": format!("{:02x}:{:02x}:{:02x}:{:02x}", i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255),
            "subject": format!("CN=host-{i}.example.internal,OU=Sales,O=Example Company,L=Seattle,ST=Washington,C=US"),
            "notBefore": "2026-01-01T00:00:00+0000",
            "notAfter": "2027-01-01T00:00:00+0000",
            "issuedAt": "2026-01-01T00:00:01+0000",
            "templateArn": "arn:aws:acm-pca:::template/EndEntityCertificate/V1",
        });
        if i % 10 == 0 {
            row["revokedAt"] = json!("2026-02-01T00:00:00+0000");
            row["revocationReason"] = json!("KEY_COMPROMISE");
        }
        serde_json::to_writer(&mut out, &row).unwrap();
    }
    out.push(b']');
    out
}

/// Starts the binary cold under its own runtime emulator, invokes it once with the schedule's
/// event; its answer, the invocation's time and its peak RSS.
fn invoke_cold(world: &World, extra: &[(&str, &str)]) -> (Value, Duration, f64) {
    let mut function = Function::emulator();
    let log = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/bench/reports-function.log"
    ));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    function.start(&world.function_env(extra), log);
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/scheduled.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let (answer, took) = function.invoke(&event);
    (answer, took, function.peak_rss_mib())
}

/// What reading one report took: peak RSS (MiB), the invocation's time, the report's size
/// (MiB) and how many of its certificates were revoked.
struct Reading {
    rss: f64,
    took: Duration,
    size_mib: f64,
    revoked: u64,
}

/// A world whose one CA has a SUCCESS report of `rows` certificates in `format` waiting to be
/// followed up; the report's size in bytes.
async fn prepare(format: &str, rows: usize) -> (World, usize) {
    let world = World::new().await;
    world.configure_emulator(json!({"create_rps": 1000, "report_delay_seconds": 600}));
    let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);

    // The report is accepted and left CREATING: too little time to wait for it.
    let settings = world.settings_with(&[("REPORT_FORMAT", format)]);
    let services = Services::new(settings, &world.sdk, Arc::new(SystemClock::default()));
    let first = run::run(
        &services,
        &scheduled(),
        &invocation("bench-first", Duration::from_secs(12)),
    )
    .await;
    assert_eq!(first.counts.requested, 1, "{first:#?}");
    let key = match &first.certificate_authorities[0].outcome {
        pca_audit_scheduler::domain::outcome::Outcome::Requested { s3_key, .. } => s3_key.clone(),
        other => panic!("not requested: {other:?}"),
    };
    world.configure_emulator(json!({"report_delay_seconds": 0}));
    control(
        "POST",
        "/finish-reports",
        Some(json!({"account_id": world.account_id})),
    );
    let body = if format == "CSV" {
        csv_report(&arn, rows)
    } else {
        report(&arn, rows)
    };
    let size = body.len();
    // The bench writes a report of the size it measures where the service would: as an
    // administrator may, without the bucket policy's Deny of other writers.
    world.lift_the_writers_deny().await;
    world
        .s3
        .put_object()
        .bucket(&world.bucket)
        .key(&key)
        .body(body.into())
        .send()
        .await
        .expect("put the report");
    (world, size)
}

/// One report of `rows` certificates in `format`, read by a cold invocation of the binary.
async fn measure(format: &str, rows: usize) -> Reading {
    let (world, size) = prepare(format, rows).await;
    let (answer, took, rss) = invoke_cold(
        &world,
        &[("READ_REPORTS", "true"), ("REPORT_FORMAT", format)],
    );
    let contents = &answer["certificateAuthorities"][0]["report"]["contents"];
    assert_eq!(
        contents["certificates"].as_u64(),
        Some(rows as u64),
        "the {format} report was not read: {answer}"
    );
    Reading {
        rss,
        took,
        size_mib: size as f64 / 1048576.0,
        revoked: contents["revokedSince"].as_u64().unwrap_or(0),
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_LAMBDA_CPU").is_ok_and(|v| v == "1") {
        at_lambda_cpu::rows().await;
        return;
    }
    let rows: usize = std::env::var("BENCH_REPORT_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let json = measure("JSON", rows).await;
    let csv = measure("CSV", rows).await;
    let rss = json.rss.max(csv.rss);
    let row = format!(
        "| {NAME} | {:.1} MiB peak RSS (JSON), {:.1} MiB (CSV); {:.1} s, {:.1} s | < {LIMIT_MIB:.0} MiB | {} |",
        json.rss,
        csv.rss,
        json.took.as_secs_f64(),
        csv.took.as_secs_f64(),
        if rss < LIMIT_MIB { "yes" } else { "**no**" }
    );
    let detail = format!(
        "- **{NAME}**: per format, one invocation of the release binary, started cold, following \
         up a SUCCESS report of {rows} certificates ({} revoked) and reading it from S3 as a \
         stream; the invocation's time covers Describe, ListObjectsV2, the ledger's Query for \
         the previous report, GetObject and the parse, and the ledger write. JSON: {:.1} MiB \
         read, VmHWM {:.1} MiB, {:.2} s; CSV: {:.1} MiB read, VmHWM {:.1} MiB, {:.2} s. The \
         report is generated and written over a real report of the local stack (a CA there \
         cannot issue 100,000 certificates in reasonable time). Run alone by \
         `scripts/bench-reports` on {}.",
        json.revoked,
        json.size_mib,
        json.rss,
        json.took.as_secs_f64(),
        csv.size_mib,
        csv.rss,
        csv.took.as_secs_f64(),
        pca_audit_scheduler::domain::time::Timestamp::from_system_time(std::time::SystemTime::now())
            .to_string()[..10]
            .to_owned()
    );
    println!("{row}\n{detail}");
    write_row(&env("BENCH_OUT"), &row, &detail);
}

/// Puts the row at the end of the figures' table and the detail at the end of their details,
/// both between scripts/bench's markers (replacing an earlier one of the same name); every
/// other line stays.
fn write_row(path: &str, row: &str, detail: &str) {
    let text = std::fs::read_to_string(path).expect("BENCHMARKS.md");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| {
            !l.starts_with(&format!("| {NAME} |")) && !l.starts_with(&format!("- **{NAME}**"))
        })
        .map(str::to_owned)
        .collect();
    let begin = lines
        .iter()
        .position(|l| l.starts_with("<!-- figures of scripts/bench: begin"))
        .expect("the begin marker of scripts/bench in BENCHMARKS.md");
    let end = lines
        .iter()
        .position(|l| l.starts_with("<!-- figures of scripts/bench: end"))
        .expect("the end marker of scripts/bench in BENCHMARKS.md");
    let figures = &lines[begin..end];
    let last_row = figures
        .iter()
        .rposition(|l| l.starts_with("| "))
        .expect("the figures' table");
    lines.insert(begin + last_row + 1, row.to_owned());
    // One line further down now.
    let last_detail = lines[begin..=end]
        .iter()
        .rposition(|l| l.starts_with("- **"))
        .expect("the figures' details");
    lines.insert(begin + last_detail + 1, detail.to_owned());
    std::fs::write(path, lines.join("\n") + "\n").expect("write BENCHMARKS.md");
}

/// The reading at a Lambda memory size's CPU share (BENCH_LAMBDA_CPU=1).
mod at_lambda_cpu {
    use super::{Duration, World, csv_report, function_arn, lambda_cpu, prepare, report};

    const BEGIN: &str = "<!-- figures of scripts/bench-reports --lambda-cpu: begin -->";
    const END: &str = "<!-- figures of scripts/bench-reports --lambda-cpu: end -->";
    /// READ_REPORTS_MAX_MIB's default (src/config).
    const MAX_MIB: usize = 256;
    /// READ_REPORTS_MAX_SECONDS's default (src/config): what a report at the size limit must
    /// be read within.
    const MAX_SECONDS: f64 = 60.0;
    /// The function's MemorySize (template.yaml).
    const MEMORY_MIB: f64 = 128.0;

    /// One cold invocation reading one report.
    struct Read {
        format: &'static str,
        rows: usize,
        size_mib: f64,
        took: f64,
        rss: f64,
        cpu: f64,
        outcome: String,
    }

    /// Certificates of a report of about `mib` MiB in `format`, less two MiB: just under the
    /// limit, which a report over is not read (a row's subject grows with its number, so the
    /// sample's rows are a little shorter than the last ones).
    fn rows_under(format: &str, mib: usize) -> usize {
        let arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d";
        let sample = 10_000;
        let bytes = if format == "CSV" {
            csv_report(arn, sample).len()
        } else {
            report(arn, sample).len()
        };
        (mib - 2) * 1_048_576 / bytes.div_ceil(sample)
    }

    async fn read(format: &'static str, rows: usize) -> Read {
        let (world, size) = prepare(format, rows).await;
        let answered = invoke(&world, format);
        let answer = answered.json();
        let check = &answer["certificateAuthorities"][0]["report"];
        let outcome = match check["contents"]["certificates"].as_u64() {
            Some(n) if n == rows as u64 => "read".to_owned(),
            _ => format!(
                "**not read**: {} {}",
                answered.kind,
                check["detail"].as_str().unwrap_or(&answered.body)
            ),
        };
        let r = Read {
            format,
            rows,
            size_mib: size as f64 / 1_048_576.0,
            took: answered.took.as_secs_f64(),
            rss: answered.peak_rss_mib,
            cpu: answered.cpu_secs,
            outcome,
        };
        println!(
            "{format} {rows} rows, {:.1} MiB: {:.2} s, {:.1} MiB peak, {:.2} s CPU, {}",
            r.size_mib, r.took, r.rss, r.cpu, r.outcome
        );
        r
    }

    fn invoke(world: &World, format: &str) -> lambda_cpu::Answered {
        let event = lambda_cpu::scheduled_event();
        let log = lambda_cpu::bench_log("reports-lambda-cpu");
        lambda_cpu::invoke(
            &world.function_env(&[
                ("READ_REPORTS", "true"),
                ("REPORT_FORMAT", format),
                ("READ_REPORTS_MAX_SECONDS", "600"),
            ]),
            &function_arn(&world.account_id),
            &event,
            Duration::from_secs(900),
            &log,
        )
    }

    /// MiB a second of the reading: the difference of sizes over the difference of times,
    /// against the small report's (the invocation's other calls and the cold start cancel).
    fn rate(small: &Read, large: &Read) -> f64 {
        (large.size_mib - small.size_mib) / (large.took - small.took)
    }

    pub async fn rows() {
        let max_mib = std::env::var("BENCH_READ_MAX_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(MAX_MIB);
        let memory = lambda_cpu::memory_mb();
        let load_before = lambda_cpu::load();
        let mut lines = Vec::new();
        let mut details = Vec::new();
        for format in ["JSON", "CSV"] {
            let small = read(format, 1_000).await;
            let mid = read(format, 100_000).await;
            let limit = read(format, rows_under(format, max_mib)).await;
            let (r_mid, r_limit) = (rate(&small, &mid), rate(&small, &limit));
            let per_cpu = limit.size_mib / limit.cpu;
            let fits = limit.outcome == "read"
                && limit.took < MAX_SECONDS
                && limit.rss.max(mid.rss) < MEMORY_MIB;
            lines.push(format!(
                "| L6. Reading a report at {memory} MB's CPU, {format} | {r_limit:.1} MiB/s ({r_mid:.1} MiB/s at 100,000 certificates); a report of {:.0} MiB (just under READ_REPORTS_MAX_MIB {max_mib}) read in {:.1} s, peak RSS {:.1} MiB | the size limit read within READ_REPORTS_MAX_SECONDS ({MAX_SECONDS:.0} s) and {MEMORY_MIB:.0} MiB | {} |",
                limit.size_mib,
                limit.took,
                limit.rss,
                if fits { "yes" } else { "**no**" },
            ));
            for r in [&small, &mid, &limit] {
                details.push(format!(
                    "{} {} certificates ({:.1} MiB): {:.2} s, peak RSS {:.1} MiB, CPU {:.2} s, {}",
                    r.format, r.rows, r.size_mib, r.took, r.rss, r.cpu, r.outcome
                ));
            }
            details.push(format!(
                "{format}: {per_cpu:.1} MiB per CPU-second at the limit's size (so about {:.1} MiB/s at 128 MB, {:.1} at 256 MB, {:.1} at 512 MB if the reading stays CPU-bound: scaled, not measured)",
                per_cpu * lambda_cpu::vcpu(128),
                per_cpu * lambda_cpu::vcpu(256),
                per_cpu * lambda_cpu::vcpu(512),
            ));
        }
        let md = format!(
            "Figures of one run of `scripts/bench-reports --lambda-cpu` on {} (release build, {memory} MB's CPU: {:.4} vCPU by `scripts/lambda-cpu`; machine {load_before} at the start, {} at the end).\n\n| Benchmark | Measured | Target | Met |\n|---|---|---|---|\n{}\n\n- **L6. Reading a report at {memory} MB's CPU**: per report, one cold invocation of the release binary following up a SUCCESS report and reading it from the local stack's S3 (Describe, HeadObject, the ledger's Query, GetObject and the parse, the ledger write), READ_REPORTS_MAX_SECONDS=600 so the time is the reading's own; the rate is (size − the 1,000-certificate report's) / (time − its time). {}.\n",
            lambda_cpu::today(),
            lambda_cpu::vcpu(memory),
            lambda_cpu::load(),
            lines.join("\n"),
            details.join("; "),
        );
        print!("{md}");
        let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "BENCHMARKS.md".into());
        lambda_cpu::write_block(&out, BEGIN, END, &md);
        println!("wrote {out}");
    }
}
