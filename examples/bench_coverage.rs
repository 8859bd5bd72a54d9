//! The coverage rows of BENCHMARKS.md (run by `scripts/bench-coverage`, never by the tests).
//! Row 9: 1,000 CAs with a year of daily history in DynamoDB Local, and one coverage request
//! of the year, timed against the invocation's 900 s and with its calls counted at the local
//! stack. Row 9b: the same request with `verifyObjects`, each report a real object in a
//! versioned report bucket (moto's S3), scaled down (moto lists versions by scanning the whole
//! bucket, so at full scale it would measure moto); its calls are extrapolated to 1,000 CAs and
//! priced.
//!
//! With BENCH_LAMBDA_CPU=1 (`scripts/bench-coverage --lambda-cpu`) it measures instead the rows
//! of "At Lambda's CPU share": the function's release binary (BENCH_FUNCTION), cold, at a
//! 128 MB function's CPU (`scripts/lambda-cpu`) answers a month of 60 CAs whose every report
//! FAILED (row L10: the answer's size against Lambda's 6 MB) and the year of row 9 (row L9),
//! the latter also at each memory size of BENCH_LAMBDA_MEMORY_SIZES (MB, comma-separated;
//! "128" unless set), on the same seeded ledger. BENCH_HOURLY_CAS=N measures only row L9h
//! instead: a year of hourly reports (the template's default schedule) for N CAs.
//!
//! Settings: BENCH_OUT (the markdown written), BENCH_SCALE (divides row 9's CA count, to try the
//! bench quickly; its figures are then marked as scaled), BENCH_VERIFY_SCALE (divides row 9b's
//! CA count; default 20).
#![warn(clippy::too_many_lines)]

#[path = "support/lambda_cpu.rs"]
mod lambda_cpu;
#[path = "support/settings.rs"]
mod settings;
// The tests' helpers are held to their own limits, not to this file's.
#[path = "../tests/support/mod.rs"]
#[allow(clippy::too_many_lines)]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use futures::StreamExt;
use pca_audit_scheduler::aws::ledger::{ReportRecord, report_item};
use pca_audit_scheduler::domain::arn::CaArn;
use pca_audit_scheduler::domain::bucket::{
    ListedVersion, listed_change, report_prefix, versions_by_key,
};
use pca_audit_scheduler::domain::report::{
    ObjectPin, ReportFormat, ReportStatus, checksum_text, full_object_sha256,
};
use pca_audit_scheduler::domain::request::CoverageRequest;
use pca_audit_scheduler::domain::time::Timestamp;
use pca_audit_scheduler::evidence::{CoverageSummary, coverage};
use pca_audit_scheduler::services::SystemClock;
use pca_audit_scheduler::{invocation::Invocation, services::Services};
use serde_json::json;
use support::World;

const CAS: usize = 1000;
const DAYS: u64 = 365;
const DAY: u64 = 86_400;
const DEADLINE: Duration = Duration::from_secs(900);
/// BatchWriteItem's limit.
const BATCH: usize = 25;
/// The function's MemorySize in template.yaml.
const MEMORY_MIB: f64 = 128.0;
const BEGIN: &str = "<!-- figures of scripts/bench-coverage: begin -->";
const END: &str = "<!-- figures of scripts/bench-coverage: end -->";

/// Row 9b's default divisor of the CA count: 50 CAs × 365 objects. Moto copies every version
/// in the bucket for each ListObjectVersions call (moto 5.2 `list_object_versions`), so its
/// share of the time grows with the square of the CAs: about 1 s a call at 7,300 versions.
const VERIFY_SCALE: usize = 20;
/// PutObject calls in flight while row 9b's bucket is filled.
const PUTS_IN_FLIGHT: usize = 32;
/// Every TAMPER_EVERY-th CA of row 9b has one report overwritten and one deleted.
const TAMPER_EVERY: usize = 25;
/// A report of the hourly schedule's year, per CA (the interval's floor is 30 minutes; hourly
/// is the template's default schedule).
const HOURLY: usize = 8_760;
/// ListObjectVersions answers at most 1,000 versions a page (S3 API reference, `max-keys`).
const LIST_PAGE: usize = 1000;
/// S3 Standard request prices, us-east-1, in dollars per 1,000 requests: LIST with PUT, COPY
/// and POST; HEAD with GET and all other requests.
const LIST_PER_1000: f64 = 0.005;
const HEAD_PER_1000: f64 = 0.0004;
const PRICES: &str = "S3 Standard request prices, us-east-1, https://aws.amazon.com/s3/pricing/";

/// One row of the table and its line of details.
struct Measured {
    row: String,
    details: String,
}

/// What one coverage request took: its answer, time, calls and memory.
struct Timed {
    summary: CoverageSummary,
    secs: f64,
    calls: BTreeMap<String, u64>,
    peak: f64,
    floor: f64,
}

fn put(item: HashMap<String, AttributeValue>) -> WriteRequest {
    WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
        .build()
}

