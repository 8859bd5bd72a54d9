//! pca-audit-scheduler: requests AWS Private CA audit reports on a schedule, one per CA per
//! window, claimed and recorded in a DynamoDB ledger.
//!
//! The layout follows the data: an event becomes a [`request::RunRequest`]; the
//! [`scheduler`] lists CAs through [`authorities`], decides with [`window`], claims and
//! records in the [`ledger`], and returns a [`summary::RunSummary`]; [`handler`] is the
//! Lambda boundary and [`config`] the settings read at cold start.

/// The AWS SDK's behaviour version, pinned: `latest` would let an SDK upgrade change the
/// retry and timeout defaults under code that tunes them (creates without SDK retries, the
/// pacers). Moving it on is a change of its own, made with the tests and figures re-run.
pub fn behavior_version() -> aws_config::BehaviorVersion {
    aws_config::BehaviorVersion::v2026_01_12()
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
