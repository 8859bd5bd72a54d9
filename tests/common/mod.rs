//! Test harness: each test gets its own AWS account in the local stack (moto keeps separate
//! state per account), its own ledger table, bucket and CAs, so tests run in parallel against
//! one stack without sharing anything (zero2prod's `spawn_app`, for this service).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Once};
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use pca_audit_scheduler::aws::ledger::{PARTITION_KEY, SORT_KEY, WINDOW_RECORD};
use pca_audit_scheduler::config::Settings;
use pca_audit_scheduler::domain::request::{RunRequest, RunScope, Trigger};
use pca_audit_scheduler::run::summary::RunSummary;
use pca_audit_scheduler::services::{Clock, SystemClock};
use pca_audit_scheduler::{invocation::Invocation, services::Services};
use serde_json::{Value, json};

pub const REGION: &str = "us-east-1";

static LOAD_ENV: Once = Once::new();

/// The stack's settings come from the environment (`scripts/test` exports them); when a
/// developer runs `cargo test` by hand after `scripts/local-stack up`, they are read from
/// the file that command writes.
fn load_stack_env() {
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

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A fresh account, created by assuming a role in it through the stack's STS: moto maps
/// the returned keys to that account for every service.
async fn account_config(account_id: &str) -> (SdkConfig, aws_sdk_dynamodb::config::Credentials) {
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

/// A member account of a test's organisation: its own CAs, reached by the function through
/// the member role (when the test made one).
pub struct Member {
    pub account_id: String,
    pub sdk: SdkConfig,
}

impl Member {
    /// An account that already exists (one Organizations made), with the member role in it.
    pub async fn existing(account_id: &str, central_account: &str) -> Self {
        Self::make(account_id.to_owned(), central_account, Some("")).await
    }

    /// A fresh account; with `role`, the member role in it, trusting the central account
    /// with that external id (`Some("")` for none).
    pub async fn new(central_account: &str, role: Option<&str>) -> Self {
        let account_id = format!("{:012}", rand_u64() % 1_000_000_000_000);
        Self::make(account_id, central_account, role).await
    }

    async fn make(account_id: String, central_account: &str, role: Option<&str>) -> Self {
        let (sdk, creds) = account_config(&account_id).await;
        if let Some(external_id) = role {
            let mut statement = json!({
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{central_account}:root")},
                "Action": "sts:AssumeRole"
            });
            if !external_id.is_empty() {
                statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": external_id}});
            }
            let trust = json!({"Version": "2012-10-17", "Statement": [statement]});
            let out = query_api(
                "AWS_ENDPOINT_URL_IAM",
                creds.access_key_id(),
                vec![
                    ("Action", "CreateRole".into()),
                    ("Version", "2010-05-08".into()),
                    (
                        "RoleName",
                        pca_audit_scheduler::config::DEFAULT_MEMBER_ROLE.into(),
                    ),
                    ("AssumeRolePolicyDocument", trust.to_string()),
                ],
            )
            .await;
            assert!(out.contains("<RoleName>"), "CreateRole: {out}");
        }
        Self { account_id, sdk }
    }

    pub fn configure_emulator(&self, config: Value) {
        configure_account(&self.account_id, config);
    }

    /// See `World::fast`.
    pub fn fast(&self) {
        self.configure_emulator(fast_settings());
    }

    pub fn seed_in(&self, region: &str, count: usize) -> Vec<String> {
        seed_account(
            &self.account_id,
            region,
            &[json!({"state": "ACTIVE", "count": count, "issued": 1, "revoked": 0})],
        )
    }

    pub fn accepted_creates(&self) -> HashMap<String, usize> {
        accepted_creates_of(&self.account_id)
    }
}

/// CAs made in an account and region from `/seed` groups; their ARNs.
pub fn seed_account(account_id: &str, region: &str, groups: &[Value]) -> Vec<String> {
    let out = control(
        "POST",
        "/seed",
        Some(json!({"account_id": account_id, "region": region, "cas": groups})),
    );
    out["certificate_authorities"]
        .as_array()
        .expect("seeded CAs")
        .iter()
        .map(|c| c["arn"].as_str().unwrap().to_string())
        .collect()
}

/// Create calls the emulator accepted for an account, per CA.
pub fn accepted_creates_of(account_id: &str) -> HashMap<String, usize> {
    let out = control(
        "GET",
        &format!("/audit-calls?account_id={account_id}"),
        None,
    );
    let mut counts = HashMap::new();
    for c in out["calls"].as_array().expect("calls") {
        if c["outcome"] == "Accepted" {
            *counts
                .entry(c["ca_arn"].as_str().unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
    }
    counts
}

/// One test's world: an account, a ledger table, a report bucket.
pub struct World {
    pub account_id: String,
    pub sdk: SdkConfig,
    /// The account's keys, for a function started as a process.
    pub credentials: aws_sdk_dynamodb::config::Credentials,
    pub table: String,
    pub bucket: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub acm_pca: aws_sdk_acmpca::Client,
}

impl World {
    pub async fn new() -> Self {
        let account_id = format!("{:012}", rand_u64() % 1_000_000_000_000);
        let (sdk, credentials) = account_config(&account_id).await;
        let suffix = unique_suffix();
        let world = Self {
            table: format!("ledger-{suffix}"),
            bucket: format!("evidence-{suffix}"),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            s3: aws_sdk_s3::Client::new(&sdk),
            acm_pca: aws_sdk_acmpca::Client::new(&sdk),
            account_id,
            sdk,
            credentials,
        };
        world.create_table().await;
        world.create_bucket(true).await;
        world
    }

    /// The ledger table as template.yaml declares it.
    pub async fn create_table(&self) {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |name: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .unwrap()
        };
        // The sparse index of window items a coverage request scans (src/coverage.rs).
        let (index_key, index) = pca_audit_scheduler::evidence::coverage::ca_index();
        self.dynamodb
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attr(PARTITION_KEY))
            .attribute_definitions(attr(SORT_KEY))
            .attribute_definitions(index_key)
            .global_secondary_indexes(index)
            .key_schema(key(PARTITION_KEY, KeyType::Hash))
            .key_schema(key(SORT_KEY, KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create ledger table");
        self.dynamodb
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("enable TTL");
    }

    /// A bucket, with (or without) the policy that lets the service write reports.
    pub async fn create_bucket(&self, with_policy: bool) {
        self.s3
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("create bucket");
        if with_policy {
            self.allow_reports_from(&[&self.account_id]).await;
        }
    }

    /// The bucket policy that lets ACM PCA write the reports of these accounts' CAs.
    pub async fn allow_reports_from(&self, accounts: &[&str]) {
        self.s3
            .put_bucket_policy()
            .bucket(&self.bucket)
            .policy(bucket_policy(&self.bucket, accounts))
            .send()
            .await
            .expect("bucket policy");
    }

    pub fn settings(&self) -> Settings {
        self.settings_with(&[])
    }

    /// The function's settings for this world, with `extra` environment variables.
    pub fn settings_with(&self, extra: &[(&str, &str)]) -> Settings {
        let mut env = HashMap::from([
            ("LEDGER_TABLE", self.table.clone()),
            ("REPORT_BUCKET", self.bucket.clone()),
            ("AWS_REGION", REGION.to_string()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        Settings::from_lookup(|k| env.get(k).cloned()).expect("settings")
    }

    /// The environment of the function binary in this world: the account's keys, the local
    /// stack's endpoints and the function's settings, with `extra` on top.
    pub fn function_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_ACM_PCA",
        ]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                std::env::var(k).unwrap_or_else(|_| panic!("{k}")),
            )
        })
        .collect();
        env.extend([
            ("AWS_REGION".into(), REGION.into()),
            (
                "AWS_ACCESS_KEY_ID".into(),
                self.credentials.access_key_id().into(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.credentials.secret_access_key().into(),
            ),
            (
                "AWS_SESSION_TOKEN".into(),
                self.credentials.session_token().unwrap_or_default().into(),
            ),
            ("LEDGER_TABLE".into(), self.table.clone()),
            ("REPORT_BUCKET".into(), self.bucket.clone()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// Objects in the report bucket under a prefix, with their sizes.
    pub async fn objects(&self, prefix: &str) -> Vec<(String, i64)> {
        self.s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list objects")
            .contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap_or_default().to_owned(),
                    o.size().unwrap_or(0),
                )
            })
            .collect()
    }

    pub fn services(&self, clock: Arc<dyn Clock>) -> Services {
        Services::new(self.settings(), &self.sdk, clock)
    }

    /// Services on the machine's clock, pacing creates only as fast as `fast` lets the
    /// emulator take them.
    pub fn fast_services(&self) -> Services {
        self.services(clock()).with_create_period(Duration::ZERO)
    }

    /// Emulator settings for this account only (window, quotas, report delay).
    pub fn configure_emulator(&self, config: Value) {
        configure_account(&self.account_id, config);
    }

    /// For tests not about the quota: the account's create quota raised and reports written
    /// at once, so they run in milliseconds. Never for a test whose figure is about the quota
    /// (overlap, pacing, throughput): those run at AWS's 1 create a second.
    pub fn fast(&self) {
        self.configure_emulator(fast_settings());
    }

    /// CAs made in this account: `(state, count)`, each with one issued certificate.
    pub fn seed(&self, groups: &[(&str, usize)]) -> Vec<Value> {
        self.seed_in(REGION, groups)
    }

    pub fn seed_in(&self, region: &str, groups: &[(&str, usize)]) -> Vec<Value> {
        let cas: Vec<Value> = groups
            .iter()
            .map(
                |(state, count)| json!({"state": state, "count": count, "issued": 1, "revoked": 0}),
            )
            .collect();
        let out = control(
            "POST",
            "/seed",
            Some(json!({"account_id": self.account_id, "region": region, "cas": cas})),
        );
        out["certificate_authorities"]
            .as_array()
            .expect("seeded CAs")
            .clone()
    }

    pub fn seeded_arns(&self, groups: &[(&str, usize)]) -> Vec<String> {
        self.seed(groups)
            .iter()
            .map(|c| c["arn"].as_str().unwrap().to_string())
            .collect()
    }

    /// Create calls the emulator received for this account: `(ca_arn, outcome)`.
    pub fn create_calls(&self) -> Vec<(String, String)> {
        let out = control(
            "GET",
            &format!("/audit-calls?account_id={}", self.account_id),
            None,
        );
        out["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|c| {
                (
                    c["ca_arn"].as_str().unwrap_or_default().to_string(),
                    c["outcome"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub fn accepted_creates(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (arn, outcome) in self.create_calls() {
            if outcome == "Accepted" {
                *counts.entry(arn).or_insert(0) += 1;
            }
        }
        counts
    }

    pub async fn window_item(&self, arn: &str) -> Option<HashMap<String, AttributeValue>> {
        self.dynamodb
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(arn.into()))
            .key(SORT_KEY, AttributeValue::S(WINDOW_RECORD.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get window")
            .item
    }

    /// The CA's report history, newest first, as a person would query it.
    pub async fn history(&self, arn: &str) -> Vec<HashMap<String, AttributeValue>> {
        self.dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :arn AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#sk", SORT_KEY)
            .expression_attribute_values(":arn", AttributeValue::S(arn.into()))
            .expression_attribute_values(":prefix", AttributeValue::S("report#".into()))
            .scan_index_forward(false)
            .consistent_read(true)
            .send()
            .await
            .expect("query history")
            .items
            .unwrap_or_default()
    }
}

/// The policy letting ACM PCA write `bucket`'s audit reports for the CAs of `accounts`: one
/// definition for the Rust and the Python tests and the demo (`local/bucket_policy.json`).
pub fn bucket_policy(bucket: &str, accounts: &[&str]) -> String {
    let template = include_str!("../../local/bucket_policy.json").replace("BUCKET", bucket);
    let mut policy: Value = serde_json::from_str(&template).expect("local/bucket_policy.json");
    policy["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] = json!(accounts);
    policy.to_string()
}

pub fn attr<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn rand_u64() -> u64 {
    u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap())
}

/// Emulator settings for one account only (window, quotas, report delay).
pub fn configure_account(account_id: &str, config: Value) {
    let mut body = config;
    body["account_id"] = json!(account_id);
    control("POST", "/config", Some(body));
}

/// What `World::fast` sets at the emulator.
pub fn fast_settings() -> Value {
    json!({"create_rps": 1000, "report_delay_seconds": 0})
}

/// The machine's clock, as the function reads it.
pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::default())
}

/// The machine's clock moved by `offset`: a later run, without waiting for it.
pub fn clock_at(offset: Duration) -> Arc<dyn Clock> {
    Arc::new(SystemClock { offset })
}

pub fn scheduled() -> RunRequest {
    RunRequest {
        trigger: Trigger::Schedule {
            source: "aws.events".into(),
            id: None,
            time: None,
        },
        scope: RunScope::Every,
        dry_run: false,
        format: None,
    }
}

pub fn manual(arns: &[&str]) -> RunRequest {
    let body = json!({ "certificateAuthorityArns": arns });
    RunRequest::from_value(body).expect("manual request")
}

pub fn invocation(run_id: &str, time: Duration) -> Invocation {
    Invocation {
        run_id: run_id.into(),
        deadline: tokio::time::Instant::now() + time,
        reserve: Invocation::DEFAULT_RESERVE,
        home_account: None,
        partition: None,
    }
}

pub async fn run(services: &Services, request: &RunRequest, run_id: &str) -> RunSummary {
    pca_audit_scheduler::run::run(
        services,
        request,
        &invocation(run_id, Duration::from_secs(600)),
    )
    .await
}

pub fn outcome_of(summary: &RunSummary, arn: &str) -> Value {
    let o = summary
        .certificate_authorities
        .iter()
        .find(|o| o.certificate_authority_arn == arn)
        .unwrap_or_else(|| panic!("no outcome for {arn} in {summary:#?}"));
    serde_json::to_value(o).unwrap()
}