/// A SUCCESS report requested at `at` (first_day + day, half past midnight).
fn success(world: &World, id: String, key: String, at: u64, size: u64) -> ReportRecord {
    let at = Timestamp::from_epoch_seconds(at);
    ReportRecord {
        s3_key: key,
        report_id: id,
        s3_bucket: world.bucket.clone(),
        format: ReportFormat::Json,
        requested_at: at,
        next_eligible_at: at,
        status: ReportStatus::Success,
        size_bytes: Some(size),
        recovered: false,
        pin: None,
    }
}

fn history(arn: &CaArn, report: &ReportRecord) -> WriteRequest {
    let retention = Duration::from_secs((DAYS + 35) * DAY);
    put(report_item::history_item(arn, "bench", report, retention))
}

/// A CA's window item and a SUCCESS history item per day (every 50th CA misses one day in
/// the middle: a gap to find), made by the ledger's own builders.
fn ca_items(world: &World, i: usize, arn: &str, first_day: u64) -> Vec<WriteRequest> {
    let arn = CaArn::parse(arn).expect("a CA ARN");
    let mut writes = vec![put(report_item::window_item(&arn))];
    for day in 0..DAYS {
        if i.is_multiple_of(50) && day == DAYS / 2 {
            continue;
        }
        let id = format!("{i:08}-{day:04}-4000-8000-000000000000");
        let key = format!("audit-report/{i}/{id}.json");
        let report = success(world, id, key, first_day + day * DAY + 1800, 2048);
        writes.push(history(&arn, &report));
    }
    writes
}

/// Writes all of `writes`, 25 a call, until none is left unprocessed.
async fn write_all(world: &World, writes: &[WriteRequest]) {
    for chunk in writes.chunks(BATCH) {
        let mut pending = chunk.to_vec();
        while !pending.is_empty() {
            let out = world
                .dynamodb
                .batch_write_item()
                .request_items(&world.table, pending)
                .send()
                .await
                .expect("batch write");
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&world.table))
                .unwrap_or_default();
        }
    }
}

/// Every CA's items, 25 a call, 8 CAs at once; made CA by CA so the seeding itself holds
/// little memory (the bench measures the coverage request's).
async fn seed(world: &World, arns: &[String], first_day: u64) -> usize {
    seed_with(world, arns, first_day, ca_items).await
}

