use std::sync::Arc;

use aws_config::retry::RetryConfig;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use pca_audit_scheduler::config::Settings;
use pca_audit_scheduler::handler;
use pca_audit_scheduler::scheduler::Services;
use pca_audit_scheduler::time::SystemClock;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env().inspect_err(|e| tracing::error!("{e}"))?;
    // Adaptive retry slows the client down when the service throttles, on top of the
    // pacing of creates, so the quota turns into waiting rather than failed CAs.
    let sdk = aws_config::defaults(pca_audit_scheduler::behavior_version())
        .retry_config(RetryConfig::adaptive().with_max_attempts(5))
        .load()
        .await;
    let services = Services::new(settings, &sdk, Arc::new(SystemClock::default()));
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler::handle(&services, event)
    }))
    .await
}
