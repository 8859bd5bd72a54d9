//! What an event asks for, once read: a run (its trigger, scope, dry run and format), one
//! account-region of a fanned-out round (a work item), or the coverage of a period. Reading
//! the events themselves is the entry's job (`entry::events`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::arn::CaArn;
use crate::domain::ids::{Account, Region};
use crate::domain::report::ReportFormat;
use crate::domain::time::Timestamp;

/// One account-region handed to another invocation through the fan-out queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkItem {
    pub account_id: String,
    pub region: String,
    /// The run that fanned out.
    pub parent_run_id: String,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ReportFormat>,
}

/// What started the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Trigger {
    /// An EventBridge rule or an EventBridge Scheduler schedule.
    Schedule {
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        time: Option<String>,
    },
    Manual,
    /// One account-region of a larger round, from the fan-out queue.
    FanOut {
        parent_run_id: String,
    },
}

/// One run, as the event asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub trigger: Trigger,
    pub scope: RunScope,
    pub dry_run: bool,
    /// Overrides the configured format for this run.
    pub format: Option<ReportFormat>,
}

/// The CAs a run covers: one of three, never a mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScope {
    /// Every CA of every audited account in the configured regions.
    Every,
    /// The CAs a manual request names (at least one, each once).
    These(Vec<CaArn>),
    /// The one account-region of a work item from the fan-out queue.
    AccountRegion { account: Account, region: Region },
}

impl RunScope {
    /// The CAs a manual request names; none for the other scopes.
    pub fn named_cas(&self) -> &[CaArn] {
        match self {
            Self::These(arns) => arns,
            _ => &[],
        }
    }
}

/// `{"coverage": {"from": "2026-07-01", "to": "2026-09-30"}}`: dates (a `to` date includes
/// its whole day) or RFC 3339 instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageRequest {
    pub from: Timestamp,
    /// Exclusive end.
    pub to: Timestamp,
    /// `verifyObjects`: each SUCCESS report of the period is looked at in the bucket, at the
    /// version the follow-up pinned.
    pub verify_objects: bool,
}

impl CoverageRequest {
    /// History older than the retention is gone or going (TTL), so a period that needs it
    /// cannot be answered the same way twice. A period's start is covered by a report up to
    /// `lookback` (the coverage threshold) before it, so the period must start at least that
    /// long after the retention's edge: refused otherwise, never answered with a gap that is
    /// only the TTL's doing.
    pub fn check_retention(
        &self,
        now: Timestamp,
        retention: Duration,
        lookback: Duration,
    ) -> Result<(), CoverageRequestError> {
        if self.from >= now {
            return Err(CoverageRequestError::NotPast { from: self.from });
        }
        let oldest = now.minus(retention).plus(lookback);
        if self.from < oldest {
            return Err(CoverageRequestError::BeyondRetention {
                from: self.from,
                days: retention.as_secs() / 86_400,
                lookback_minutes: lookback.as_secs() / 60,
                oldest,
            });
        }
        Ok(())
    }

    /// `evidence/coverage/<from>_<to>/<generated at>_<run id>`, without its extension: one
    /// folder per period, and in it one manifest per request, so that a second request for
    /// the same period never overwrites the evidence of the first. Instants in their compact
    /// form (`20260701T000000Z`) and the run id cut to S3's safe characters: no `:` or other
    /// character that "might require special handling" (S3 user guide, "Naming Amazon S3
    /// objects", safe characters), and far under the key's 1,024 bytes.
    pub fn manifest_stem(&self, generated_at: Timestamp, run_id: &str) -> String {
        let run: String = run_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        format!(
            "evidence/coverage/{}_{}/{}_{run}",
            self.from.compact(),
            self.to.compact(),
            generated_at.compact()
        )
    }
}

/// Why a coverage request is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoverageRequestError {
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    #[error(
        "coverage.{field} `{text}` is neither a date (YYYY-MM-DD) nor an RFC 3339 UTC instant (YYYY-MM-DDThh:mm:ssZ)"
    )]
    NotAnInstant { field: &'static str, text: String },
    #[error("coverage.from ({from}) must be before coverage.to ({to})")]
    OutOfOrder { from: Timestamp, to: Timestamp },
    #[error("coverage.from ({from}) is not in the past: there is nothing to answer yet")]
    NotPast { from: Timestamp },
    #[error(
        "coverage.from ({from}) is too early: the history is kept {days} days (HISTORY_RETENTION_DAYS; DynamoDB's TTL then deletes it) and a report up to {lookback_minutes} minutes before coverage.from counts for the period's start, so the earliest coverage.from answerable now is {oldest}"
    )]
    BeyondRetention {
        from: Timestamp,
        days: u64,
        lookback_minutes: u64,
        oldest: Timestamp,
    },
}