/// Writes each CA's items as `items` makes them (its window item first, then its history), 8
/// CAs at a time; how many items were written.
async fn seed_with(
    world: &World,
    arns: &[String],
    first_day: u64,
    items: fn(&World, usize, &str, u64) -> Vec<WriteRequest>,
) -> usize {
    let written: Vec<usize> =
        futures::stream::iter(arns.iter().enumerate().map(|(i, arn)| async move {
            let writes = items(world, i, arn, first_day);
            write_all(world, &writes).await;
            writes.len()
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    written.iter().sum()
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A `/proc/self/status` figure in kB, in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn calls() -> BTreeMap<String, u64> {
    let out = support::control("GET", "/requests", None);
    let mut found = BTreeMap::new();
    for r in out["requests"].as_array().expect("requests") {
        found.insert(
            format!(
                "{}: {}",
                r["service"].as_str().unwrap(),
                r["operation"].as_str().unwrap()
            ),
            r["count"].as_u64().unwrap(),
        );
    }
    found
}

fn calls_text(calls: &BTreeMap<String, u64>) -> String {
    calls
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The coverage request of the seeded year (first_day to yesterday).
fn year_request(first_day: u64, today: u64, verify_objects: bool) -> CoverageRequest {
    let from = Timestamp::from_epoch_seconds(first_day).to_string()[..10].to_owned();
    let to = Timestamp::from_epoch_seconds(today - DAY).to_string()[..10].to_owned();
    let body = json!({"coverage": {"from": from, "to": to, "verifyObjects": verify_objects}});
    CoverageRequest::from_value(body).unwrap()
}

/// Times one coverage request in-process, as the handler answers it, with a 900 s deadline;
/// the calls and the peak memory are the request's alone.
async fn timed(services: &Services, request: &CoverageRequest) -> Timed {
    try_timed(services, request)
        .await
        .expect("coverage answered")
}

/// `timed`, with the request's error when it could not be answered.
async fn try_timed(
    services: &Services,
    request: &CoverageRequest,
) -> Result<Timed, pca_audit_scheduler::evidence::CoverageError> {
    let invocation = Invocation {
        run_id: "bench-coverage".into(),
        deadline: tokio::time::Instant::now() + DEADLINE,
        reserve: Invocation::DEFAULT_RESERVE,
        home_account: None,
        partition: None,
    };
    support::control("DELETE", "/requests", None);
    // The peak measured from here on is the request's, not the seeding's ("5" resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let floor = status_mib("VmRSS:");
    let started = Instant::now();
    let summary = coverage::answer(services, request, &invocation).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Timed {
        summary,
        secs,
        calls: calls(),
        peak: peak_mib(),
        floor,
    })
}

/// " (scaled by N)" and " (debug build)", as they apply.
fn build_note(scale: usize) -> String {
    let mut note = if scale > 1 {
        format!(" (scaled by {scale})")
    } else {
        String::new()
    };
    if cfg!(debug_assertions) {
        // A debug build is slower: its figures are an upper bound of the release's.
        note.push_str(" (debug build)");
    }
    note
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "no" }
}

/// Row 9: 1,000 CAs × 365 daily history items (pins none, keys outside the CAs' prefixes:
/// nothing here reads the bucket), one coverage request of the year.
async fn row_9(first_day: u64, today: u64) -> Measured {
    let scale = settings::scale();
    let cas = CAS / scale;
    let world = World::new().await;
    let arns = world.seeded_arns(&[("ACTIVE", cas)]);
    let started = Instant::now();
    let items = seed(&world, &arns, first_day).await;
    let seeding = started.elapsed();
    println!(
        "row 9: seeded {items} items in {:.0} s",
        seeding.as_secs_f64()
    );

    let settings = world.settings_with(&[("MIN_INTERVAL_MINUTES", "1440")]);
    let services = Services::new(settings, &world.sdk, Arc::new(SystemClock::default()));
    let t = timed(&services, &year_request(first_day, today, false)).await;
    let (took, peak, c) = (t.secs, t.peak, &t.summary.counts);
    let csv = world
        .objects("evidence/")
        .await
        .into_iter()
        .find(|(k, _)| k.ends_with(".csv"))
        .map_or(0, |(_, size)| size);
    let scaled = build_note(scale);
    let met =
        took < DEADLINE.as_secs_f64() && c.certificate_authorities == cas && peak < MEMORY_MIB;
    let row = format!(
        "| 9. Coverage of a year: {cas} CAs × {DAYS} daily reports{scaled} | {took:.1} s ({:.1}% of the 900 s invocation), peak memory {peak:.0} MiB | < 900 s, every CA answered, peak memory < 128 MiB (the function's) | {} |\n",
        took / 9.0,
        yes_no(met)
    );
    let details = format!(
        "- **9. Coverage of a year**: {} CAs answered, {} covered, {} with gaps ({} gaps), {} reports listed; manifest CSV {:.1} MiB; peak memory (VmHWM, reset after seeding) {peak:.0} MiB; calls: {}; seeded {items} items with BatchWriteItem in {:.0} s (not timed)\n",
        c.certificate_authorities,
        c.covered,
        c.with_gaps,
        c.gaps,
        c.reports,
        csv as f64 / 1_048_576.0,
        calls_text(&t.calls),
        seeding.as_secs_f64()
    );
    Measured { row, details }
}

/// `BENCH_VERIFY_SCALE`: what row 9b's 1,000 CAs are divided by (20 unless set).
fn verify_scale() -> usize {
    std::env::var("BENCH_VERIFY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s >= 1)
        .unwrap_or(VERIFY_SCALE)
}

/// A world whose report bucket keeps versions, as the stack's bucket does.
async fn versioned_world() -> World {
    let world = World::new().await;
    let enabled = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    world
        .s3
        .put_bucket_versioning()
        .bucket(&world.bucket)
        .versioning_configuration(enabled)
        .send()
        .await
        .expect("bucket versioning");
    // The bench plays the service (and, for the changed reports, an administrator): it writes
    // under audit-report/, which the bucket policy's Deny keeps for Private CA alone.
    world.lift_the_writers_deny().await;
    world
}

/// A report's id (shaped as the service's: a lower-case UUID) and its key under the CA's prefix.
fn report_key(arn: &CaArn, i: usize, day: u64) -> (String, String) {
    let id = format!("{i:08x}-{day:04x}-4000-8000-000000000000");
    let key = format!("{}{id}.json", report_prefix(arn));
    (id, key)
}

async fn put_object(world: &World, key: &str, body: String) -> PutObjectOutput {
    world
        .s3
        .put_object()
        .bucket(&world.bucket)
        .key(key)
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"))
}

/// The pin the PutObject answer gives: its version, ETag and checksum.
fn pin_of(out: &PutObjectOutput) -> ObjectPin {
    let checksum = checksum_text([
        ("CRC64NVME", out.checksum_crc64_nvme()),
        ("CRC32", out.checksum_crc32()),
        ("CRC32C", out.checksum_crc32_c()),
        ("SHA256", out.checksum_sha256()),
        ("SHA1", out.checksum_sha1()),
    ]);
    ObjectPin {
        version_id: out.version_id().map(str::to_owned),
        etag: out.e_tag().map(str::to_owned),
        sha256: checksum.as_deref().and_then(full_object_sha256),
        checksum,
    }
}

/// A CA's window item and, for each day, its report's object put into the bucket and a
/// SUCCESS history item pinned to the version PutObject answered.
async fn pinned_items(world: &World, i: usize, arn: &str, first_day: u64) -> Vec<WriteRequest> {
    let arn = &CaArn::parse(arn).expect("a CA ARN");
    let mut writes = vec![put(report_item::window_item(arn))];
    let reports = futures::stream::iter((0..DAYS).map(|day| async move {
        let (id, key) = report_key(arn, i, day);
        let body = json!({"ca": arn.as_str(), "day": day}).to_string();
        let size = body.len() as u64;
        let out = put_object(world, &key, body).await;
        let mut report = success(world, id, key, first_day + day * DAY + 1800, size);
        report.pin = Some(pin_of(&out));
        history(arn, &report)
    }))
    .buffer_unordered(PUTS_IN_FLIGHT / 2)
    .collect::<Vec<_>>()
    .await;
    writes.extend(reports);
    writes
}

/// Row 9b's seeding: 2 CAs at once, 16 PutObject calls each (32 in flight), then each CA's
/// items with BatchWriteItem. Returns the objects put.
async fn seed_pinned(world: &World, arns: &[String], first_day: u64) -> usize {
    let written: Vec<usize> =
        futures::stream::iter(arns.iter().enumerate().map(|(i, arn)| async move {
            let writes = pinned_items(world, i, arn, first_day).await;
            write_all(world, &writes).await;
            writes.len() - 1
        }))
        .buffer_unordered(2)
        .collect()
        .await;
    written.iter().sum()
}

/// Evidence changed behind the ledger's back: every TAMPER_EVERY-th CA has one report
/// overwritten (a new current version) and one deleted (a delete marker). Returns how many
/// reports changed.
async fn tamper(world: &World, arns: &[String]) -> usize {
    let mut changed = 0;
    for (i, arn) in arns.iter().enumerate().step_by(TAMPER_EVERY) {
        let arn = CaArn::parse(arn).expect("a CA ARN");
        let (_, overwritten) = report_key(&arn, i, DAYS / 3);
        put_object(world, &overwritten, "not the report".into()).await;
        let (_, deleted) = report_key(&arn, i, 2 * DAYS / 3);
        world
            .s3
            .delete_object()
            .bucket(&world.bucket)
            .key(&deleted)
            .send()
            .await
            .expect("delete a report");
        changed += 2;
    }
    changed
}

/// CPU time of `listed_change` for one CA of `reports` reports, every one untouched (the
/// verdict each report's pin gets from its CA's listing), release or debug as built.
fn compare_secs(reports: usize) -> f64 {
    let prefix = "audit-report/0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d/";
    let key = |n: usize| format!("{prefix}{n:08x}-0000-4000-8000-000000000000.json");
    let versions: Vec<ListedVersion> = (0..reports)
        .map(|n| ListedVersion {
            key: key(n),
            version_id: format!("{n:032x}"),
            etag: Some(format!("\"{n:032x}\"")),
            is_latest: true,
            delete_marker: false,
        })
        .collect();
    let started = Instant::now();
    // As `evidence::verify` does: the listing indexed by key once, then each report's pin.
    let by_key = versions_by_key(std::hint::black_box(&versions));
    let changed = versions
        .iter()
        .filter(|v| {
            let pin = ObjectPin {
                version_id: Some(v.version_id.clone()),
                etag: v.etag.clone(),
                checksum: None,
                sha256: None,
            };
            let of_key = by_key.get(v.key.as_str()).map_or(&[][..], Vec::as_slice);
            listed_change(&pin, of_key).is_some()
        })
        .count();
    assert_eq!(changed, 0, "every report untouched");
    started.elapsed().as_secs_f64()
}

fn dollars(calls: usize, per_1000: f64) -> String {
    format!("${:.3}", calls as f64 / 1000.0 * per_1000)
}

/// The calls of verifyObjects for a year of 1,000 CAs and their price: one LIST page per
/// 1,000 versions under a CA's prefix; a HEAD per report only in a bucket without versioning.
fn extrapolation(list_per_ca: f64) -> String {
    let pages = |versions: usize| versions.div_ceil(LIST_PAGE);
    let (daily, hourly) = (CAS * pages(DAYS as usize), CAS * pages(HOURLY));
    let (daily_heads, hourly_heads) = (CAS * DAYS as usize, CAS * HOURLY);
    format!(
        "measured {list_per_ca:.2} LIST a CA (each CA's {DAYS} versions, and the changed ones', fit one page of {LIST_PAGE}); \
         for a year of 1,000 CAs in a versioned bucket: daily {daily} LIST ({}), hourly ({HOURLY} reports a CA, {} pages) {hourly} LIST ({}), no HEAD; \
         in a bucket without versioning, the same LISTs and a HEAD per report pinned with a checksum: daily {daily_heads} HEAD ({}), hourly {hourly_heads} HEAD ({}); \
         prices: {PRICES} (LIST ${LIST_PER_1000} and GET/HEAD ${HEAD_PER_1000} per 1,000 requests)",
        dollars(daily, LIST_PER_1000),
        pages(HOURLY),
        dollars(hourly, LIST_PER_1000),
        dollars(daily_heads, HEAD_PER_1000),
        dollars(hourly_heads, HEAD_PER_1000),
    )
}

/// Row 9b: a year of daily reports, each an object in a versioned bucket and pinned on its
/// history item, some changed; one coverage request of the year with and one without
/// verifyObjects, both timed, the first's calls counted.
/// Row 9b when the request could not be answered: what it said. Against moto this is what the
/// function's 9 s operation timeout meets: moto's ListObjectVersions copies every version of
/// the bucket for each call, and with 16 CAs listed at once one call passes 9 s.
fn not_completed(cas: usize, scale: usize, objects: usize, e: &impl std::fmt::Display) -> Measured {
    let row = format!(
        "| 9b. Coverage of a year with verifyObjects: {cas} CAs × {DAYS} daily reports, each an object in a versioned bucket{} | did not complete against moto: {e} | < 900 s, every CA answered, every change found, peak memory < 128 MiB | no |\n",
        build_note(scale)
    );
    let details = format!(
        "- **9b** ({objects} versions in moto's bucket): the request failed as above; moto's ListObjectVersions copies every version of the bucket for each call, so with 16 CAs listed side by side a call takes longer than the function's 9 s operation timeout (aws::timeouts). A limit of the emulator: S3 answers a page of 1,000 versions in well under a second (not measured here)\n"
    );
    Measured { row, details }
}

async fn row_9b(first_day: u64, today: u64) -> Measured {
    let scale = verify_scale();
    let cas = CAS / scale;
    let world = versioned_world().await;
    let arns = world.seeded_arns(&[("ACTIVE", cas)]);
    let started = Instant::now();
    let objects = seed_pinned(&world, &arns, first_day).await;
    let made = tamper(&world, &arns).await;
    let seeding = started.elapsed().as_secs_f64();
    println!("row 9b: put and pinned {objects} objects in {seeding:.0} s");

    let settings = world.settings_with(&[("MIN_INTERVAL_MINUTES", "1440")]);
    let services = Services::new(settings, &world.sdk, Arc::new(SystemClock::default()));
    let without = timed(&services, &year_request(first_day, today, false)).await;
    let t = match try_timed(&services, &year_request(first_day, today, true)).await {
        Ok(t) => t,
        Err(e) => return not_completed(cas, scale, objects, &e),
    };
    let c = &t.summary.counts;
    let lists = t.calls.get("s3: GET").copied().unwrap_or(0);
    let heads = t.calls.get("s3: HEAD").copied().unwrap_or(0);
    let met = t.secs < DEADLINE.as_secs_f64()
        && c.certificate_authorities == cas
        && c.evidence_changed == made
        && t.peak < MEMORY_MIB;
    let row = format!(
        "| 9b. Coverage of a year with verifyObjects: {cas} CAs × {DAYS} daily reports, each an object in a versioned bucket{} | {:.1} s ({:.2}% of the 900 s invocation), peak memory {:.0} MiB; {lists} ListObjectVersions, {heads} HeadObject; {} evidenceChanged of {made} made | < 900 s, every CA answered, every change found, peak memory < 128 MiB | {} |\n",
        build_note(scale),
        t.secs,
        t.secs / 9.0,
        t.peak,
        c.evidence_changed,
        yes_no(met)
    );
    let details = format!(
        "- **9b. Coverage of a year with verifyObjects** ({cas} CAs, not 1,000: moto's S3 copies every version in the bucket for each ListObjectVersions call, so at 1,000 CAs the time would be moto's): {} CAs answered, {} covered, {} with gaps ({} gaps), {} objects verified, {} evidenceChanged (made: {made}, every {TAMPER_EVERY}th CA one report overwritten and one deleted); peak memory (VmHWM, reset after seeding) {:.0} MiB from {:.0} MiB resident at the reset; calls: {} (the S3 GETs are the ListObjectVersions pages: the local stack counts S3 calls by HTTP method, and the same request without verifyObjects makes {} S3 GET and takes {:.1} s: verifying added {:.2} s a LIST call, with {objects} versions in the bucket); {}; put {objects} objects ({} in flight) and wrote their history items in {seeding:.0} s (not timed)\n",
        c.certificate_authorities,
        c.covered,
        c.with_gaps,
        c.gaps,
        c.objects_verified.unwrap_or(0),
        c.evidence_changed,
        t.peak,
        t.floor,
        calls_text(&t.calls),
        without.calls.get("s3: GET").copied().unwrap_or(0),
        without.secs,
        (t.secs - without.secs) / lists.max(1) as f64,
        extrapolation(lists as f64 / cas as f64),
        PUTS_IN_FLIGHT,
    );
    Measured { row, details }
}

/// The comparison of pins with a CA's listing, timed apart, per CA and for 1,000 CAs.
fn comparison() -> String {
    let (daily, hourly) = (compare_secs(DAYS as usize), compare_secs(HOURLY));
    format!(
        "- **9b. Pins compared with the listing** (`domain::bucket::listed_change`, once per report against its CA's listed versions; timed apart, in this process{}): a CA of {DAYS} reports {:.2} ms, of {HOURLY} reports {:.0} ms; for 1,000 CAs {:.1} s (daily) and {:.0} s (hourly) of one core of this machine\n",
        build_note(1),
        daily * 1e3,
        hourly * 1e3,
        daily * CAS as f64,
        hourly * CAS as f64,
    )
}

/// The machine, for the figures' heading: its CPU and how many cores this process may use.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{cpu}, {cores} cores")
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_LAMBDA_CPU").is_ok_and(|v| v == "1") {
        at_lambda_cpu::rows().await;
        return;
    }
    let now = Timestamp::from_system_time(std::time::SystemTime::now()).epoch_seconds();
    let today = now - now % DAY;
    let first_day = today - DAYS * DAY;
    // Row 9b first: its own world, small; row 9's figures are measured after it as before,
    // each request's peak memory from its own reset.
    let verified = row_9b(first_day, today).await;
    let compared = comparison();
    let year = row_9(first_day, today).await;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let md = format!(
        "Figures of one run of `scripts/bench-coverage` on {} ({build} build, {}) against the local stack (DynamoDB Local; moto's S3).\n\n| Benchmark | Measured | Target | Met |\n|---|---|---|---|\n{}{}\n{}{}{compared}",
        Timestamp::from_epoch_seconds(now)
            .to_string()
            .get(..10)
            .unwrap_or_default(),
        machine(),
        year.row,
        verified.row,
        year.details,
        verified.details,
    );
    print!("{md}");
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "BENCHMARKS.md".into());
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let text = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) => format!("{}{BEGIN}\n{md}{}", &text[..b], &text[e..]),
        _ => format!("{text}\n## Coverage\n\n{BEGIN}\n{md}{END}\n"),
    };
    std::fs::write(&out, text).expect("write the results");
    println!("wrote {out}");
}

