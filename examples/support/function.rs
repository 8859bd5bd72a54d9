//! The function as the benchmarks run it: its release binary (BENCH_FUNCTION), started cold
//! under a cargo-lambda runtime emulator of its own (BENCH_CARGO_LAMBDA), with only the
//! environment Lambda would give it. Shared by `bench.rs` and `bench_reports.rs`.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::settings::env;

/// The release binary, started cold under its own cargo-lambda runtime emulator.
pub struct Function {
    emulator: Child,
    process: Option<Child>,
    port: u16,
}

impl Function {
    pub fn emulator() -> Self {
        let port = free_port();
        let emulator = Command::new(env("BENCH_CARGO_LAMBDA"))
            .args(["lambda", "watch", "--only-lambda-apis", "--quiet"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cargo-lambda's runtime emulator");
        let ready = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                ready.elapsed() < Duration::from_secs(60),
                "the runtime emulator did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            emulator,
            process: None,
            port,
        }
    }

    /// Starts the binary with only the environment Lambda would give it (no profile, no
    /// inherited keys), logging where `log` says.
    pub fn start(&mut self, env: &[(String, String)], log: &Path) -> Instant {
        let log = std::fs::File::create(log).expect("function log");
        let started = Instant::now();
        let child = Command::new(crate::settings::env("BENCH_FUNCTION"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the function");
        self.process = Some(child);
        started
    }

    /// Sends an event and waits for the answer; returns it and the instant it arrived.
    pub fn invoke_async(&self, event: &Value) -> std::thread::JoinHandle<(Value, Instant)> {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
            self.port
        );
        let event = event.clone();
        std::thread::spawn(move || {
            let mut response = ureq::post(&url)
                .send_json(&event)
                .unwrap_or_else(|e| panic!("invoke: {e}"));
            let arrived = Instant::now();
            let text = response.body_mut().read_to_string().expect("answer");
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (value, arrived)
        })
    }

    pub fn invoke(&self, event: &Value) -> (Value, Duration) {
        let sent = Instant::now();
        let (answer, arrived) = self.invoke_async(event).join().expect("invoke thread");
        (answer, arrived - sent)
    }

    /// Peak resident memory of the function process so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let pid = self.process.as_ref().expect("started").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb / 1024.0
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        if let Some(p) = &mut self.process {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = self.emulator.kill();
        let _ = self.emulator.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
