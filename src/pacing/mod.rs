//! Pacing: the service's quotas kept, for one invocation (`local`) and for every invocation of
//! an account-region together (`shared`, slots kept in the ledger). The quota's numbers live
//! here once, for both.

pub mod clock;
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

/// The shared pacer reads its slots on the ledger service's clock (`clock`). A host whose
/// answers show it to be off sends reads only to learn by how much, while that is known to no
/// better than `PROBED_WIDTH` ms, and at most `PROBES` in a container's life (each halves what
/// is known: 1 s to about 4 ms in 8, or to the round trip; more find a quick enough answer
/// when the round trip varies).
pub const PROBES: u32 = 24;
pub const PROBED_WIDTH: u64 = 20;
