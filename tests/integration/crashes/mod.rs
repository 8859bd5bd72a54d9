//! Reliability suite, crashes: the real binary, killed with SIGKILL at a random moment of a
//! run, then a run to completion after the dead run's lease. Afterwards every CA was served
//! exactly once in its window, no CA is locked, every report the ledger names exists (accepted
//! by the service, its object in the bucket), and every report the dead run requested without
//! recording it was found in the bucket and recorded as `recovered`.
//!
//! The binary runs as a process under a small Lambda Runtime API (`tests/support/runtime_api.rs`),
//! which hands out one invocation with the deadline a test needs (cargo-lambda's emulator fixes it at 10
//! minutes, so a dead run's lease would last that long).
//!
//! Settings (environment):
//! - `CRASH_EPISODES`: episodes (default 3; the long reliability command runs 20);
//! - `CRASH_PARALLEL`: episodes run side by side (default 3), each in its own account;
//! - `CRASH_SEED`: the base seed (printed by every run) to replay the same kill moments;
//! - `RELIABILITY_FIGURES`: a directory to write `crashes.md` into, the run's figures.
//!
//! Odd episodes make each create take 700 ms at the service (a `slow` fault of the local
//! stack on CreateCertificateAuthorityAuditReport, for that episode's account only), so that a
//! kill often lands between a create the service accepted and the ledger's record of it: the
//! case where the report exists and only the bucket knows its id. Even episodes run at the
//! stack's natural speed.

mod episode;
mod function;

use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{self, epoch_ms};
use episode::{Figures, episode};

/// CAs per episode: at the service's pace of one create a second, a run lasts ~12 s.
const CAS: usize = 12;
/// The killed run's invocation: long enough past the function's 10 s reserve that it is still
/// requesting CAs when the kill comes, short enough that its lease soon runs out.
const KILLED_TIMEOUT: Duration = Duration::from_secs(20);
/// The kill comes this long after the invocation is handed out.
const KILL_FROM_MS: u64 = 200;
const KILL_TO_MS: u64 = 8_000;
/// The run after the lease, to completion.
const FINAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a create takes at the service in the odd ("slow create") episodes.
const SLOW_CREATE_MS: u64 = 700;
const SCHEDULED_EVENT: &str = include_str!("../../../events/scheduled.json");

// --- a seeded random source ---------------------------------------------------------------------

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(splitmix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

// --- the test -----------------------------------------------------------------------------------

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

fn figures_markdown(all: &[Figures], base_seed: u64, parallel: usize, wall: Duration) -> String {
    let sum = |g: fn(&Figures) -> usize| all.iter().map(g).sum::<usize>();
    let violations: usize = all.iter().map(|f| f.violations.len()).sum();
    let kills: Vec<u64> = all.iter().map(|f| f.kill_actual_ms).collect();
    let mut md = String::new();
    md.push_str("## Crashes\n\n");
    md.push_str(&format!(
        "`tests/integration/crashes/`: {} episodes ({} side by side), base seed {base_seed} \
         (`CRASH_SEED={base_seed}` replays the kill moments). Each episode: {CAS} CAs in a fresh \
         account, the function binary (as cargo builds it for tests) under a Runtime API giving a {} s deadline, SIGKILL at a \
         random moment {KILL_FROM_MS}–{KILL_TO_MS} ms after the invocation is handed out, then, \
         once the lease has run out, a run to completion ({} s deadline). Odd episodes: each create \
         takes {SLOW_CREATE_MS} ms at the service, so that kills land between create and record.\n\n",
        all.len(),
        parallel,
        KILLED_TIMEOUT.as_secs(),
        FINAL_TIMEOUT.as_secs()
    ));
    md.push_str("| figure | value |\n|---|---|\n");
    let rows = [
        ("episodes", all.len().to_string()),
        (
            "kill moments (ms after hand-out)",
            format!(
                "{} (min {}, max {})",
                kills
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                kills.iter().min().unwrap_or(&0),
                kills.iter().max().unwrap_or(&0)
            ),
        ),
        (
            "creates accepted from killed runs",
            sum(|f| f.killed_creates).to_string(),
        ),
        (
            "of which recorded by the killed run",
            sum(|f| f.killed_recorded).to_string(),
        ),
        (
            "orphans (accepted, not recorded) / recovered by the next run",
            format!("{} / {}", sum(|f| f.orphans), sum(|f| f.recovered)),
        ),
        (
            "episodes with at least one orphan",
            all.iter().filter(|f| f.orphans > 0).count().to_string(),
        ),
        (
            "CAs left claimed by the kill",
            sum(|f| f.leases_left_by_kill).to_string(),
        ),
        (
            "CAs served exactly once",
            format!("{} of {}", sum(|f| f.served_once), all.len() * CAS),
        ),
        (
            "leases left after the final run",
            sum(|f| f.leases_left).to_string(),
        ),
        (
            "orphan marks left after the final run",
            sum(|f| f.orphan_marks_left).to_string(),
        ),
        ("invariant violations", violations.to_string()),
        ("wall time", format!("{:.1} s", wall.as_secs_f64())),
    ];
    for (k, v) in rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    md.push_str(
        "\n| episode | seed | slow create (ms) | killed at (ms) | creates by killed run | recorded by it | orphans | recovered | left claimed | final: requested / skipped | served once | violations | time (s) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in all {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {}/{CAS} | {} | {:.1} |\n",
            f.episode,
            f.seed,
            f.slow_create_ms,
            f.kill_actual_ms,
            f.killed_creates,
            f.killed_recorded,
            f.orphans,
            f.recovered,
            f.leases_left_by_kill,
            f.final_requested,
            f.final_skipped,
            f.served_once,
            f.violations.len(),
            f.wall.as_secs_f64()
        ));
    }
    md
}

