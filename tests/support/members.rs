//! Member accounts of a test's organisation: their own CAs, reached by the function through
//! the member role (when the test made one).

use std::collections::HashMap;

use aws_config::SdkConfig;
use serde_json::{Value, json};

use super::stack::{
    accepted_creates_of, account_config, configure_account, fast_account, new_account_id,
    query_api, seed_account, seed_group,
};

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
        let account_id = new_account_id();
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

    /// See `fast_account`.
    pub fn fast(&self) {
        fast_account(&self.account_id);
    }

    pub fn seed_in(&self, region: &str, count: usize) -> Vec<String> {
        seed_account(&self.account_id, region, &[seed_group("ACTIVE", count)])
    }

    pub fn accepted_creates(&self) -> HashMap<String, usize> {
        accepted_creates_of(&self.account_id)
    }
}

/// An organization in the local stack, with the world's account as its management account:
/// its root, and OUs and accounts made under it, as a test's tree needs.
pub struct Organization {
    pub client: aws_sdk_organizations::Client,
    pub root: String,
}

impl Organization {
    pub async fn new(world: &super::World) -> Self {
        let client = aws_sdk_organizations::Client::new(&world.sdk);
        client
            .create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
            .expect("organization");
        let roots = client.list_roots().send().await.expect("roots");
        let root = roots.roots()[0].id().unwrap().to_owned();
        Self { client, root }
    }

    /// A new OU under `parent`: its id.
    pub async fn unit(&self, name: &str, parent: &str) -> String {
        let out = self
            .client
            .create_organizational_unit()
            .parent_id(parent)
            .name(name)
            .send()
            .await;
        out.expect("OU").organizational_unit.unwrap().id.unwrap()
    }

    /// A new account of the organization, moved from the root under `parent`: its id.
    pub async fn account(&self, name: &str, parent: &str) -> String {
        let created = self
            .client
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("account");
        let id = created.create_account_status.unwrap().account_id.unwrap();
        self.client
            .move_account()
            .account_id(&id)
            .source_parent_id(&self.root)
            .destination_parent_id(parent)
            .send()
            .await
            .expect("move");
        id
    }
}
