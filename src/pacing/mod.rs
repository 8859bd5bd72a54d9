//! Pacing: the service's quotas kept, for one invocation (`local`) and for every invocation of
//! an account-region together (`shared`, slots kept in the ledger). The quota's numbers live
//! here once, for both.

pub mod local;
pub mod shared;

use std::time::Duration;

pub use local::Pacer;

/// Spacing of the read calls of one account and region (DescribeCertificateAuthorityAuditReport,
/// ListTags): 16 a second, under the service's 20 a second for each.
pub const READ_PERIOD: Duration = Duration::from_millis(60);

/// A little over one second: the margin absorbs most of the jitter between here and the
/// service; `Pacer::throttled` takes care of the rest.
pub const CREATE_PERIOD: Duration = Duration::from_millis(1020);

/// How much a throttled call widens the spacing, how far it can widen, and how much each
/// accepted call narrows it back.
pub const WIDEN: Duration = Duration::from_millis(20);
pub const MAX_EXTRA: Duration = Duration::from_millis(200);
pub const NARROW: Duration = Duration::from_millis(1);

/// How far ahead of now a shared queue that had fallen behind starts again (see
/// `shared::SharedPacer::restart`).
pub const RESTART_LEAD: Duration = Duration::from_millis(100);
