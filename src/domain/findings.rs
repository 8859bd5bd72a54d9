//! Security Hub findings: a CA's alert as a finding in the AWS Security Finding Format (ASFF),
//! imported into the function's own account with its default product; one finding a CA,
//! active while the CA is failed or overdue and archived (compliance PASSED) when it is
//! audited again. Every field cites its ASFF page (Security Hub user guide).

use crate::domain::alerts::{Alert, AlertKind};
use crate::domain::time::Timestamp;

/// "Required top-level ASFF attributes", `SchemaVersion`: "2018-10-08".
pub const SCHEMA_VERSION: &str = "2018-10-08";
/// `GeneratorId`: "The identifier for the solution-specific component (a discrete unit of
/// logic) that generated a finding."
pub const GENERATOR_ID: &str = "pca-audit-scheduler";
/// `Types`, from "ASFF types taxonomy": namespace "Software and Configuration Checks",
/// category "Industry and Regulatory Standards" (audit evidence a standard asks for).
pub const FINDING_TYPE: &str =
    "Software and Configuration Checks/Industry and Regulatory Standards";
/// `Severity.Label` (INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL), the same for the whole
/// life of a finding: BatchImportFindings' API reference says finding providers "should not use
/// BatchImportFindings to update" `Severity` or `Types` once the finding exists.
pub const SEVERITY: &str = "MEDIUM";
/// `Remediation.Recommendation.Url`: the Private CA user guide's audit-report page.
pub const REMEDIATION_URL: &str =
    "https://docs.aws.amazon.com/privateca/latest/userguide/PcaAuditReport.html";
/// API reference, Recommendation, `Text`: "Maximum of 512 length".
const MAX_REMEDIATION_CHARS: usize = 512;
/// API reference, AwsSecurityFinding: `Title` up to 256 characters, `Description` up to 1024.
const MAX_TITLE_CHARS: usize = 256;
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// API reference, BatchImportFindings, `Findings`: "Maximum number of 100 items"...
pub const MAX_FINDINGS_PER_CALL: usize = 100;
/// ... and "The maximum allowed size for a finding is 240 Kb"; ours stay far below (the texts
/// are cut above), so no batching by size is needed.
pub const MAX_FINDING_BYTES: usize = 240 * 1024;

/// `RecordState` ("Required top-level ASFF attributes" lists it among the optional ones:
/// ACTIVE or ARCHIVED) and `Compliance.Status` (PASSED, WARNING, FAILED, NOT_AVAILABLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Failed or overdue: ACTIVE, compliance FAILED.
    Open,
    /// Audited again: ARCHIVED, compliance PASSED, and the workflow set to RESOLVED.
    Resolved,
}

impl State {
    pub fn record_state(self) -> &'static str {
        match self {
            Self::Open => "ACTIVE",
            Self::Resolved => "ARCHIVED",
        }
    }

    pub fn compliance_status(self) -> &'static str {
        match self {
            Self::Open => "FAILED",
            Self::Resolved => "PASSED",
        }
    }
}

