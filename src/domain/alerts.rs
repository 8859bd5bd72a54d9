//! Alerts: what a run tells people about a CA or an account that needs one of them, as the
//! events it sends to EventBridge (source `pca-audit-scheduler`, one detail-type a kind), and
//! the rule that calls a CA overdue, which coverage's gaps follow too (`longer_than`).

use std::ops::Range;
use std::time::Duration;

use serde::Serialize;

use crate::domain::time::Timestamp;

/// The `source` of every event the function sends. "aws." is kept for AWS's own services
/// (EventBridge user guide, "Amazon EventBridge events": `source` "Identifies the service
/// that generated the event. All events that come from AWS services begin with aws.").
pub const SOURCE: &str = "pca-audit-scheduler";

/// What an alert is about: one EventBridge detail-type each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertKind {
    /// A CA's report ended FAILED, or its create was refused for a reason a retry will not
    /// change.
    AuditFailed,
    /// A CA with no SUCCESS report for longer than the coverage threshold.
    Overdue,
    /// A CA audited again (a SUCCESS report) after an `AuditFailed` or `Overdue` alert.
    AuditedAgain,
    /// An account the function could not enter (its member role).
    AccountNotEntered,
    /// An account-region whose CAs could not be listed.
    RegionNotListed,
}

impl AlertKind {
    pub const ALL: [Self; 5] = [
        Self::AuditFailed,
        Self::Overdue,
        Self::AuditedAgain,
        Self::AccountNotEntered,
        Self::RegionNotListed,
    ];

    /// The event's `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::AuditFailed => "Certificate Authority Audit Failed",
            Self::Overdue => "Certificate Authority Audit Overdue",
            Self::AuditedAgain => "Certificate Authority Audited Again",
            Self::AccountNotEntered => "Account Not Entered",
            Self::RegionNotListed => "Account Region Not Listed",
        }
    }

    /// The name the ledger keeps a raised alert under (`alert_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuditFailed => "auditFailed",
            Self::Overdue => "overdue",
            Self::AuditedAgain => "auditedAgain",
            Self::AccountNotEntered => "accountNotEntered",
            Self::RegionNotListed => "regionNotListed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What a person should do, for the notification and the finding's remediation text.
    pub fn what_to_do(self, error_code: &str) -> &'static str {
        match (self, error_code) {
            (Self::AuditFailed, "AuditReportFailed") => {
                "The service could not write the report: check that the report bucket's policy \
                 lets acm-pca.amazonaws.com write audit-report/* for this CA's account, and \
                 that the bucket's KMS key policy lets the service use the key."
            }
            (Self::AuditFailed, _) => {
                "The service refused the audit report: check the CA's state (only ACTIVE and \
                 DISABLED CAs can be audited), the function's permissions on the CA, and the \
                 error code, then run the function by hand for this CA."
            }
            (Self::Overdue, _) => {
                "No SUCCESS report for longer than the schedule allows: look up the CA's last \
                 error in the run log (or the ledger's last_error_code), fix it, and run the \
                 function by hand for this CA."
            }
            (Self::AuditedAgain, _) => "Nothing: the CA has a SUCCESS report again.",
            (Self::AccountNotEntered, _) => {
                "Deploy the member role (member-role.yaml) in this account, or fix its \
                 trust policy or external id: none of the account's CAs is audited until then."
            }
            (Self::RegionNotListed, _) => {
                "Check the function's (or the member role's) acm-pca:ListCertificateAuthorities \
                 permission in this region: none of its CAs is audited until then."
            }
        }
    }
}

/// A CA's last SUCCESS report, as far as the run knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSuccess {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_key: Option<String>,
    pub requested_at: Timestamp,
}

/// An alert a run raised: its kind and the event's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    #[serde(skip)]
    pub kind: AlertKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority_arn: Option<String>,
    pub account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub reason: String,
    pub error_code: String,
    pub run_id: String,
    /// For a CA: its last SUCCESS report, `null` when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Option<LastSuccess>>,
    /// The report this alert is about (a FAILED one, or the SUCCESS that audited the CA again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// `overdue`: the coverage threshold (interval plus slack) the CA is past.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_minutes: Option<u64>,
    /// `auditedAgain`: the alert it closes (`auditFailed` or `overdue`) and when it was raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes: Option<RaisedAlert>,
    pub what_to_do: String,
}

