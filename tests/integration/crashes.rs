//! Reliability suite, crashes: the real binary, killed with SIGKILL at a random moment of a
//! run, then a run to completion after the dead run's lease. Afterwards every CA was served
//! exactly once in its window, no CA is locked, every report the ledger names exists (accepted
//! by the service, its object in the bucket), and every report the dead run requested without
//! recording it was found in the bucket and recorded as `recovered`.
//!
//! The binary runs as a process under a small Lambda Runtime API written here, which hands out
//! one invocation with the deadline a test needs (cargo-lambda's emulator fixes it at 10
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

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use common::{World, attr};
use serde_json::{Value, json};

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
const FUNCTION_ARN_NAME: &str = "audit";
const SCHEDULED_EVENT: &str = include_str!("../../events/scheduled.json");

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

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// --- a minimal Lambda Runtime API ---------------------------------------------------------------

/// The one invocation a Runtime API hands out.
struct Event {
    request_id: String,
    body: String,
    /// The deadline is the instant of hand-out plus this.
    timeout: Duration,
    function_arn: String,
}

#[derive(Default)]
struct ApiState {
    /// When the invocation was handed out, and the deadline given (epoch ms).
    handed_out: Option<(Instant, u64)>,
    /// `("response" | "error", body)` as the function posted it.
    answer: Option<(String, String)>,
    init_error: Option<String>,
    /// Requests the API did not know, for the failure message.
    unknown: Vec<String>,
}

/// Lambda's Runtime API for one invocation, as lambda_runtime 1.x's client speaks it:
/// `GET /2018-06-01/runtime/invocation/next` answers the event with
/// `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms` (epoch milliseconds) and
/// `Lambda-Runtime-Invoked-Function-Arn`; later `next` calls wait, as Lambda's do, until the
/// API stops; `.../invocation/<id>/response` and `/error` and `/init/error` are recorded.
struct RuntimeApi {
    port: u16,
    state: Arc<Mutex<ApiState>>,
    stop: Arc<AtomicBool>,
}

struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
}

impl RuntimeApi {
    fn start(event: Event) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Runtime API");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(ApiState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let event = Arc::new(event);
        {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (state, stop, event) = (state.clone(), stop.clone(), event.clone());
                            std::thread::spawn(move || serve(stream, &state, &stop, &event));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
        Self { port, state, stop }
    }

    /// `AWS_LAMBDA_RUNTIME_API` as Lambda sets it: `host:port`.
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn handed_out(&self) -> Option<(Instant, u64)> {
        self.state.lock().unwrap().handed_out
    }

    fn answer(&self) -> Option<(String, String)> {
        self.state.lock().unwrap().answer.clone()
    }

    fn init_error(&self) -> Option<String> {
        self.state.lock().unwrap().init_error.clone()
    }