/// The coverage rows at a Lambda memory size's CPU share (BENCH_LAMBDA_CPU=1): the release
/// binary, cold, under `scripts/lambda-cpu`, answering the request as Lambda would hand it.
mod at_lambda_cpu {
    use super::{
        CAS, CaArn, DAY, DAYS, DEADLINE, MEMORY_MIB, ReportStatus, World, WriteRequest, history,
        put, report_item, seed, seed_with, success,
    };
    use crate::lambda_cpu;
    use serde_json::json;
    use std::time::Instant;

    const BEGIN: &str = "<!-- figures of scripts/bench-coverage --lambda-cpu: begin -->";
    const END: &str = "<!-- figures of scripts/bench-coverage --lambda-cpu: end -->";
    const HOURLY_BEGIN: &str =
        "<!-- figures of scripts/bench-coverage --lambda-cpu, hourly: begin -->";
    const HOURLY_END: &str = "<!-- figures of scripts/bench-coverage --lambda-cpu, hourly: end -->";
    const HOUR: u64 = 3600;
    /// Row L10: CAs, days, and a report every 30 minutes (the interval's floor): 1,488 a CA.
    const FAILED_CAS: usize = 60;
    const FAILED_DAYS: u64 = 31;
    const HALF_HOUR: u64 = 1800;
    /// Lambda's response payload, synchronous: "6 MB each for request and response"
    /// (Lambda quotas, https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html),
    /// taken here as 6,000,000 bytes, the smaller reading of "MB".
    const RESPONSE_LIMIT: usize = 6_000_000;

