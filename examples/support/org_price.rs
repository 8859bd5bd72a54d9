//! The monthly price of 1,000 CAs audited at the template's default cadence (rate(1 hour)),
//! from what one round measured, at AWS's published on-demand prices in US East (N. Virginia),
//! free tiers left out.

use std::fmt::Write as _;

use super::Figures;

/// Rounds a month at rate(1 hour): AWS's pricing pages count a month as 730 hours.
const ROUNDS: f64 = 730.0;
const CAS: f64 = 1000.0;
/// The function's memory (template.yaml, MemorySize 128), in GB as Lambda bills it.
const GB: f64 = 128.0 / 1024.0;
/// Lambda (arm64, the template's architecture): per GB-second and per request.
/// https://aws.amazon.com/lambda/pricing/
const LAMBDA_GB_S: f64 = 0.000_013_333_4;
const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
/// SQS standard queue, per request (a request of up to 64 KB). https://aws.amazon.com/sqs/pricing/
const SQS_REQUEST: f64 = 0.40 / 1e6;
/// DynamoDB on-demand, Standard table class, per write and read request unit.
/// https://aws.amazon.com/dynamodb/pricing/on-demand/
const WRU: f64 = 0.625 / 1e6;
const RRU: f64 = 0.125 / 1e6;
/// S3 Standard: PUT, COPY, POST, LIST and GET, HEAD, per request. https://aws.amazon.com/s3/pricing/
const S3_PUT_LIST: f64 = 0.005 / 1000.0;
const S3_GET_HEAD: f64 = 0.0004 / 1000.0;
/// CloudWatch: Logs ingestion (Standard class) per GB, a custom metric per month.
/// https://aws.amazon.com/cloudwatch/pricing/
const LOGS_GB: f64 = 0.50;
const METRIC_MONTH: f64 = 0.30;
/// Lambda's own lines per invocation (platform.start, platform.report in JSON): assumed.
const PLATFORM_LOG_BYTES: f64 = 600.0;
/// The event source's polling of an idle queue: five long polls of 20 s at a time (Lambda
/// developer guide, "Configuring scaling behavior for SQS event source mappings": five
/// concurrent batches, no scaling down to two with maximum concurrency set). Assumed: 20 s.
const IDLE_POLLS_A_MONTH: f64 = 5.0 * 3.0 * 60.0 * ROUNDS;

fn kb(bytes: usize, unit: usize) -> f64 {
    bytes.div_ceil(unit).max(1) as f64
}

pub fn monthly(f: &Figures) -> String {
    let scale = CAS / f.seeded.len() as f64;
    let month = scale * ROUNDS;
    let invocations = f.invocations.len() as f64;
    let busy: f64 = (f.invocations.iter())
        .map(|i| (i.answered - i.started).as_secs_f64())
        .sum();
    let requests = (1.0 + invocations * scale) * ROUNDS;
    let gb_s = (f.round_took.as_secs_f64() + busy * scale) * GB * ROUNDS;
    let sqs = f.calls_of("sqs", "") as f64 * month;
    let (window, history) = (f.ledger.mean_size("window"), f.ledger.mean_size("report"));
    let writes = f.calls_of("dynamodb", "UpdateItem") as f64 * kb(window, 1024)
        + f.calls_of("dynamodb", "PutItem") as f64 * kb(history, 1024)
        // A transaction writes the window item and a history item, at twice the units.
        + f.calls_of("dynamodb", "TransactWriteItems") as f64
            * 2.0
            * (kb(window, 1024) + kb(history, 1024));
    // BatchGetItem reads each CA's window item once, strongly consistent.
    let reads = f.seeded.len() as f64 * kb(window, 4096)
        + (f.calls_of("dynamodb", "GetItem") + f.calls_of("dynamodb", "Query")) as f64;
    // The service's PutObject of each report, billed to the bucket's owner (estimated: the
    // stack writes the object inside moto, so it is not among the calls counted), and the
    // function's own calls (the local stack counts S3 by HTTP method).
    let put = f.seeded.len() as f64
        + (f.calls_of("s3", "PUT") + f.calls_of("s3", "POST") + f.calls_of("s3", "GET")) as f64;
    let head = f.calls_of("s3", "HEAD") as f64;
    let logs = (f.log_bytes.0 as f64 * scale + (1.0 + invocations * scale) * PLATFORM_LOG_BYTES)
        * ROUNDS
        / 1e9;
    let lines = [
        ("Lambda requests", requests, LAMBDA_REQUEST, "$0.20 per 1M"),
        (
            "Lambda GB-s (128 MB, arm64)",
            gb_s,
            LAMBDA_GB_S,
            "$0.0000133334 per GB-s",
        ),
        (
            "SQS requests of the rounds",
            sqs,
            SQS_REQUEST,
            "$0.40 per 1M",
        ),
        (
            "SQS idle polling by the event source (estimate)",
            IDLE_POLLS_A_MONTH,
            SQS_REQUEST,
            "$0.40 per 1M",
        ),
        (
            "DynamoDB write request units",
            writes * month,
            WRU,
            "$0.625 per 1M",
        ),
        (
            "DynamoDB read request units",
            reads * month,
            RRU,
            "$0.125 per 1M",
        ),
        (
            "S3 PUT (the service writes each report) and any GET (LIST price)",
            put * month,
            S3_PUT_LIST,
            "$0.005 per 1,000",
        ),
        (
            "S3 HEAD (HeadBucket per work item, HeadObject per report)",
            head * month,
            S3_GET_HEAD,
            "$0.0004 per 1,000",
        ),
        (
            "CloudWatch Logs ingested, GB",
            logs,
            LOGS_GB,
            "$0.50 per GB",
        ),
        (
            "CloudWatch custom metrics (EMF), fixed",
            f.log_bytes.1.len() as f64,
            METRIC_MONTH,
            "$0.30 per metric-month",
        ),
    ];
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Monthly price of 1,000 CAs at rate(1 hour) (730 rounds; this round's figures × {scale:.2}), \
         US East (N. Virginia) on-demand prices, free tiers left out. Mean item sizes: window \
         {window} B, history {history} B (DynamoDB's counting, names and values). Metrics: {}.\n",
        f.log_bytes.1.join(", ")
    );
    let _ = writeln!(t, "| Item | A month | Price | Cost |\n|---|---|---|---|");
    let mut total = 0.0;
    for (name, quantity, price, shown) in lines {
        total += quantity * price;
        let _ = writeln!(
            t,
            "| {name} | {quantity:.0} | {shown} | ${:.2} |",
            quantity * price
        );
    }
    let _ = writeln!(t, "| **Total** | | | **${total:.2}** |");
    t
}