#[test]
fn killed_runs_leave_every_ca_served_once_unlocked_and_every_report_real() {
    let episodes = env_number("CRASH_EPISODES", 3) as usize;
    let parallel = (env_number("CRASH_PARALLEL", 3) as usize).clamp(1, episodes.max(1));
    let base_seed = std::env::var("CRASH_SEED")
        .ok()
        .map(|v| v.trim().parse::<u64>().expect("CRASH_SEED is a number"))
        .unwrap_or_else(|| epoch_ms() ^ u64::from(std::process::id()) << 40);
    println!(
        "crashes: {episodes} episodes, {parallel} side by side, base seed {base_seed} (replay: CRASH_SEED={base_seed})"
    );
    // The stack's settings go into the environment once, before any thread reads it.
    support::control_url();
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("crashes-{base_seed}"));

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Figures>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (next, results, logs) = (next.clone(), results.clone(), logs.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= episodes {
                        break;
                    }
                    let seed = splitmix(base_seed.wrapping_add(i as u64));
                    let dir = logs.join(format!("episode-{i}"));
                    let figures = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        runtime.block_on(episode(i, seed, dir.clone()))
                    }))
                    .unwrap_or_else(|panic| {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Figures {
                            episode: i,
                            seed,
                            violations: vec![format!("episode {i} (seed {seed}): panicked: {message}")],
                            ..Figures::default()
                        }
                    });
                    println!(
                        "crashes: episode {i} seed {seed}: slow create {} ms ({} slowed), killed at {} ms; killed run: {} creates, {} recorded, {} left claimed; orphans {}, recovered {}; final run: {} requested, {} skipped; served once {}/{CAS}; {} violations; {:.1} s (logs {})",
                        figures.slow_create_ms,
                        figures.slow_creates,
                        figures.kill_actual_ms,
                        figures.killed_creates,
                        figures.killed_recorded,
                        figures.leases_left_by_kill,
                        figures.orphans,
                        figures.recovered,
                        figures.final_requested,
                        figures.final_skipped,
                        figures.served_once,
                        figures.violations.len(),
                        figures.wall.as_secs_f64(),
                        dir.display()
                    );
                    results.lock().unwrap().push(figures);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("episode worker");
    }
    let wall = started.elapsed();
    let mut all = std::mem::take(&mut *results.lock().unwrap());
    all.sort_by_key(|f| f.episode);

    let markdown = figures_markdown(&all, base_seed, parallel, wall);
    println!("\n{markdown}");
    if let Ok(dir) = std::env::var("RELIABILITY_FIGURES") {
        std::fs::create_dir_all(&dir).expect("RELIABILITY_FIGURES directory");
        std::fs::write(Path::new(&dir).join("crashes.md"), &markdown).expect("write crashes.md");
    }

    let violations: Vec<&String> = all.iter().flat_map(|f| &f.violations).collect();
    assert_eq!(all.len(), episodes, "every episode reported");
    assert!(
        violations.is_empty(),
        "{} invariant violations (base seed {base_seed}):\n{}",
        violations.len(),
        violations
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
