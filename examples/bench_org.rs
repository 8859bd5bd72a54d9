//! The organisation round of BENCHMARKS.md (run by `scripts/bench-org`, never by the tests).
//!
//! An organisation of the local stack (the world's account its management account, the rest
//! made by Organizations' CreateAccount, each with the member role), AUDIT_ACCOUNTS=ORGANIZATION
//! over BENCH_ORG_REGIONS regions, BENCH_ORG_CAS active CAs in each account-region, at the
//! emulator's AWS quotas (one create a second per account and region) with production pacing.
//! One scheduled invocation fans the round out to the stack's SQS queue; BENCH_ORG_CONSUMERS
//! consumers each behave as one concurrent invocation of Lambda's event source mapping:
//! ReceiveMessage up to BENCH_ORG_BATCH records, invoke the function with the SQS event, delete
//! the records it did not report as batch item failures. Every invocation (the scheduled one
//! and each consumer's) goes to the release binary, a cold process of its own under its own
//! cargo-lambda runtime emulator, started through BENCH_FUNCTION (scripts/bench-org points it
//! at the binary under scripts/lambda-cpu: a 128 MB function's CPU share). Calls are counted
//! where they arrive, at the stack.
//!
//! Settings: BENCH_FUNCTION, BENCH_CARGO_LAMBDA, BENCH_OUT (the markdown written between the
//! markers of its section), BENCH_ORG_ACCOUNTS (250), BENCH_ORG_REGIONS (4), BENCH_ORG_CAS
//! (2), BENCH_ORG_CONSUMERS (4), BENCH_ORG_BATCH (10), BENCH_ORG_CPU (what the function's CPU
//! was, for the text).