    /// A CA's window item and a FAILED report every half hour of the period.
    fn failed_items(world: &World, i: usize, arn: &str, first_day: u64) -> Vec<WriteRequest> {
        let arn = CaArn::parse(arn).expect("a CA ARN");
        let mut writes = vec![put(report_item::window_item(&arn))];
        for n in 0..FAILED_DAYS * DAY / HALF_HOUR {
            let id = format!("{i:08}-{:04x}-4000-8000-{n:012}", n >> 16);
            let key = format!("audit-report/{i}/{id}.json");
            let mut report = success(world, id, key, first_day + n * HALF_HOUR + 60, 0);
            report.status = ReportStatus::Failed;
            report.size_bytes = None;
            writes.push(history(&arn, &report));
        }
        writes
    }

    fn request(first_day: u64, days: u64) -> String {
        let date = |s: u64| {
            pca_audit_scheduler::domain::time::Timestamp::from_epoch_seconds(s).to_string()[..10]
                .to_owned()
        };
        json!({"coverage": {"from": date(first_day), "to": date(first_day + (days - 1) * DAY)}})
            .to_string()
    }

    fn log(name: &str) -> std::path::PathBuf {
        lambda_cpu::bench_log(&format!("coverage-{name}"))
    }

    /// The answer's counts, or what the invocation said instead.
    fn said(a: &lambda_cpu::Answered) -> String {
        let v = a.json();
        if a.kind == "response" && v.get("counts").is_some() {
            let c = &v["counts"];
            format!(
                "{} CAs answered ({} listed in the answer, {} omitted), {} with gaps ({} gaps, {} failedReport), {} reports",
                c["certificateAuthorities"],
                v["certificateAuthorities"].as_array().map_or(0, Vec::len),
                v["certificateAuthoritiesOmitted"].as_u64().unwrap_or(0),
                c["withGaps"],
                c["gaps"],
                c["failedReports"],
                c["reports"]
            )
        } else {
            let body: String = a.body.chars().take(300).collect();
            format!("**{}**: {body}", a.kind)
        }
    }

