//! Wiring only: the settings read once, the SDK configured, the services built, and each
//! Lambda event handed to `entry::handle`.

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pca_audit_scheduler::config::Settings;
use pca_audit_scheduler::entry;
use pca_audit_scheduler::services::Services;
use pca_audit_scheduler::services::SystemClock;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    pca_audit_scheduler::telemetry::init_logs();
    let settings = Settings::from_env().inspect_err(|e| tracing::error!("{e}"))?;
    // Adaptive retry slows the clients down when a service throttles (listing, reads, the
    // ledger). Creates are the exception: they run with the SDK's retries off and are retried
    // in the shared pacer's next slot (`acm_pca::request_report`, `quota`).
    let sdk = aws_config::defaults(pca_audit_scheduler::behavior_version())
        .app_name(pca_audit_scheduler::app_name())
        .retry_config(RetryConfig::adaptive().with_max_attempts(5))
        .load()
        .await;
    let services = Services::new(settings, &sdk, Arc::new(SystemClock::default()));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        entry::handle(&services, event)
    }))
    .await
}
