//! One test's world: an account of its own in the local stack, a ledger table as
//! template.yaml declares it and a report bucket; what the function and the emulator left in
//! them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use pca_audit_scheduler::aws::ledger::{PARTITION_KEY, SORT_KEY, WINDOW_RECORD};
use pca_audit_scheduler::config::Settings;
use pca_audit_scheduler::services::{Clock, Services};
use serde_json::{Value, json};

use super::lambda::{clock, invocation, scheduled};
use super::stack::{
    REGION, accepted_creates_of, account_config, arns_of, configure_account, control,
    create_calls_of, fast_account, new_account_id, seed_cas, seed_group, unique_suffix,
};
use pca_audit_scheduler::run::summary::RunSummary;

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
        let account_id = new_account_id();
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

    /// A fast world (see `World::fast`) with `n` active CAs, and services on the machine's
    /// clock.
    pub async fn fast_with_cas(n: usize) -> (Self, Vec<String>, Services) {
        let world = Self::new().await;
        world.fast();
        let arns = world.seeded_arns(&[("ACTIVE", n)]);
        let services = world.fast_services();
        (world, arns, services)
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
        let (index_key, index) = pca_audit_scheduler::aws::ledger::history::ca_index();
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

    /// The bucket policy without its Deny of every writer but Private CA under
    /// `audit-report/`, as an administrator of the bucket's account may put it (or a bucket
    /// of one's own that never had it): anyone with `s3:PutObject` may then write there. For
    /// the tests of what the function does when the evidence is tampered with.
    pub async fn lift_the_writers_deny(&self) {
        let policy: Value =
            serde_json::from_str(&bucket_policy(&self.bucket, &[&self.account_id])).unwrap();
        let only_the_allow =
            json!({"Version": "2012-10-17", "Statement": [policy["Statement"][0]]});
        self.s3
            .put_bucket_policy()
            .bucket(&self.bucket)
            .policy(only_the_allow.to_string())
            .send()
            .await
            .expect("bucket policy without the Deny");
    }

    /// The bucket's policy removed: ACM PCA may no longer write reports into it.
    pub async fn delete_bucket_policy(&self) {
        self.s3
            .delete_bucket_policy()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("delete the bucket policy");
    }

    /// The (empty) report bucket deleted.
    pub async fn delete_bucket(&self) {
        self.s3
            .delete_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("delete the bucket");
    }

    pub fn settings(&self) -> Settings {
        self.settings_with(&[])
    }

    /// The function's settings for this world, with `extra` environment variables.
    pub fn settings_with(&self, extra: &[(&str, &str)]) -> Settings {
        let mut env = HashMap::from([
            ("LEDGER_TABLE", self.table.clone()),
            ("REPORT_BUCKET", self.bucket.clone()),
            // As the template sets it: the bucket's owner, named on every S3 call.
            ("REPORT_BUCKET_OWNER", self.account_id.clone()),
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
            ("REPORT_BUCKET_OWNER".into(), self.account_id.clone()),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    /// An object of the report bucket, as text.
    pub async fn object_text(&self, key: &str) -> String {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
        let bytes = out.body.collect().await.expect("the object's body");
        String::from_utf8(bytes.into_bytes().to_vec()).expect("text")
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

    /// See `fast_account`.
    pub fn fast(&self) {
        fast_account(&self.account_id);
    }

    /// CAs made in this account: `(state, count)`, each with one issued certificate.
    pub fn seed(&self, groups: &[(&str, usize)]) -> Vec<Value> {
        self.seed_in(REGION, groups)
    }

    pub fn seed_in(&self, region: &str, groups: &[(&str, usize)]) -> Vec<Value> {
        let groups: Vec<Value> = groups.iter().map(|(s, n)| seed_group(s, *n)).collect();
        seed_cas(&self.account_id, region, &groups)
    }

    pub fn seeded_arns(&self, groups: &[(&str, usize)]) -> Vec<String> {
        arns_of(&self.seed(groups))
    }

    /// Create calls the emulator received for this account: `(ca_arn, outcome)`.
    pub fn create_calls(&self) -> Vec<(String, String)> {
        create_calls_of(&self.account_id)
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
        accepted_creates_of(&self.account_id)
    }

    /// A run of this account with too little time to wait for its reports (the emulator set
    /// to write them late): each one requested stays CREATING, for the next run to follow up.
    pub async fn run_leaving_reports_creating(&self, services: &Services) -> RunSummary {
        let mut short = invocation("short", Duration::from_secs(14));
        short.home_account = Some(self.account_id.clone());
        pca_audit_scheduler::run::run(services, &scheduled(), &short).await
    }

    /// The emulator writes every report of this account still CREATING, and the next ones at
    /// once.
    pub fn finish_reports(&self) {
        self.configure_emulator(json!({"report_delay_seconds": 0}));
        control(
            "POST",
            "/finish-reports",
            Some(json!({"account_id": self.account_id})),
        );
    }

    /// No window of the CA consumed: nothing claimed, requested or deferred. The item may hold
    /// the alert remembered for the CA (so that it is announced once), nothing else.
    pub async fn assert_no_window_consumed(&self, arn: &str) {
        let window = self.window_item(arn).await.unwrap_or_default();
        for consumed in [
            "lease_run_id",
            "next_eligible_at",
            "last_report_id",
            "last_requested_at",
        ] {
            assert!(!window.contains_key(consumed), "{consumed} on {window:?}");
        }
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