    async fn failed_month(today: u64) -> (String, String) {
        let world = World::new().await;
        let arns = world.seeded_arns(&[("ACTIVE", FAILED_CAS)]);
        let first_day = today - FAILED_DAYS * DAY;
        let started = Instant::now();
        // The reports: every item but each CA's window item.
        let written = seed_with(&world, &arns, first_day, failed_items).await - arns.len();
        let seeding = started.elapsed().as_secs_f64();
        let memory = lambda_cpu::memory_mb();
        let a = lambda_cpu::invoke_at(
            memory,
            &world.function_env(&[("MIN_INTERVAL_MINUTES", "30")]),
            &super::support::function_arn(&world.account_id),
            &request(first_day, FAILED_DAYS),
            DEADLINE,
            &log("failed-month"),
        );
        let bytes = a.body.len();
        let met = a.kind == "response"
            && bytes < RESPONSE_LIMIT
            && a.took < DEADLINE
            && a.peak_rss_mib < MEMORY_MIB;
        let row = format!(
            "| L10. Coverage of a month of FAILED reports: {FAILED_CAS} CAs × {FAILED_DAYS} days, a report every 30 min ({written} reports), at {memory} MB's CPU | answer {bytes} bytes ({:.1}% of 6 MB), {:.1} s, peak RSS {:.1} MiB | answer < 6 MB (Lambda's synchronous response), < 900 s, < 128 MiB | {} |",
            bytes as f64 / RESPONSE_LIMIT as f64 * 100.0,
            a.took.as_secs_f64(),
            a.peak_rss_mib,
            if met { "yes" } else { "**no**" }
        );
        let details = format!(
            "- **L10. Coverage of a month of FAILED reports**: {}; CPU time {:.1} s of the function process; seeded {written} FAILED history items in {seeding:.0} s (not timed)",
            said(&a),
            a.cpu_secs
        );
        (row, details)
    }

