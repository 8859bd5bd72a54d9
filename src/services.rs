//! The clients and settings a run uses, built once at cold start and kept across invocations:
//! the ledger, S3, SQS, the member accounts entered, and per account-region the ACM PCA client
//! with its pacers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_acmpca::config::Region;

use crate::aws::accounts;
use crate::aws::ledger::Ledger;
use crate::config::Settings;
use crate::domain::ids::Account;
use crate::domain::outcome::AccountError;
use crate::domain::time::Timestamp;
use crate::pacing::Pacer;
use crate::pacing::clock::HostClock;
use crate::pacing::shared::SharedPacer;

/// What one account-region needs: its ACM PCA client and the pacing of its quotas.
pub(crate) struct TargetClient {
    pub(crate) account: Account,
    pub(crate) region: String,
    pub(crate) acm_pca: aws_sdk_acmpca::Client,
    /// CreateCertificateAuthorityAuditReport: one a second, shared with every other
    /// invocation auditing this account-region.
    pub(crate) creates: SharedPacer,
    /// DescribeCertificateAuthorityAuditReport and ListTags.
    pub(crate) reads: Pacer,
}

/// Everything a run uses, built once at cold start and shared by every invocation.
pub struct Services {
    pub settings: Settings,
    pub ledger: Ledger,
    pub(crate) s3: crate::aws::s3::Store,
    pub(crate) sqs: aws_sdk_sqs::Client,
    /// EventBridge, for the run's events (`EVENT_BUS`).
    pub(crate) events: aws_sdk_eventbridge::Client,
    /// Security Hub, for the run's findings (`SECURITY_HUB_FINDINGS`).
    pub(crate) security_hub: aws_sdk_securityhub::Client,
    pub(crate) sdk: SdkConfig,
    /// Member accounts entered, kept across invocations: their clients cache the role's
    /// credentials and renew them when they run out.
    pub(crate) members: tokio::sync::Mutex<HashMap<String, SdkConfig>>,
    /// Per account-region, kept across invocations so a warm function keeps its pacing.
    pub(crate) targets: Mutex<HashMap<(Account, String), Arc<TargetClient>>>,
    pub(crate) create_period: Duration,
    /// The wall clock the create pacers read the ledger's slots on.
    pub(crate) pacer_clock: HostClock,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Services {
    pub fn new(settings: Settings, sdk: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let sdk = &crate::aws::timeouts::with_timeouts(sdk);
        let ledger = Ledger::new(
            aws_sdk_dynamodb::Client::new(sdk),
            settings.ledger_table.clone(),
            settings.history_retention,
        );
        Self {
            ledger,
            s3: crate::aws::s3::Store::new(
                aws_sdk_s3::Client::new(sdk),
                settings.report_bucket_owner.clone(),
            ),
            sqs: aws_sdk_sqs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            security_hub: aws_sdk_securityhub::Client::new(sdk),
            sdk: sdk.clone(),
            members: tokio::sync::Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
            create_period: crate::pacing::CREATE_PERIOD,
            pacer_clock: HostClock::default(),
            clock,
            settings,
        }
    }

    /// Paces creates at another rate than the service's one per second: for tests against an
    /// emulator whose quota was raised, never for AWS, whose quota cannot be raised.
    pub fn with_create_period(mut self, period: Duration) -> Self {
        self.create_period = period;
        self.targets = Mutex::new(HashMap::new());
        self
    }

    /// Reads the create slots on a clock `skew_ms` ahead of this machine's (behind, when
    /// negative): for tests of a host whose clock disagrees with the others'.
    pub fn with_pacer_clock_skew(mut self, skew_ms: i64) -> Self {
        self.pacer_clock = HostClock::skewed(skew_ms);
        self.targets = Mutex::new(HashMap::new());
        self
    }

    /// The SDK configuration of an account: the function's own, or the member role's.
    pub(crate) async fn account_sdk(
        &self,
        account: &Account,
        partition: Option<&str>,
    ) -> Result<SdkConfig, AccountError> {
        let Account::Member(id) = account else {
            return Ok(self.sdk.clone());
        };
        if let Some(sdk) = self.members.lock().await.get(id.as_str()) {
            return Ok(sdk.clone());
        }
        // Not held across the call: accounts are entered side by side. A failure is not
        // kept, so the next run tries the account again.
        let sdk = accounts::enter(
            &self.sdk,
            &self.settings.member_role,
            partition,
            id.as_str(),
        )
        .await?;
        self.members
            .lock()
            .await
            .insert(id.to_string(), sdk.clone());
        Ok(sdk)
    }

    pub(crate) fn target(
        &self,
        account: &Account,
        account_id: &str,
        region: &str,
        sdk: &SdkConfig,
    ) -> Arc<TargetClient> {
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets
            .entry((account.clone(), region.to_owned()))
            .or_insert_with(|| {
                let conf = aws_sdk_acmpca::config::Builder::from(sdk)
                    .region(Region::new(region.to_owned()))
                    .build();
                Arc::new(TargetClient {
                    account: account.clone(),
                    region: region.to_owned(),
                    acm_pca: aws_sdk_acmpca::Client::from_conf(conf),
                    creates: SharedPacer::new(
                        self.ledger.client().clone(),
                        self.ledger.table(),
                        account_id,
                        region,
                        self.create_period,
                    )
                    .with_clock(self.pacer_clock),
                    reads: Pacer::new(crate::pacing::READ_PERIOD),
                })
            })
            .clone()
    }
}

/// Where "now" comes from. The scheduler asks it at each step; tests move it forward to
/// play a later schedule without waiting half an hour.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The machine's clock, optionally shifted (for tests that replay later runs).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock {
    pub offset: Duration,
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now() + self.offset)
    }
}
