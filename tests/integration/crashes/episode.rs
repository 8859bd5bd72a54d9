//! One episode: a run killed at a random moment, then a run to completion after its lease,
//! and every invariant checked against the ledger, the bucket and the service's calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use super::function::Function;
use super::{
    CAS, FINAL_TIMEOUT, KILL_FROM_MS, KILL_TO_MS, KILLED_TIMEOUT, Rng, SCHEDULED_EVENT,
    SLOW_CREATE_MS,
};
use crate::support::runtime_api::{Event, RuntimeApi};
use crate::support::{
    World, attr, clear_fault, create_calls_of, epoch_ms, fault, function_arn, injected,
};

#[derive(Debug, Default, Clone)]
pub(super) struct Figures {
    pub(super) episode: usize,
    pub(super) seed: u64,
    pub(super) slow_create_ms: u64,
    /// Creates the slow fault held back (it must have applied in a slow episode).
    pub(super) slow_creates: usize,
    /// Drawn kill moment, and when the kill actually came, after the hand-out.
    pub(super) kill_planned_ms: u64,
    pub(super) kill_actual_ms: u64,
    /// Creates the service accepted before the run after the lease.
    pub(super) killed_creates: usize,
    /// Of those, recorded in the ledger by the killed run.
    pub(super) killed_recorded: usize,
    /// Accepted but not recorded: the reports only the bucket knows.
    pub(super) orphans: usize,
    /// `recovered` outcomes of the run after the lease.
    pub(super) recovered: usize,
    /// CAs the killed run left claimed (leases that had to run out).
    pub(super) leases_left_by_kill: usize,
    pub(super) final_requested: usize,
    pub(super) final_skipped: usize,
    pub(super) served_once: usize,
    pub(super) leases_left: usize,
    pub(super) orphan_marks_left: usize,
    pub(super) violations: Vec<String>,
    pub(super) wall: Duration,
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

pub(super) async fn episode(episode: usize, seed: u64, log_dir: PathBuf) -> Figures {
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
    let function_arn = function_arn(&world.account_id);
    let slow_fault = (f.slow_create_ms > 0).then(|| {
        fault(json!({
            "service": "acm-pca",
            "operation": "CreateCertificateAuthorityAuditReport",
            "account_id": world.account_id,
            "kind": "slow",
            "delay_ms": f.slow_create_ms,
            "rate": 1.0,
        }))
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
    if let Some(id) = &slow_fault {
        f.slow_creates = injected(id) as usize;
        clear_fault(id);
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
    let calls_before = create_calls_of(&world.account_id);
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
    let calls = create_calls_of(&world.account_id);
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
