//! The Lambda invocation a run belongs to: its id, its deadline, and whose account it runs in.

use std::time::Duration;

use tokio::time::Instant;

/// The invocation this run belongs to.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Names the run in the ledger and the logs (Lambda's request id).
    pub run_id: String,
    /// When Lambda stops the invocation.
    pub deadline: Instant,
    /// Time kept back at the end for a CA in flight to be requested and recorded:
    /// no new CA is started with less than this left.
    pub reserve: Duration,
    /// The function's own account (from its ARN), when known: entered with its own credentials.
    pub home_account: Option<String>,
    /// The partition of the function's ARN, when known: member roles are in the same one.
    pub partition: Option<String>,
}

impl Invocation {
    pub const DEFAULT_RESERVE: Duration = Duration::from_secs(10);
    /// Kept back too, in Lambda, for the run's events at its end (`run::notify`): a few
    /// PutEvents calls, each ended within the operation timeout.
    pub const ALERTS_RESERVE: Duration = Duration::from_secs(10);

    pub(crate) fn cutoff(&self) -> Instant {
        self.deadline
            .checked_sub(self.reserve)
            .unwrap_or(self.deadline)
    }

    pub(crate) fn time_left(&self) -> bool {
        Instant::now() < self.cutoff()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::timeouts::OPERATION_TIMEOUT;

    #[test]
    fn a_call_started_before_the_cutoff_ends_before_the_deadline() {
        assert!(OPERATION_TIMEOUT < Invocation::DEFAULT_RESERVE);
    }
}