/// One finding, ready to import: the fields the function sets, as ASFF names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `Id`: "The product-specific identifier for a finding"; stable per CA, so that each
    /// import updates the CA's one finding ("BatchImportFindings for finding providers": a
    /// provider updates a finding by importing it again with the same Id and ProductArn).
    pub id: String,
    /// `ProductArn`: the account's default product (`product_arn`).
    pub product_arn: String,
    /// `AwsAccountId`: the function's own account, which must call BatchImportFindings for
    /// its default product (API reference, BatchImportFindings); the CA's account is in the
    /// resource.
    pub aws_account_id: String,
    /// `CreatedAt` and `UpdatedAt` (ISO 8601, "Required top-level ASFF attributes").
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// `Severity.Label` (`SEVERITY`).
    pub severity: &'static str,
    pub title: String,
    pub description: String,
    /// `Resources[0]`: `Type` "Other" (the ASFF resource list has no Private CA type; "Other
    /// object in ASFF": "The resource type is not one of the provided types. In this case, set
    /// Resource.Type to Other"), `Id` the CA's ARN, `Partition`, `Region` ("Resource
    /// attributes in the ASFF").
    pub resource: Resource,
    /// `Remediation.Recommendation.Text` (at most 512 characters) and `.Url`.
    pub remediation: String,
    pub state: State,
    /// `ProductFields`: the run, the error code and the report ("Optional top-level ASFF
    /// attributes": "A data type where security findings providers can include additional
    /// solution-specific details"), each present only when known.
    pub product_fields: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    pub partition: String,
    pub region: String,
    /// The CA's account (in its ARN, and in the description). No `Details`: the SDK's
    /// `ResourceDetails` is about 31 KB, and a debug build's (de)serializer of it overflows a
    /// 2 MB thread stack; the ARN says it all.
    pub account_id: String,
}

/// An account's default product ARN ("Using custom product integrations" in the Security Hub
/// user guide): `arn:<partition>:securityhub:<region>:<account>:product/<account>/default`.
pub fn product_arn(partition: &str, region: &str, account: &str) -> String {
    format!("arn:{partition}:securityhub:{region}:{account}:product/{account}/default")
}

/// The CA's one finding's `Id`.
pub fn finding_id(ca_arn: &str) -> String {
    format!("{GENERATOR_ID}/{ca_arn}")
}

/// Where findings go: the function's own account, partition and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub partition: String,
    pub region: String,
    pub account: String,
}

/// The finding of a CA's alert at `now`: failed or overdue open it, audited again resolves it;
/// an alert about an account, or without a CA, is no finding.
pub fn of_alert(alert: &Alert, home: &Home, now: Timestamp) -> Option<Finding> {
    let arn = alert.certificate_authority_arn.as_deref()?;
    let (state, title, created_at) = match alert.kind {
        AlertKind::AuditFailed => (State::Open, "audit report failed", now),
        AlertKind::Overdue => (State::Open, "audit overdue", now),
        AlertKind::AuditedAgain => {
            let raised = alert.closes.as_ref().map_or(now, |c| c.raised_at);
            (State::Resolved, "audited again", raised)
        }
        AlertKind::AccountNotEntered | AlertKind::RegionNotListed => return None,
    };
    let region = alert.region.clone().unwrap_or_default();
    let partition = arn.split(':').nth(1).unwrap_or("aws").to_owned();
    let remediation = match alert.kind {
        AlertKind::AuditedAgain => alert.kind.what_to_do(""),
        _ => &alert.what_to_do,
    };
    let mut product_fields = vec![("pca-audit-scheduler/runId", alert.run_id.clone())];
    if !alert.error_code.is_empty() {
        product_fields.push(("pca-audit-scheduler/errorCode", alert.error_code.clone()));
    }
    if let Some(report) = &alert.report_id {
        product_fields.push(("pca-audit-scheduler/reportId", report.clone()));
    }
    Some(Finding {
        id: finding_id(arn),
        product_arn: product_arn(&home.partition, &home.region, &home.account),
        aws_account_id: home.account.clone(),
        created_at,
        updated_at: now,
        severity: SEVERITY,
        title: cut(&format!("Private CA {title}: {arn}"), MAX_TITLE_CHARS),
        description: cut(
            &format!(
                "{} (account {}, region {region}). {}",
                alert.kind.detail_type(),
                alert.account_id,
                alert.reason
            ),
            MAX_DESCRIPTION_CHARS,
        ),
        resource: Resource {
            id: arn.to_owned(),
            partition,
            region,
            account_id: alert.account_id.clone(),
        },
        remediation: cut(remediation, MAX_REMEDIATION_CHARS),
        state,
        product_fields,
    })
}

