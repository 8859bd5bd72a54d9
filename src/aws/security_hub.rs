//! Security Hub: one BatchImportFindings call with up to 100 findings (`domain::findings`),
//! and one BatchUpdateFindings call that sets the workflow of resolved ones to RESOLVED.

use std::collections::HashMap;

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingIdentifier, Compliance, ComplianceStatus, Recommendation,
    RecordState, Remediation, Resource, Severity, SeverityLabel, WorkflowStatus, WorkflowUpdate,
};

use crate::aws::ServiceError;
use crate::domain::findings::{
    FINDING_TYPE, Finding, GENERATOR_ID, REMEDIATION_URL, SCHEMA_VERSION,
};

/// Per finding, in order: `None` when it was taken, or its error code and message.
pub type Answers = Vec<Option<(String, String)>>;

fn refused(code: Option<&str>, message: Option<&str>) -> (String, String) {
    let code = code.unwrap_or("Refused").to_owned();
    (code, message.unwrap_or("refused").to_owned())
}

fn asff(f: &Finding) -> AwsSecurityFinding {
    let resource = Resource::builder()
        .r#type("Other")
        .id(&f.resource.id)
        .partition(f.resource.partition.as_str().into())
        .region(&f.resource.region)
        .build();
    let recommendation = Recommendation::builder()
        .text(&f.remediation)
        .url(REMEDIATION_URL)
        .build();
    let fields: HashMap<String, String> = (f.product_fields.iter())
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    AwsSecurityFinding::builder()
        .schema_version(SCHEMA_VERSION)
        .id(&f.id)
        .product_arn(&f.product_arn)
        .generator_id(GENERATOR_ID)
        .aws_account_id(&f.aws_account_id)
        .types(FINDING_TYPE)
        .created_at(f.created_at.to_string())
        .updated_at(f.updated_at.to_string())
        .severity(
            Severity::builder()
                .label(SeverityLabel::from(f.severity))
                .build(),
        )
        .title(&f.title)
        .description(&f.description)
        .resources(resource)
        .remediation(
            Remediation::builder()
                .recommendation(recommendation)
                .build(),
        )
        .compliance(
            Compliance::builder()
                .status(ComplianceStatus::from(f.state.compliance_status()))
                .build(),
        )
        .record_state(RecordState::from(f.state.record_state()))
        .set_product_fields(Some(fields))
        .build()
}

/// Imports one batch (at most 100). BatchImportFindings answers per finding: `FailedFindings`
/// names each refused one by `Id` (API reference, BatchImportFindings, ImportFindingsError).
pub async fn import(
    client: &aws_sdk_securityhub::Client,
    findings: &[Finding],
) -> Result<Answers, ServiceError> {
    let out = client
        .batch_import_findings()
        .set_findings(Some(findings.iter().map(asff).collect()))
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    let failed: HashMap<&str, (String, String)> = (out.failed_findings().iter())
        .filter_map(|e| Some((e.id()?, refused(e.error_code(), e.error_message()))))
        .collect();
    Ok(findings
        .iter()
        .map(|f| failed.get(f.id.as_str()).cloned())
        .collect())
}

/// Sets the workflow of these findings to RESOLVED (at most 100): what a customer does with
/// BatchUpdateFindings; a provider cannot set `Workflow` by importing (API reference,
/// BatchImportFindings). Per finding, in order, as `import` answers.
pub async fn resolve(
    client: &aws_sdk_securityhub::Client,
    findings: &[Finding],
) -> Result<Answers, ServiceError> {
    let ids = findings.iter().map(|f| {
        AwsSecurityFindingIdentifier::builder()
            .id(&f.id)
            .product_arn(&f.product_arn)
            .build()
    });
    let out = client
        .batch_update_findings()
        .set_finding_identifiers(Some(ids.collect()))
        .workflow(
            WorkflowUpdate::builder()
                .status(WorkflowStatus::Resolved)
                .build(),
        )
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    let unprocessed: HashMap<&str, (String, String)> = (out.unprocessed_findings().iter())
        .filter_map(|u| {
            let id = u.finding_identifier()?.id()?;
            Some((id, refused(u.error_code(), u.error_message())))
        })
        .collect();
    Ok(findings
        .iter()
        .map(|f| unprocessed.get(f.id.as_str()).cloned())
        .collect())
}
