//! pca-audit-scheduler: requests AWS Private CA audit reports on a schedule, one per CA per
//! window, claimed and recorded in a DynamoDB ledger.
//!
//! The tree is the architecture; each layer uses only its own folder and those above it in
//! this list (`tests/layout.rs` checks it):
//!
//! ```text
//! domain/      pure vocabulary and decisions: ids, ARNs, time, requests, reports and the
//!              bucket's key scheme, the window, scope, outcomes, error codes (no I/O)
//! config/      the settings, read from the environment once at cold start and checked
//! aws/         the only code that sends SDK requests: ACM PCA, S3, SQS, Organizations and
//!              STS, and the ledger table (its item schema lives here alone)
//! pacing/      the service's quotas kept: per invocation, and shared through the ledger
//! services.rs  the clients, settings and clock, built once per container
//! invocation.rs  the run id, deadline and home account of one invocation
//! inventory/   what a run covers: account-regions, and the CAs listed in each
//! run/         one audit round, a module a phase (plan, claim, create, record, recover,
//!              follow-up), and its summary
//! evidence/    what an auditor reads: coverage of a period, its manifest, what a report says
//! telemetry.rs the log lines and the CloudWatch metrics of a run and of a coverage request
//! entry/       the Lambda boundary: events read strictly, a run or coverage answered
//! main.rs      wiring only
//! ```

#![warn(clippy::too_many_lines)]

/// The AWS SDK's behaviour version, pinned: `latest` would let an SDK upgrade change the
/// retry and timeout defaults under code that tunes them (creates without SDK retries, the
/// pacers). Moving it on is a change of its own, made with the tests and figures re-run.
pub fn behavior_version() -> aws_config::BehaviorVersion {
    aws_config::BehaviorVersion::v2026_01_12()
}

/// The name every SDK call carries in its user agent (`app/pca-audit-scheduler`), so that
/// CloudTrail's `userAgent` attributes each call to this tool ("Set an app name", AWS SDKs and
/// Tools reference guide, `sdk_ua_app_id`).
pub fn app_name() -> aws_config::AppName {
    // A constant of the characters an app name allows: it cannot fail.
    aws_config::AppName::new("pca-audit-scheduler").expect("a valid app name")
}

pub mod aws;
pub mod config;
pub mod domain;
pub mod entry;
pub mod evidence;
pub mod inventory;
pub mod invocation;
pub mod pacing;
pub mod run;
pub mod services;
pub mod telemetry;