    fn unknown(&self) -> Vec<String> {
        self.state.lock().unwrap().unknown.clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One connection, request after request (keep-alive), until the client closes it.
fn serve(stream: TcpStream, state: &Mutex<ApiState>, stop: &AtomicBool, event: &Event) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while let Ok(Some(request)) = read_request(&mut reader) {
        let path = request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let invocation = "/2018-06-01/runtime/invocation/";
        let written = if request.method == "GET" && path == format!("{invocation}next") {
            let deadline = {
                let mut s = state.lock().unwrap();
                if s.handed_out.is_some() {
                    None
                } else {
                    let deadline = epoch_ms() + event.timeout.as_millis() as u64;
                    s.handed_out = Some((Instant::now(), deadline));
                    Some(deadline)
                }
            };
            match deadline {
                Some(deadline) => {
                    let headers = [
                        ("Lambda-Runtime-Aws-Request-Id", event.request_id.clone()),
                        ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                        (
                            "Lambda-Runtime-Invoked-Function-Arn",
                            event.function_arn.clone(),
                        ),
                        (
                            "Lambda-Runtime-Trace-Id",
                            "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
                        ),
                    ];
                    respond(&mut writer, 200, &headers, event.body.as_bytes())
                }
                None => {
                    // No second event: wait as Lambda does, until the API stops.
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
            }
        } else if request.method == "POST" && path.starts_with(invocation) {
            let rest = &path[invocation.len()..];
            let body = String::from_utf8_lossy(&request.body).into_owned();
            let kind = match rest.rsplit_once('/') {
                Some((id, kind))
                    if id == event.request_id && (kind == "response" || kind == "error") =>
                {
                    Some(kind)
                }
                _ => None,
            };
            match kind {
                Some(kind) => {
                    state.lock().unwrap().answer = Some((kind.to_owned(), body));
                    respond(&mut writer, 202, &[], br#"{"status":"OK"}"#)
                }
                None => {
                    state.lock().unwrap().unknown.push(format!("POST {path}"));
                    respond(
                        &mut writer,
                        404,
                        &[],
                        br#"{"errorMessage":"unknown request id"}"#,
                    )
                }
            }
        } else if request.method == "POST" && path == "/2018-06-01/runtime/init/error" {
            state.lock().unwrap().init_error =
                Some(String::from_utf8_lossy(&request.body).into_owned());
            respond(&mut writer, 202, &[], br#"{"status":"OK"}"#)
        } else {
            state
                .lock()
                .unwrap()
                .unknown
                .push(format!("{} {path}", request.method));
            respond(&mut writer, 404, &[], br#"{"errorMessage":"not found"}"#)
        };
        if written.is_err() {
            return;
        }
    }
}

fn respond(
    w: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        _ => "Not Found",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// One HTTP/1.1 request; `None` when the client closed the connection. Bodies by
/// Content-Length or chunked.
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<HttpRequest>> {
    let mut line = String::new();
    // Blank lines between requests are allowed.
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if r.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                content_length = v.parse().unwrap_or(0);
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size)? == 0 {
                return Ok(None);
            }
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            r.read_line(&mut crlf)?;
        }
    } else if content_length > 0 {
        body = vec![0; content_length];
        r.read_exact(&mut body)?;
    }
    Ok(Some(HttpRequest { method, path, body }))
}

// --- the function as a process ------------------------------------------------------------------

/// The release binary of the function (cargo builds it for integration tests), started with
/// only the environment Lambda would give it; killed with SIGKILL when dropped.
struct Function {
    child: Child,
    log: PathBuf,
}

impl Function {
    fn start(world: &World, api: &RuntimeApi, log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("function log");
        let env = world.function_env(&[]);
        let child = Command::new(env!("CARGO_BIN_EXE_pca-audit-scheduler"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_ARN_NAME)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the function binary");
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// Whether the process ended by itself, and how.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL (`Child::kill` on Unix), then reaps the process.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- one episode --------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Figures {
    episode: usize,
    seed: u64,
    slow_create_ms: u64,
    /// Creates the slow fault held back (it must have applied in a slow episode).
    slow_creates: usize,
    /// Drawn kill moment, and when the kill actually came, after the hand-out.
    kill_planned_ms: u64,
    kill_actual_ms: u64,
    /// Creates the service accepted before the run after the lease.
    killed_creates: usize,
    /// Of those, recorded in the ledger by the killed run.
    killed_recorded: usize,
    /// Accepted but not recorded: the reports only the bucket knows.
    orphans: usize,
    /// `recovered` outcomes of the run after the lease.
    recovered: usize,
    /// CAs the killed run left claimed (leases that had to run out).
    leases_left_by_kill: usize,
    final_requested: usize,
    final_skipped: usize,
    served_once: usize,
    leases_left: usize,
    orphan_marks_left: usize,
    violations: Vec<String>,
    wall: Duration,
}

fn s_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    attr(item, name).map(str::to_owned)
}

fn epoch_of(rfc3339: &str) -> Option<u64> {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

fn control_calls(world: &World) -> Vec<Value> {
    common::control(
        "GET",
        &format!("/audit-calls?account_id={}", world.account_id),
        None,
    )["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn episode(episode: usize, seed: u64, log_dir: PathBuf) -> Figures {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut f = Figures {
        episode,
        seed,
        slow_create_ms: if episode % 2 == 1 { SLOW_CREATE_MS } else { 0 },
        kill_planned_ms: rng.between(KILL_FROM_MS, KILL_TO_MS),
        ..Figures::default()
    };
    let tag = format!("episode {episode} (seed {seed})");
    std::fs::create_dir_all(&log_dir).unwrap();
    macro_rules! violation {
        ($($t:tt)*) => {{
            let message = format!("{tag}: {}", format!($($t)*));
            eprintln!("VIOLATION {message}");
            f.violations.push(message);
        }};
    }

    let world = World::new().await;
    world.fast();
    let arns = world.seeded_arns(&[("ACTIVE", CAS)]);
    let function_arn = format!(
        "arn:aws:lambda:{}:{}:function:{FUNCTION_ARN_NAME}",
        common::REGION,
        world.account_id
    );
    let fault = (f.slow_create_ms > 0).then(|| {
        let rule = common::control(
            "POST",
            "/faults",
            Some(json!({
                "service": "acm-pca",
                "operation": "CreateCertificateAuthorityAuditReport",
                "account_id": world.account_id,
                "kind": "slow",
                "delay_ms": f.slow_create_ms,
                "rate": 1.0,
            })),
        );
        rule["id"].as_str().expect("fault id").to_owned()
    });

    // The run that dies.
    let killed_id = uuid::Uuid::new_v4().to_string();
    let api = RuntimeApi::start(Event {
        request_id: killed_id.clone(),
        body: SCHEDULED_EVENT.to_owned(),
        timeout: KILLED_TIMEOUT,
        function_arn: function_arn.clone(),
    });
    let mut function = Function::start(&world, &api, &log_dir.join("killed.log"));
    let Some((handed_at, killed_deadline_ms)) =
        wait_for(Duration::from_secs(60), || api.handed_out()).await
    else {
        violation!(
            "the function never asked for its invocation (exit {:?}, init error {:?}); log:\n{}",
            function.exited(),
            api.init_error(),
            function.log_tail()
        );
        f.wall = started.elapsed();
        return f;
    };
    tokio::time::sleep_until((handed_at + Duration::from_millis(f.kill_planned_ms)).into()).await;
    let alive = function.exited().is_none();
    function.kill();
    f.kill_actual_ms = handed_at.elapsed().as_millis() as u64;
    if !alive {
        violation!(
            "the function had ended by itself before the kill; log:\n{}",
            function.log_tail()
        );
    }
    if let Some((kind, body)) = api.answer() {
        violation!("the killed run had already answered ({kind}) before the kill: {body}");
    }
    drop(api);
    if let Some(id) = &fault {
        let rules = common::control("GET", "/faults", None);
        f.slow_creates = rules["faults"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["id"] == id.as_str()))
            .and_then(|r| r["injected"].as_u64())
            .unwrap_or(0) as usize;
        common::control("DELETE", &format!("/faults/{id}"), None);
    }

    // What the dead run left: its leases end with its invocation (+1 s, whole seconds).
    let deadline_s = killed_deadline_ms / 1000;
    let mut latest_lease = 0u64;
    for arn in &arns {
        let Some(item) = world.window_item(arn).await else {
            continue;
        };
        let Some(run) = s_attr(&item, "lease_run_id") else {
            continue;
        };
        f.leases_left_by_kill += 1;
        if run != killed_id {
            violation!("{arn} is leased to run {run}, which is not the killed run {killed_id}");
        }
        let expires = s_attr(&item, "lease_expires_at")
            .as_deref()
            .and_then(epoch_of);
        match expires {
            Some(e) if e >= deadline_s && e <= deadline_s + 1 => latest_lease = latest_lease.max(e),
            other => violation!(
                "{arn}: the killed run's lease expires at {other:?} (epoch s), not within a second \
                 after its invocation's deadline {deadline_s}: a crashed run must hold a CA until, \
                 and no longer than, its deadline"
            ),
        }
    }
    // The lease is live while `lease_expires_at >= now` (whole seconds): wait past it.
    let free_at_ms = (killed_deadline_ms + 1_500).max((latest_lease + 1) * 1000 + 300);
    let wait = free_at_ms.saturating_sub(epoch_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;

    // What the service accepted from the dead run, and what of it the ledger knows.
    let calls_before = control_calls(&world);
    let mut accepted_before: BTreeMap<String, String> = BTreeMap::new(); // report id -> CA
    for c in &calls_before {
        if c["outcome"] == "Accepted" {
            accepted_before.insert(
                c["report_id"].as_str().unwrap_or_default().to_owned(),
                c["ca_arn"].as_str().unwrap_or_default().to_owned(),
            );
        } else {
            violation!("create refused during the killed run: {c}");
        }
    }
    f.killed_creates = accepted_before.len();
    if f.slow_create_ms > 0 && f.killed_creates > 0 && f.slow_creates == 0 {
        violation!("the slow-create fault never applied: this episode did not test what it says");
    }
    let mut recorded_by_killed: BTreeSet<String> = BTreeSet::new();
    for arn in &arns {
        for h in world.history(arn).await {
            if attr(&h, "run_id") == Some(killed_id.as_str()) {
                recorded_by_killed.insert(s_attr(&h, "report_id").unwrap_or_default());
            }
        }
    }
    f.killed_recorded = recorded_by_killed.len();
    let orphans: BTreeMap<String, String> = accepted_before
        .iter()
        .filter(|(id, _)| !recorded_by_killed.contains(*id))
        .map(|(id, arn)| (id.clone(), arn.clone()))
        .collect();
    f.orphans = orphans.len();
    for id in &recorded_by_killed {
        if !accepted_before.contains_key(id) {
            violation!("the killed run recorded report {id}, which the service never accepted");
        }
    }

    // The run after the lease, to completion.
    let final_id = uuid::Uuid::new_v4().to_string();
    let api = RuntimeApi::start(Event {
        request_id: final_id.clone(),
        body: SCHEDULED_EVENT.to_owned(),
        timeout: FINAL_TIMEOUT,
        function_arn,
    });
    let mut function = Function::start(&world, &api, &log_dir.join("final.log"));
    let answer = wait_for(FINAL_TIMEOUT + Duration::from_secs(30), || {
        api.answer()
            .or_else(|| api.init_error().map(|e| ("init error".to_owned(), e)))
    })
    .await;
    let exited = function.exited();
    function.kill();
    if !api.unknown().is_empty() {
        violation!("unexpected Runtime API requests: {:?}", api.unknown());
    }
    let summary: Value = match answer {
        Some((kind, body)) if kind == "response" => {
            serde_json::from_str(&body).unwrap_or_else(|e| {
                violation!("the final run's answer is not JSON ({e}): {body}");
                Value::Null
            })
        }
        Some((kind, body)) => {
            violation!(
                "the final run answered {kind}: {body}; log:\n{}",
                function.log_tail()
            );
            Value::Null
        }
        None => {
            violation!(
                "the final run did not answer within {:?} (exit {exited:?}); log:\n{}",
                FINAL_TIMEOUT,
                function.log_tail()
            );
            Value::Null
        }
    };

    // Every CA served exactly once in its window: one accepted create each, none refused.
    let calls = control_calls(&world);
    let mut accepted: HashMap<String, Vec<String>> = HashMap::new(); // CA -> report ids
    for c in &calls {
        let arn = c["ca_arn"].as_str().unwrap_or_default().to_owned();
        if c["outcome"] == "Accepted" {
            accepted
                .entry(arn)
                .or_default()
                .push(c["report_id"].as_str().unwrap_or_default().to_owned());
        } else {
            violation!(
                "{arn}: a create was refused ({}): the CA was requested twice in its window",
                c["outcome"]
            );
        }
    }
    for arn in &arns {
        match accepted.get(arn).map(Vec::len).unwrap_or(0) {
            1 => f.served_once += 1,
            n => violation!("{arn} has {n} accepted creates, not exactly one"),
        }
    }

    // The final run's answer, CA by CA.
    let outcomes: HashMap<String, Value> = summary["certificateAuthorities"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o["certificateAuthorityArn"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        o.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let recovered_ids: BTreeSet<String> = outcomes
        .values()
        .filter(|o| o["outcome"] == "recovered")
        .map(|o| o["reportId"].as_str().unwrap_or_default().to_owned())
        .collect();
    f.recovered = recovered_ids.len();
    f.final_requested = outcomes
        .values()
        .filter(|o| o["outcome"] == "requested")
        .count();
    f.final_skipped = outcomes
        .values()
        .filter(|o| o["outcome"] == "skipped")
        .count();
    if !summary.is_null() {
        if summary["counts"]["recovered"].as_u64() != Some(f.recovered as u64) {
            violation!(
                "counts.recovered {} but {} recovered outcomes",
                summary["counts"]["recovered"],
                f.recovered
            );
        }
        if summary["counts"]["failed"].as_u64() != Some(0) {
            violation!("the final run failed CAs: {}", summary["counts"]);
        }
        let orphan_ids: BTreeSet<String> = orphans.keys().cloned().collect();
        if recovered_ids != orphan_ids {
            violation!(
                "the final run recovered {recovered_ids:?}, but the reports the killed run \
                 requested and did not record are {orphan_ids:?}"
            );
        }
        for arn in &arns {
            let Some(o) = outcomes.get(arn) else {
                violation!("{arn} is missing from the final run's answer");
                continue;
            };
            let by_killed: Vec<&String> = accepted_before
                .iter()
                .filter(|(_, a)| *a == arn)
                .map(|(id, _)| id)
                .collect();
            let expected = match by_killed.first() {
                Some(id) if recorded_by_killed.contains(*id) => "skipped",
                Some(_) => "recovered",
                None => "requested",
            };
            if o["outcome"] != expected {
                violation!("{arn}: the final run's outcome is {o}, expected {expected}");
            } else if expected == "skipped" && o["reason"] != "insideWindow" {
                violation!("{arn}: skipped for {}, expected insideWindow", o["reason"]);
            }
        }
    }

    // The ledger: no lease, no orphan mark, one report per CA and every report real.
    let objects: HashMap<String, i64> = world.objects("audit-report/").await.into_iter().collect();
    if objects.len() != CAS {
        violation!(
            "{} report objects in the bucket for {CAS} CAs",
            objects.len()
        );
    }
    let report_exists = |id: &str, key: Option<&str>| -> Result<(), String> {
        if !accepted.values().flatten().any(|a| a == id) {
            return Err(format!("report {id} was never accepted by the service"));
        }
        let key = key.ok_or_else(|| format!("report {id} has no S3 key"))?;
        if !key.contains(id) {
            return Err(format!(
                "report {id} recorded with key {key} of another report"
            ));
        }
        match objects.get(key) {
            Some(size) if *size > 0 => Ok(()),
            Some(_) => Err(format!("report {id}: s3://{}/{key} is empty", world.bucket)),
            None => Err(format!(
                "report {id}: s3://{}/{key} is not in the bucket",
                world.bucket
            )),
        }
    };
    for arn in &arns {
        let served: Option<&String> = accepted.get(arn).and_then(|ids| ids.first());
        let Some(window) = world.window_item(arn).await else {
            violation!("{arn} has no window item");
            continue;
        };
        if let Some(run) = s_attr(&window, "lease_run_id") {
            f.leases_left += 1;
            violation!(
                "{arn} is still locked by run {run} until {:?}",
                attr(&window, "lease_expires_at")
            );
        }
        if let Some(since) = s_attr(&window, "orphan_since") {
            f.orphan_marks_left += 1;
            violation!("{arn} still has orphan_since {since}");
        }
        match s_attr(&window, "last_report_id") {
            None => violation!("{arn}: the window names no report"),
            Some(id) => {
                if let Err(e) = report_exists(&id, attr(&window, "last_s3_key")) {
                    violation!("{arn}: window: {e}");
                }
                if Some(&id) != served {
                    violation!("{arn}: the window names {id}, the service accepted {served:?}");
                }
                if attr(&window, "last_report_status") != Some("SUCCESS") {
                    violation!(
                        "{arn}: the window's report {id} is {:?}, not SUCCESS after a run to completion",
                        attr(&window, "last_report_status")
                    );
                }
            }
        }
        let history = world.history(arn).await;
        if history.len() != 1 {
            violation!("{arn} has {} history items, not one", history.len());
        }
        for h in &history {
            let id = s_attr(h, "report_id").unwrap_or_default();
            if let Err(e) = report_exists(&id, attr(h, "s3_key")) {
                violation!("{arn}: history {:?}: {e}", attr(h, "record"));
            }
            let recovered = matches!(h.get("recovered"), Some(AttributeValue::Bool(true)));
            if recovered != orphans.contains_key(&id) {
                violation!(
                    "{arn}: history item of {id} says recovered={recovered}, but it {} an orphan of the killed run",
                    if orphans.contains_key(&id) {
                        "is"
                    } else {
                        "is not"
                    }
                );
            }
            let run = attr(h, "run_id").unwrap_or_default();
            let expected_run = if recorded_by_killed.contains(&id) {
                &killed_id
            } else {
                &final_id
            };
            if run != expected_run {
                violation!(
                    "{arn}: history item of {id} written by run {run}, expected {expected_run}"
                );
            }
        }
    }
    f.wall = started.elapsed();
    f
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
        "`tests/integration/crashes.rs`: {} episodes ({} side by side), base seed {base_seed} \
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
    common::control_url();
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