#[allow(dead_code)]
#[path = "support/function.rs"]
mod function;
#[path = "support/org_round.rs"]
mod org_round;
#[path = "support/settings.rs"]
mod settings;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use function::Function;
use futures::StreamExt;
use org_round::{Figures, Invocation, Ledger};
use serde_json::{Value, json};
use settings::env;
use support::{Member, World};

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The organisation: the world's account and `accounts - 1` made by CreateAccount, each with
/// the member role (the management account's own, too: the function, outside Lambda, does not
/// know its home account and enters every account through the role).
async fn organisation(world: &World, accounts: usize) -> Vec<String> {
    let org = support::Organization::new(world).await;
    let made: Vec<String> = futures::stream::iter(1..accounts)
        .map(|i| {
            let client = org.client.clone();
            async move {
                let out = client
                    .create_account()
                    .account_name(format!("member-{i}"))
                    .email(format!("member-{i}@example.com"))
                    .send()
                    .await
                    .expect("CreateAccount");
                out.create_account_status.unwrap().account_id.unwrap()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut all = vec![world.account_id.clone()];
    all.extend(made);
    futures::stream::iter(all.clone())
        .map(|id| {
            let central = world.account_id.clone();
            async move { Member::existing(&id, &central).await }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    all
}

/// `cas` active CAs in each account-region; their ARNs.
async fn seed(accounts: &[String], regions: &[&str], cas: usize) -> Vec<String> {
    let jobs: Vec<(String, String)> = accounts
        .iter()
        .flat_map(|a| regions.iter().map(move |r| (a.clone(), (*r).to_owned())))
        .collect();
    futures::stream::iter(jobs)
        .map(|(a, r)| {
            tokio::task::spawn_blocking(move || {
                support::seed_account(&a, &r, &[support::seed_group("ACTIVE", cas)])
            })
        })
        .buffer_unordered(8)
        .map(|arns| arns.expect("seed"))
        .concat()
        .await
}

/// One consumer: an invocation of the event source mapping at a time, until every item of the
/// round has been answered for.
async fn consume(
    sqs: aws_sdk_sqs::Client,
    queue: (String, String),
    function: Arc<Function>,
    batch: i32,
    answered: Arc<AtomicUsize>,
    expected: usize,
) -> Vec<Invocation> {
    let (url, arn) = queue;
    let mut invocations = Vec::new();
    while answered.load(Ordering::SeqCst) < expected {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(batch)
            .wait_time_seconds(2)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage");
        let messages = out.messages().to_vec();
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| org_round::record(m, &arn))
            .collect();
        let event = json!({ "Records": records });
        let started = Instant::now();
        let f = function.clone();
        let (answer, took) = tokio::task::spawn_blocking(move || f.invoke(&event))
            .await
            .expect("invoke");
        let failed: Vec<String> = answer["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("not a batch response: {answer}"))
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
            .collect();
        let done: Vec<_> = messages
            .iter()
            .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
            .enumerate()
            .map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap()
            })
            .collect();
        if !done.is_empty() {
            (sqs.delete_message_batch().queue_url(&url))
                .set_entries(Some(done))
                .send()
                .await
                .expect("DeleteMessageBatch");
        }
        answered.fetch_add(messages.len(), Ordering::SeqCst);
        invocations.push(Invocation {
            started,
            answered: started + took,
            records: messages.len(),
            failed,
        });
    }
    invocations
}

#[tokio::main]
async fn main() {
    let accounts = number("BENCH_ORG_ACCOUNTS", 250);
    let regions = &REGIONS[..number("BENCH_ORG_REGIONS", 4).clamp(1, 4)];
    let cas = number("BENCH_ORG_CAS", 2);
    let consumers = number("BENCH_ORG_CONSUMERS", 4);
    let batch = number("BENCH_ORG_BATCH", 10);
    let items = accounts * regions.len();
    let setup = Instant::now();
    let world = World::new().await;
    let members = organisation(&world, accounts).await;
    world
        .allow_reports_from(&members.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let arns = seed(&members, regions, cas).await;
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let queue = (sqs.create_queue().queue_name("fan-out"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "5400",
        )
        .send()
        .await
        .expect("queue")
        .queue_url
        .unwrap();
    let queue_arn = format!("arn:aws:sqs:us-east-1:{}:fan-out", world.account_id);
    println!(
        "== {} accounts × {} regions × {cas} CAs ({} CAs) set up in {:.0} s",
        members.len(),
        regions.len(),
        arns.len(),
        setup.elapsed().as_secs_f64()
    );

    let function_env = org_round::function_env(&world, regions, &queue);
    let logs = std::path::PathBuf::from("target/bench/org");
    std::fs::create_dir_all(&logs).unwrap();
    let functions: Vec<Arc<Function>> = (0..=consumers)
        .map(|i| {
            let mut f = Function::emulator();
            f.start(&function_env, &logs.join(format!("function-{i}.log")));
            Arc::new(f)
        })
        .collect();
    // Both the emulators and the processes are up before the round starts.
    std::thread::sleep(Duration::from_secs(2));
    support::control("DELETE", "/requests", None);

    let started = Instant::now();
    let answered = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = functions[1..]
        .iter()
        .map(|f| {
            tokio::spawn(consume(
                sqs.clone(),
                (queue.clone(), queue_arn.clone()),
                f.clone(),
                batch as i32,
                answered.clone(),
                items,
            ))
        })
        .collect();
    let scheduled: Value =
        serde_json::from_str(include_str!("../events/scheduled.json")).expect("sample");
    let round_function = functions[0].clone();
    let (round, round_took) =
        tokio::task::spawn_blocking(move || round_function.invoke(&scheduled))
            .await
            .unwrap();
    let mut invocations = Vec::new();
    for w in workers {
        invocations.extend(w.await.unwrap());
    }
    let calls = support::control("GET", "/requests", None);
    let ledger = Ledger::read(&world).await;
    let figures = Figures {
        accounts: members.len(),
        regions: regions.len(),
        cas_per_region: cas,
        consumers,
        batch,
        seeded: arns,
        creates: members
            .iter()
            .map(|a| (a.clone(), support::accepted_creates_of(a)))
            .collect::<HashMap<_, _>>(),
        round_answer: round,
        round_took,
        round_time: invocations
            .iter()
            .map(|i| i.answered - started)
            .max()
            .unwrap_or_default(),
        invocations,
        calls,
        ledger,
        log_bytes: org_round::log_bytes(&logs),
    };
    drop(functions);
    let text = figures.markdown(&std::env::var("BENCH_ORG_CPU").unwrap_or_default());
    println!("{text}");
    org_round::write_section(&env("BENCH_OUT"), &text);
}
