//! The local AWS stack (`scripts/local-stack`): its settings, its control API (seeding,
//! per-account emulator settings, the calls it received) and fresh accounts through its STS.

use std::collections::HashMap;
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{Region, SdkConfig};
use serde_json::{Value, json};

pub const REGION: &str = "us-east-1";

static LOAD_ENV: Once = Once::new();

/// The stack's settings come from the environment (`scripts/test` exports them); when a
/// developer runs `cargo test` by hand after `scripts/local-stack up`, they are read from
/// the file that command writes.
pub(crate) fn load_stack_env() {
    LOAD_ENV.call_once(|| {
        if std::env::var_os("PCA_LOCAL_CONTROL_URL").is_some() {
            return;
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.local-stack/env");
        let text = std::fs::read_to_string(path).unwrap_or_else(|_| {
            panic!("the local AWS stack is not running: start it with `scripts/local-stack up` (no {path})")
        });
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ").trim();
            if let Some((k, v)) = line.split_once('=') {
                // SAFETY: runs once, before any test reads the environment (every test comes here first).
                unsafe { std::env::set_var(k, v.trim_matches('"').trim_matches('\'')) };
            }
        }
    });
}

pub fn control_url() -> String {
    load_stack_env();
    std::env::var("PCA_LOCAL_CONTROL_URL").expect("PCA_LOCAL_CONTROL_URL")
}

pub fn control(method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("{}{path}", control_url());
    let agent = ureq::Agent::new_with_defaults();
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        ("DELETE", _) => agent.delete(&url).call(),
        ("POST", Some(b)) => agent.post(&url).send_json(b),
        ("POST", None) => agent.post(&url).send_empty(),
        _ => panic!("unsupported {method}"),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let text = response
        .body_mut()
        .read_to_string()
        .expect("control API body");
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
    }
}

pub(crate) fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

pub(crate) fn rand_u64() -> u64 {
    u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap())
}

/// A fresh, random account id.
pub(crate) fn new_account_id() -> String {
    format!("{:012}", rand_u64() % 1_000_000_000_000)
}

/// The machine's time, in epoch milliseconds.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh account, created by assuming a role in it through the stack's STS: moto maps
/// the returned keys to that account for every service.
pub(crate) async fn account_config(
    account_id: &str,
) -> (SdkConfig, aws_sdk_dynamodb::config::Credentials) {
    load_stack_env();
    let sts = std::env::var("AWS_ENDPOINT_URL_STS").expect("AWS_ENDPOINT_URL_STS");
    let form = [
        ("Action", "AssumeRole".to_string()),
        ("Version", "2011-06-15".to_string()),
        (
            "RoleArn",
            format!("arn:aws:iam::{account_id}:role/pca-audit-test"),
        ),
        ("RoleSessionName", "test".to_string()),
    ];
    let body = tokio::task::spawn_blocking(move || {
        // moto routes by the signature's credential scope; it does not check the signature.
        let mut r = ureq::post(&sts)
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0",
            )
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .expect("STS AssumeRole");
        r.body_mut().read_to_string().expect("STS body")
    })
    .await
    .unwrap();
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = body
            .find(&open)
            .unwrap_or_else(|| panic!("{name} in {body}"))
            + open.len();
        let end = body[start..].find('<').unwrap() + start;
        body[start..end].to_string()
    };
    let creds = aws_sdk_dynamodb::config::Credentials::new(
        field("AccessKeyId"),
        field("SecretAccessKey"),
        Some(field("SessionToken")),
        None,
        "local-stack",
    );
    let sdk = aws_config::defaults(pca_audit_scheduler::behavior_version())
        .region(Region::new(REGION))
        .credentials_provider(creds.clone())
        .load()
        .await;
    (sdk, creds)
}

/// A query-protocol call (IAM, STS) to the stack as `access_key` (moto reads the account from
/// the key in the credential scope and does not check the signature); the answer's XML.
pub async fn query_api(
    endpoint_var: &str,
    access_key: &str,
    form: Vec<(&'static str, String)>,
) -> String {
    load_stack_env();
    let url = std::env::var(endpoint_var).unwrap_or_else(|_| panic!("{endpoint_var}"));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0"
    );
    let what = format!("{endpoint_var} {form:?}");
    tokio::task::spawn_blocking(move || {
        let mut r = ureq::post(&url)
            .header("Authorization", &auth)
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        r.body_mut().read_to_string().expect("body")
    })
    .await
    .unwrap()
}

/// CAs made in an account and region from `/seed` groups, as the control API describes them.
pub fn seed_cas(account_id: &str, region: &str, groups: &[Value]) -> Vec<Value> {
    let out = control(
        "POST",
        "/seed",
        Some(json!({"account_id": account_id, "region": region, "cas": groups})),
    );
    out["certificate_authorities"]
        .as_array()
        .expect("seeded CAs")
        .clone()
}

/// CAs made in an account and region from `/seed` groups; their ARNs.
pub fn seed_account(account_id: &str, region: &str, groups: &[Value]) -> Vec<String> {
    arns_of(&seed_cas(account_id, region, groups))
}

/// The ARNs of seeded CAs.
pub fn arns_of(cas: &[Value]) -> Vec<String> {
    cas.iter()
        .map(|c| c["arn"].as_str().unwrap().to_string())
        .collect()
}

/// A `/seed` group: `count` CAs in `state`, each with one issued certificate.
pub fn seed_group(state: &str, count: usize) -> Value {
    json!({"state": state, "count": count, "issued": 1, "revoked": 0})
}

/// Create calls the emulator received for an account, as the control API describes them.
pub fn create_calls_of(account_id: &str) -> Vec<Value> {
    control(
        "GET",
        &format!("/audit-calls?account_id={account_id}"),
        None,
    )["calls"]
        .as_array()
        .expect("calls")
        .clone()
}

/// Create calls the emulator accepted for an account, per CA.
pub fn accepted_creates_of(account_id: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for c in create_calls_of(account_id) {
        if c["outcome"] == "Accepted" {
            *counts
                .entry(c["ca_arn"].as_str().unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
    }
    counts
}

/// Emulator settings for one account only (window, quotas, report delay).
pub fn configure_account(account_id: &str, config: Value) {
    let mut body = config;
    body["account_id"] = json!(account_id);
    control("POST", "/config", Some(body));
}

/// What `fast_account` sets at the emulator.
pub fn fast_settings() -> Value {
    json!({"create_rps": 1000, "report_delay_seconds": 0})
}

/// For tests not about the quota: the account's create quota raised and reports written at
/// once, so they run in milliseconds. Never for a test whose figure is about the quota
/// (overlap, pacing, throughput): those run at AWS's 1 create a second.
pub fn fast_account(account_id: &str) {
    configure_account(account_id, fast_settings());
}

/// A fault rule at the stack (`/faults`); its id.
pub fn fault(rule: Value) -> String {
    control("POST", "/faults", Some(rule))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// How many times a fault rule was applied.
pub fn injected(id: &str) -> u64 {
    control("GET", "/faults", None)["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .map_or(0, |r| r["injected"].as_u64().unwrap())
}

pub fn clear_fault(id: &str) {
    control("DELETE", &format!("/faults/{id}"), None);
}