/// An alert the ledger remembers on a CA's window until the CA is audited again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RaisedAlert {
    pub kind: AlertKind,
    pub raised_at: Timestamp,
}

impl Alert {
    /// An alert about no CA: the account (and region) it names.
    pub fn of_account(kind: AlertKind, account_id: &str, region: Option<&str>) -> Self {
        Self {
            kind,
            certificate_authority_arn: None,
            account_id: account_id.to_owned(),
            region: region.map(str::to_owned),
            reason: String::new(),
            error_code: String::new(),
            run_id: String::new(),
            last_success: None,
            report_id: None,
            threshold_minutes: None,
            closes: None,
            what_to_do: String::new(),
        }
    }

    /// An alert about one CA.
    pub fn of_ca(kind: AlertKind, arn: &str, account_id: &str, region: &str) -> Self {
        Self {
            certificate_authority_arn: Some(arn.to_owned()),
            last_success: Some(None),
            ..Self::of_account(kind, account_id, Some(region))
        }
    }

    /// With its reason, error code and what to do about it.
    pub fn because(mut self, error_code: &str, reason: &str) -> Self {
        self.error_code = error_code.to_owned();
        // The service's messages are short; a long one is cut so that ten events stay far
        // below PutEvents' 256 KB.
        self.reason = reason.chars().take(MAX_REASON_CHARS).collect();
        self.what_to_do = self.kind.what_to_do(error_code).to_owned();
        self
    }