    /// Row L9: the year of row 9 at each memory size asked for, on one seeded ledger.
    async fn year(today: u64) -> (Vec<String>, Vec<String>) {
        let cas = CAS / super::settings::scale();
        let first_day = today - DAYS * DAY;
        let world = World::new().await;
        let arns = world.seeded_arns(&[("ACTIVE", cas)]);
        let started = Instant::now();
        let items = seed(&world, &arns, first_day).await;
        let seeding = started.elapsed().as_secs_f64();
        println!("L9: seeded {items} items in {seeding:.0} s");
        let sizes = memory_sizes();
        let (mut rows, mut details) = (Vec::new(), Vec::new());
        for memory in sizes {
            let load = lambda_cpu::load();
            let a = lambda_cpu::invoke_at(
                memory,
                &world.function_env(&[("MIN_INTERVAL_MINUTES", "1440")]),
                &super::support::function_arn(&world.account_id),
                &request(first_day, DAYS),
                DEADLINE,
                &log(&format!("year-{memory}")),
            );
            let answered = a.kind == "response"
                && a.json()["counts"]["certificateAuthorities"].as_u64() == Some(cas as u64);
            let met = answered && a.took < DEADLINE && a.peak_rss_mib < MEMORY_MIB;
            let took = a.took.as_secs_f64();
            rows.push(format!(
                "| L9. Coverage of a year: {cas} CAs × {DAYS} daily reports{}, at {memory} MB's CPU ({:.3} vCPU) | {took:.1} s ({:.1}% of the 900 s invocation), peak RSS {:.1} MiB | < 900 s, every CA answered, < 128 MiB | {} |",
                scaled(super::settings::scale()),
                lambda_cpu::vcpu(memory),
                took / 9.0,
                a.peak_rss_mib,
                if met { "yes" } else { "**no**" }
            ));
            details.push(format!(
                "- **L9 at {memory} MB**: {}; answer {} bytes; CPU time {:.1} s of the function process; machine {load} before it",
                said(&a),
                a.body.len(),
                a.cpu_secs
            ));
            println!("{}", rows.last().unwrap());
        }
        details.push(format!(
            "- **L9**: the ledger seeded as row 9's ({items} items with BatchWriteItem in {seeding:.0} s, not timed)"
        ));
        (rows, details)
    }

    /// " (scaled by N)" when it is: the function measured is the release build whatever the
    /// bench's own build.
    fn scaled(scale: usize) -> String {
        if scale > 1 {
            format!(" (scaled by {scale})")
        } else {
            String::new()
        }
    }

    /// A CA's window item and a SUCCESS report every hour of the year (every 10th CA misses
    /// one day of them in the middle: a gap to find).
    fn hourly_items(world: &World, i: usize, arn: &str, first_day: u64) -> Vec<WriteRequest> {
        let arn = CaArn::parse(arn).expect("a CA ARN");
        let mut writes = vec![put(report_item::window_item(&arn))];
        let hours = DAYS * 24;
        for n in 0..hours {
            if i.is_multiple_of(10) && (hours / 2..hours / 2 + 24).contains(&n) {
                continue;
            }
            let id = format!("{i:08}-{:04x}-4000-8000-{n:012}", n >> 16);
            let key = format!("audit-report/{i}/{id}.json");
            let report = success(world, id, key, first_day + n * HOUR + 60, 2048);
            writes.push(history(&arn, &report));
        }
        writes
    }

