//! The function as Lambda runs it at a memory size's CPU share, for the rows of BENCHMARKS.md's
//! "At Lambda's CPU share": its release binary (BENCH_FUNCTION), started cold under
//! `scripts/lambda-cpu` (a cgroup CPU quota of LAMBDA_MEMORY_MB/1769 of one vCPU, 128 MB
//! unless set), with only the environment Lambda would give it, under a Runtime API of its own
//! (`tests/support/runtime_api.rs`) that hands out one invocation with the deadline the bench
//! names: cargo-lambda's emulator fixes every deadline at 10 minutes, the template's is 900 s.
//! Measured: the invocation's time from hand-out to answer, the process's peak RSS (VmHWM) and
//! the CPU time it used. Also the marked blocks of BENCHMARKS.md these rows are written into.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::settings::env;
use crate::support::FUNCTION_NAME;
use crate::support::runtime_api::{Event, RuntimeApi};

/// The schedule's sample event (`events/scheduled.json`): a full run, as the benches hand it.
pub fn scheduled_event() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/events/scheduled.json"
    ))
    .expect("events/scheduled.json")
}

/// `target/bench/<name>.log`: where a bench keeps the function's log lines.
pub fn bench_log(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench")
        .join(format!("{name}.log"))
}

/// The function's memory size whose CPU share the runs get: LAMBDA_MEMORY_MB, 128 unless set
/// (the template's MemorySize).
pub fn memory_mb() -> u32 {
    std::env::var("LAMBDA_MEMORY_MB")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(128)
}

/// The CPU share of `memory` MB: one vCPU at 1,769 MB (Lambda developer guide, "Configure
/// Lambda function memory"), as `scripts/lambda-cpu` sets it.
pub fn vcpu(memory: u32) -> f64 {
    f64::from(memory * 100_000 / 1769) / 100_000.0
}

/// What one cold invocation came to.
pub struct Answered {
    /// `response` or `error` (the function's Diagnostic), as the function posted it.
    pub kind: String,
    pub body: String,
    /// From the invocation's hand-out to its answer (polled every 10 ms).
    pub took: Duration,
    /// The deadline the invocation was given, from its hand-out.
    pub deadline: Duration,
    /// VmHWM of the function process, MiB.
    pub peak_rss_mib: f64,
    /// User and system CPU time of the function process, seconds.
    pub cpu_secs: f64,
    /// The function's log (stdout and stderr).
    pub log: PathBuf,
    pub memory_mb: u32,
}

impl Answered {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// `invoke_at` at `memory_mb()`'s CPU.
pub fn invoke(
    env: &[(String, String)],
    function_arn: &str,
    body: &str,
    deadline: Duration,
    log: &Path,
) -> Answered {
    invoke_at(memory_mb(), env, function_arn, body, deadline, log)
}

/// Starts the binary cold under `scripts/lambda-cpu` at `memory` MB with `env` (a world's
/// `function_env`), hands it `body` as one invocation with `deadline`, and waits for its answer
/// (or gives up at the deadline plus a minute).
pub fn invoke_at(
    memory: u32,
    env: &[(String, String)],
    function_arn: &str,
    body: &str,
    deadline: Duration,
    log: &Path,
) -> Answered {
    let api = RuntimeApi::start(Event {
        request_id: uuid::Uuid::new_v4().to_string(),
        body: body.to_owned(),
        timeout: deadline,
        function_arn: function_arn.to_owned(),
    });
    std::fs::create_dir_all(log.parent().expect("a log directory")).expect("log directory");
    let file = std::fs::File::create(log).expect("function log");
    let binary = std::fs::canonicalize(env_path("BENCH_FUNCTION")).expect("BENCH_FUNCTION");
    let wrapper = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lambda-cpu"))
        .arg(&binary)
        .env_clear()
        // lambda-cpu is a shell script; Lambda gives a function a PATH too.
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LAMBDA_MEMORY_MB", memory.to_string())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.to_string())
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("start scripts/lambda-cpu");
    let mut process = Running {
        wrapper,
        pid: None,
        binary,
    };
    let give_up = Instant::now() + deadline + Duration::from_secs(60);
    let (kind, body, arrived) = loop {
        if process.pid.is_none() {
            process.pid = process.find();
        }
        if let Some((kind, body)) = api.answer() {
            break (kind, body, Instant::now());
        }
        if let Some(e) = api.init_error() {
            break ("init error".into(), e, Instant::now());
        }
        if Instant::now() > give_up || process.wrapper.try_wait().ok().flatten().is_some() {
            break ("no answer".into(), String::new(), Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let handed = api.handed_out().map_or(arrived, |(at, _)| at);
    let pid = process.pid.expect("the function process was seen");
    Answered {
        kind,
        body,
        took: arrived - handed,
        deadline,
        peak_rss_mib: status_kb(pid, "VmHWM:") / 1024.0,
        cpu_secs: cpu_secs(pid),
        log: log.to_owned(),
        memory_mb: memory,
    }
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(env(name))
}

/// scripts/lambda-cpu and, below it, the function (a grandchild: the script's child execs it).
struct Running {
    wrapper: Child,
    pid: Option<u32>,
    binary: PathBuf,
}

impl Running {
    /// The function's process: a descendant of the wrapper running the binary.
    fn find(&self) -> Option<u32> {
        let mut family = vec![self.wrapper.id()];
        let mut found = None;
        let entries: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, parent(pid)?)))
            .collect();
        // Parents before children: walk until no new descendant turns up.
        let mut grew = true;
        while grew {
            grew = false;
            for (pid, ppid) in &entries {
                if family.contains(ppid) && !family.contains(pid) {
                    family.push(*pid);
                    grew = true;
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
                    if exe.as_deref() == Some(self.binary.as_path()) {
                        found = Some(*pid);
                    }
                }
            }
        }
        found
    }
}

impl Drop for Running {
    /// The function is killed (SIGKILL); the script then removes its cgroup and ends.
    fn drop(&mut self) {
        if let Some(pid) = self.pid.or_else(|| self.find()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.wrapper.wait();
    }
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, then the parent's pid.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

fn status_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// utime + stime of /proc/PID/stat, in clock ticks of 1/100 s (Linux's USER_HZ).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // Fields 14 and 15 of the stat line: the third field after the name is 1-based field 3.
    let ticks = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / 100.0
}

/// The system's load averages (/proc/loadavg), for the heading of the figures.
pub fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let parts: Vec<&str> = text.split_whitespace().take(3).collect();
    format!("load average {} (1, 5, 15 min)", parts.join(", "))
}

/// Replaces what lies between `begin` and `end` in `path` with `md`; if the markers are
/// missing, appends them under "## At Lambda's CPU share".
pub fn write_block(path: &str, begin: &str, end: &str, md: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = match (text.find(begin), text.find(end)) {
        (Some(b), Some(e)) => format!("{}{begin}\n{md}{}", &text[..b], &text[e..]),
        _ => format!("{text}\n{begin}\n{md}{end}\n"),
    };
    std::fs::write(path, text).expect("write BENCHMARKS.md");
}

/// Today's date, for the figures' heading.
pub fn today() -> String {
    pca_audit_scheduler::domain::time::Timestamp::from_system_time(std::time::SystemTime::now())
        .to_string()[..10]
        .to_owned()
}