    /// The event's `detail`, as JSON text.
    pub fn detail(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The event's `resources`: the CA's ARN, when it is about one.
    pub fn resources(&self) -> Vec<String> {
        self.certificate_authority_arn.iter().cloned().collect()
    }

    /// The size EventBridge counts for this event's entry ("Calculating Amazon EventBridge
    /// PutEvents event entry size", EventBridge user guide): the UTF-8 bytes of `Source`,
    /// `DetailType`, `Detail` and each of `Resources` (no `Time` is sent).
    pub fn entry_size(&self) -> usize {
        SOURCE.len()
            + self.kind.detail_type().len()
            + self.detail().len()
            + self.resources().iter().map(String::len).sum::<usize>()
    }
}

const MAX_REASON_CHARS: usize = 1000;

/// PutEvents takes at most 10 entries a call (API reference, PutEvents, `Entries`: "Array
/// Members: Minimum number of 1 item. Maximum number of 10 items.")...
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// ... whose total size "must be less than 256KB" (same page; user guide, "Calculating
/// Amazon EventBridge PutEvents event entry size").
pub const MAX_CALL_BYTES: usize = 256 * 1024;

/// The entries, by their sizes, cut into calls PutEvents takes: in order, at most 10 a call,
/// under 256 KB together. An entry too large on its own goes alone (and is refused).
pub fn batches(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, size) in sizes.iter().enumerate() {
        let full = i - start == MAX_ENTRIES_PER_CALL || bytes + size >= MAX_CALL_BYTES;
        if i > start && full {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Whether `until` is more than `threshold` after `since`: a stretch that long without a
/// SUCCESS report is a coverage gap (`evidence::gaps`), and a CA in one now is overdue.
/// Whole seconds, as the ledger keeps instants.
pub fn longer_than(since: Timestamp, until: Timestamp, threshold: Duration) -> bool {
    until.epoch_seconds() > since.epoch_seconds() + threshold.as_secs()
}

/// Whether a CA is overdue at `now`: its last SUCCESS report is more than `threshold` (the
/// interval plus the schedule's slack) ago, or it has none at all (coverage calls the same
/// CA `neverAudited` or `noSuccess`).
pub fn is_overdue(last_success: Option<Timestamp>, now: Timestamp, threshold: Duration) -> bool {
    last_success.is_none_or(|at| longer_than(at, now, threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind's sample in `events/alerts/` (the README's and docs/alerts.md's) is an event as
    /// the function sends it: its detail-type and source, and the detail's fields exactly.
    #[test]
    fn every_kind_has_a_sample_in_events_alerts_shaped_as_sent() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/events/alerts");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            let sample: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let kind = AlertKind::ALL
                .into_iter()
                .find(|k| sample["detail-type"] == k.detail_type())
                .unwrap_or_else(|| panic!("{path:?}: no kind has its detail-type"));
            assert_eq!(sample["source"], SOURCE, "{path:?}");
            let at = Timestamp::from_epoch_seconds(1_000);
            let last = LastSuccess {
                report_id: Some("r".into()),
                s3_key: Some("k".into()),
                requested_at: at,
            };
            let arn = "arn:aws:acm-pca:us-east-1:111111111111:certificate-authority/x";
            let mut sent = match kind {
                AlertKind::AccountNotEntered => Alert::of_account(kind, "2", None),
                AlertKind::RegionNotListed => Alert::of_account(kind, "2", Some("eu-west-1")),
                _ => Alert::of_ca(kind, arn, "1", "us-east-1"),
            }
            .because("Code", "why");
            match kind {
                AlertKind::AuditFailed => {
                    sent.report_id = Some("f".into());
                    sent.last_success = Some(Some(last));
                }
                AlertKind::Overdue => {
                    sent.threshold_minutes = Some(90);
                    sent.last_success = Some(Some(last));
                }
                AlertKind::AuditedAgain => {
                    sent.report_id = Some("s".into());
                    sent.last_success = Some(Some(last));
                    sent.closes = Some(RaisedAlert {
                        kind: AlertKind::Overdue,
                        raised_at: at,
                    });
                }
                _ => {}
            }
            let sent: serde_json::Value = serde_json::from_str(&sent.detail()).unwrap();
            let keys = |v: &serde_json::Value| {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.sort();
                k
            };
            assert_eq!(keys(&sample["detail"]), keys(&sent), "{path:?}");
            seen.push(kind);
        }
        for kind in AlertKind::ALL {
            assert!(
                seen.contains(&kind),
                "no sample of {kind:?} in events/alerts"
            );
        }
    }

    #[test]
    fn events_go_ten_a_call_and_under_256_kb_in_order() {
        let ranges = batches(&[100; 23]);
        assert_eq!(ranges, vec![0..10, 10..20, 20..23]);
        // Of 150 KB: two would pass 256 KB, so one a call, with a small one beside.
        let big = 150 * 1024;
        assert_eq!(batches(&[big, big, 10, big]), vec![0..1, 1..3, 3..4]);
        // One too large for any call still goes (alone), to be refused and counted.
        assert_eq!(batches(&[MAX_CALL_BYTES + 1, 5]), vec![0..1, 1..2]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn a_ca_is_overdue_only_past_the_threshold_or_with_no_success_at_all() {
        let t = Timestamp::from_epoch_seconds;
        let threshold = Duration::from_secs(3600 + 600);
        assert!(!is_overdue(Some(t(1000)), t(1000 + 4200), threshold));
        assert!(is_overdue(Some(t(1000)), t(1000 + 4201), threshold));
        assert!(is_overdue(None, t(1), threshold));
    }

    #[test]
    fn an_event_names_the_ca_its_account_region_reason_and_last_success() {
        let arn = "arn:aws:acm-pca:us-east-1:111111111111:certificate-authority/x";
        let mut a = Alert::of_ca(AlertKind::AuditFailed, arn, "111111111111", "us-east-1")
            .because("AuditReportFailed", &"x".repeat(5000));
        a.run_id = "run-1".into();
        let detail: serde_json::Value = serde_json::from_str(&a.detail()).unwrap();
        assert_eq!(detail["certificateAuthorityArn"], arn);
        assert_eq!(detail["accountId"], "111111111111");
        assert_eq!(detail["region"], "us-east-1");
        assert_eq!(detail["errorCode"], "AuditReportFailed");
        assert_eq!(detail["runId"], "run-1");
        assert!(detail["lastSuccess"].is_null() && detail.get("lastSuccess").is_some());
        assert_eq!(detail["reason"].as_str().unwrap().len(), MAX_REASON_CHARS);
        assert!(detail["whatToDo"].as_str().unwrap().contains("bucket"));
        assert_eq!(a.resources(), vec![arn.to_owned()]);
        let account = Alert::of_account(AlertKind::AccountNotEntered, "222222222222", None);
        let detail: serde_json::Value = serde_json::from_str(&account.detail()).unwrap();
        assert!(
            detail.get("certificateAuthorityArn").is_none() && detail.get("lastSuccess").is_none()
        );
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
        }
    }
}