    /// Row L9h: a year of hourly reports (the template's default schedule) for
    /// BENCH_HOURLY_CAS CAs: what a CA's 8,760 reports cost in time and memory at 128 MB's CPU,
    /// 16 CAs read at once as for any number of CAs.
    async fn hourly_year(today: u64, cas: usize) -> String {
        let first_day = today - DAYS * DAY;
        let world = World::new().await;
        let arns = world.seeded_arns(&[("ACTIVE", cas)]);
        let started = Instant::now();
        // The history items: every item but each CA's window item.
        let items = seed_with(&world, &arns, first_day, hourly_items).await - arns.len();
        let seeding = started.elapsed().as_secs_f64();
        println!("L9h: seeded {items} items in {seeding:.0} s");
        let mut rows = String::new();
        let mut details = String::new();
        let load_before = lambda_cpu::load();
        for memory in memory_sizes() {
            let a = lambda_cpu::invoke_at(
                memory,
                &world.function_env(&[("MIN_INTERVAL_MINUTES", "60")]),
                &super::support::function_arn(&world.account_id),
                &request(first_day, DAYS),
                DEADLINE,
                &log(&format!("year-hourly-{memory}")),
            );
            let (row, detail) = hourly_row(cas, memory, &a);
            rows.push_str(&row);
            details.push_str(&detail);
            println!("{rows}");
        }
        format!(
            "Figures of one run of `BENCH_HOURLY_CAS={cas} scripts/bench-coverage --lambda-cpu` on {} (release build; machine {load_before} before the first invocation, {} after the last).\n\n| Benchmark | Measured | Target | Met |\n|---|---|---|---|\n{rows}\n{details}- **L9h**: seeded {items} history items in {seeding:.0} s (not timed)\n",
            lambda_cpu::today(),
            lambda_cpu::load(),
        )
    }

    /// Row L9h's line and details at one memory size.
    fn hourly_row(cas: usize, memory: u32, a: &lambda_cpu::Answered) -> (String, String) {
        let took = a.took.as_secs_f64();
        let per_1000 = took * CAS as f64 / cas as f64;
        let met = a.kind == "response" && a.took < DEADLINE && a.peak_rss_mib < MEMORY_MIB;
        let measured = if a.kind == "response" {
            format!(
                "{took:.1} s, peak RSS {:.1} MiB; for 1,000 CAs about {per_1000:.0} s (scaled by {}: the CAs are read 16 at a time, so the time grows with their number, the memory with one CA's history)",
                a.peak_rss_mib,
                CAS / cas
            )
        } else {
            format!(
                "**did not complete**: {} after {took:.1} s (below)",
                a.json()["errorType"].as_str().unwrap_or(&a.kind)
            )
        };
        let row = format!(
            "| L9h. Coverage of a year of hourly reports: {cas} CAs × {} reports, at {memory} MB's CPU ({:.3} vCPU) | {measured} | < 900 s, every CA answered, < 128 MiB | {} |\n",
            DAYS * 24,
            lambda_cpu::vcpu(memory),
            if met { "yes (for these CAs)" } else { "**no**" },
        );
        let detail = format!(
            "- **L9h at {memory} MB**: {}; answer {} bytes; CPU time {:.1} s of the function process ({:.1} s for 1,000 CAs, scaled)\n",
            said(a),
            a.body.len(),
            a.cpu_secs,
            a.cpu_secs * CAS as f64 / cas as f64,
        );
        (row, detail)
    }

    /// BENCH_LAMBDA_MEMORY_SIZES (MB, comma-separated), or LAMBDA_MEMORY_MB alone.
    fn memory_sizes() -> Vec<u32> {
        std::env::var("BENCH_LAMBDA_MEMORY_SIZES")
            .unwrap_or_else(|_| lambda_cpu::memory_mb().to_string())
            .split(',')
            .filter_map(|m| m.trim().parse().ok())
            .collect()
    }

    pub async fn rows() {
        if let Some(cas) = std::env::var("BENCH_HOURLY_CAS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            let now = pca_audit_scheduler::domain::time::Timestamp::from_system_time(
                std::time::SystemTime::now(),
            )
            .epoch_seconds();
            let md = hourly_year(now - now % DAY, cas).await;
            print!("{md}");
            let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "BENCHMARKS.md".into());
            lambda_cpu::write_block(&out, HOURLY_BEGIN, HOURLY_END, &md);
            println!("wrote {out}");
            return;
        }
        let now = pca_audit_scheduler::domain::time::Timestamp::from_system_time(
            std::time::SystemTime::now(),
        )
        .epoch_seconds();
        let today = now - now % DAY;
        let load_before = lambda_cpu::load();
        let (failed_row, failed_details) = failed_month(today).await;
        println!("{failed_row}\n{failed_details}");
        let (year_rows, year_details) = if std::env::var("BENCH_SKIP_YEAR").is_ok() {
            (Vec::new(), Vec::new())
        } else {
            year(today).await
        };
        let md = format!(
            "Figures of one run of `scripts/bench-coverage --lambda-cpu` on {} (release build; machine {load_before} at the start, {} at the end).\n\n| Benchmark | Measured | Target | Met |\n|---|---|---|---|\n{failed_row}\n{}\n{failed_details}\n{}\n",
            lambda_cpu::today(),
            lambda_cpu::load(),
            year_rows
                .iter()
                .map(|r| format!("{r}\n"))
                .collect::<String>(),
            year_details.join("\n"),
        );
        print!("{md}");
        let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "BENCHMARKS.md".into());
        lambda_cpu::write_block(&out, BEGIN, END, &md);
        println!("wrote {out}");
    }
}