/// The findings of a run's alerts: one a CA, its first alert's (a CA that failed is overdue
/// too when it never had a SUCCESS: its failure says more), since a call with the same
/// finding twice would leave which one stands to Security Hub.
pub fn of_alerts(alerts: &[Alert], home: &Home, now: Timestamp) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in alerts.iter().filter_map(|a| of_alert(a, home, now)) {
        if !out.iter().any(|o| o.id == f.id) {
            out.push(f);
        }
    }
    out
}

fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alerts::RaisedAlert;

    const ARN: &str = "arn:aws:acm-pca:eu-west-1:222222222222:certificate-authority/x";

    fn home() -> Home {
        Home {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "111111111111".into(),
        }
    }

    #[test]
    fn a_failed_ca_of_another_account_is_an_open_finding_of_ours_naming_the_ca() {
        let now = Timestamp::from_epoch_seconds(1_800_000_000);
        let mut alert = Alert::of_ca(AlertKind::AuditFailed, ARN, "222222222222", "eu-west-1")
            .because("AuditReportFailed", &"y".repeat(3000));
        alert.run_id = "run-1".into();
        alert.report_id = Some("r-1".into());
        let f = of_alert(&alert, &home(), now).unwrap();
        assert_eq!(f.id, format!("pca-audit-scheduler/{ARN}"));
        assert_eq!(
            f.product_arn,
            "arn:aws:securityhub:us-east-1:111111111111:product/111111111111/default"
        );
        assert_eq!(f.aws_account_id, "111111111111");
        assert_eq!(
            f.resource,
            Resource {
                id: ARN.into(),
                partition: "aws".into(),
                region: "eu-west-1".into(),
                account_id: "222222222222".into(),
            }
        );
        assert_eq!(f.state.record_state(), "ACTIVE");
        assert_eq!(f.state.compliance_status(), "FAILED");
        assert_eq!((f.created_at, f.updated_at), (now, now));
        assert!(f.remediation.contains("bucket") && f.remediation.chars().count() <= 512);
        assert!(f.title.contains(ARN) && f.title.chars().count() <= MAX_TITLE_CHARS);
        assert_eq!(f.description.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(
            f.product_fields
                .contains(&("pca-audit-scheduler/reportId", "r-1".into()))
        );
    }

    #[test]
    fn audited_again_resolves_the_same_finding_and_accounts_are_no_findings() {
        let raised = Timestamp::from_epoch_seconds(1_700_000_000);
        let now = Timestamp::from_epoch_seconds(1_800_000_000);
        let mut alert = Alert::of_ca(AlertKind::AuditedAgain, ARN, "222222222222", "eu-west-1")
            .because("", "audited again");
        alert.closes = Some(RaisedAlert {
            kind: AlertKind::Overdue,
            raised_at: raised,
        });
        let f = of_alert(&alert, &home(), now).unwrap();
        assert_eq!(f.id, finding_id(ARN));
        assert_eq!(f.state, State::Resolved);
        assert_eq!(
            (f.state.record_state(), f.state.compliance_status()),
            ("ARCHIVED", "PASSED")
        );
        assert_eq!((f.created_at, f.updated_at), (raised, now));
        assert!(!f.remediation.is_empty());
        let overdue = Alert::of_ca(AlertKind::Overdue, ARN, "222222222222", "eu-west-1")
            .because("Overdue", "late");
        assert_eq!(of_alert(&overdue, &home(), now).unwrap().id, f.id);
        let failed = Alert::of_ca(AlertKind::AuditFailed, ARN, "222222222222", "eu-west-1")
            .because("AuditReportFailed", "denied");
        let both = of_alerts(&[failed, overdue], &home(), now);
        assert_eq!(both.len(), 1, "one finding a CA");
        assert!(both[0].title.contains("failed"));
        for kind in [AlertKind::AccountNotEntered, AlertKind::RegionNotListed] {
            let a = Alert::of_account(kind, "222222222222", Some("eu-west-1"));
            assert_eq!(of_alert(&a, &home(), now), None);
        }
    }
}
