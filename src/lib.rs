//! pca-audit-scheduler: requests AWS Private CA audit reports on a schedule, one per CA per
//! window, claimed and recorded in a DynamoDB ledger.
//!
//! The layout follows the data: an event becomes a [`request::RunRequest`]; the
//! [`scheduler`] lists CAs through [`authorities`], decides with [`window`], claims and
//! records in the [`ledger`], and returns a [`summary::RunSummary`]; [`handler`] is the
//! Lambda boundary and [`config`] the settings read at cold start.

pub mod accounts;
pub mod arn;
pub mod authorities;
pub mod bucket;
pub mod config;
pub mod fan_out;
pub mod handler;
pub mod ledger;
pub mod request;
pub mod scheduler;
pub mod scope;
pub mod summary;
pub mod time;
pub mod verify;
pub mod window;
