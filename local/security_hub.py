"""BatchImportFindings, GetFindings and BatchUpdateFindings for moto's Security Hub, held to
what the function relies on. moto 5 imports a finding without checking it, keeps whatever a
re-import sends (the customer's Workflow included), ignores GetFindings' Filters, and has no
BatchUpdateFindings at all. `install()` replaces the first two on moto's backend and adds the
third (moto dispatches PATCH /findings/batchupdate to `batch_update_findings` through the
botocore model once the path is routed).

Every rule below cites the AWS page it follows, or says it is assumed and why; the table in
docs/local-stack.md lists them.
"""

import datetime
import json
import threading

from moto.securityhub import urls as securityhub_urls
from moto.securityhub.exceptions import InvalidInputException
from moto.securityhub.exceptions import SecurityHubClientError as RESTError
from moto.securityhub.models import Finding, SecurityHubBackend
from moto.securityhub.responses import SecurityHubResponse

# API reference, BatchImportFindings, `Findings`: "Array Members: Minimum number of 1 item.
# Maximum number of 100 items."; "The maximum allowed size for a finding is 240 Kb. An error is
# returned for any finding larger than 240 Kb."
MAX_FINDINGS = 100
MAX_FINDING_BYTES = 240 * 1024
# User guide, "Required top-level ASFF attributes" (asff-required-attributes.html).
REQUIRED = (
    "AwsAccountId",
    "CreatedAt",
    "Description",
    "GeneratorId",
    "Id",
    "ProductArn",
    "Resources",
    "SchemaVersion",
    "Severity",
    "Title",
    "Types",
    "UpdatedAt",
)
# API reference, BatchImportFindings: "After a finding is created, BatchImportFindings cannot
# be used to update the following finding fields and objects, which Security Hub customers use
# to manage their investigation workflow: Note, UserDefinedFields, VerificationState, Workflow".
CUSTOMER_FIELDS = ("Note", "UserDefinedFields", "VerificationState", "Workflow")
# API reference, WorkflowUpdate, `Status`.
WORKFLOW_STATUSES = ("NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED")
# API reference, BatchUpdateFindings, `FindingIdentifiers`: 1 to 100 items; user guide,
# "BatchUpdateFindings for customers": "update up to 100 existing findings at a time".
MAX_UPDATES = 100
# GetFindings' `Filters` (API reference, AwsSecurityFindingFilters) that the stack serves: the
# string filters of the fields the function writes. Any other is refused, not ignored, so a
# test never passes on a filter the stack did not apply.
FILTER_FIELDS = {
    "Id": lambda f: [f.get("Id")],
    "ProductArn": lambda f: [f.get("ProductArn")],
    "AwsAccountId": lambda f: [f.get("AwsAccountId")],
    "GeneratorId": lambda f: [f.get("GeneratorId")],
    "Title": lambda f: [f.get("Title")],
    "RecordState": lambda f: [f.get("RecordState")],
    "ComplianceStatus": lambda f: [(f.get("Compliance") or {}).get("Status")],
    "WorkflowStatus": lambda f: [(f.get("Workflow") or {}).get("Status")],
    "SeverityLabel": lambda f: [(f.get("Severity") or {}).get("Label")],
    "ResourceId": lambda f: [r.get("Id") for r in f.get("Resources", [])],
    "ResourceType": lambda f: [r.get("Type") for r in f.get("Resources", [])],
}
# API reference, StringFilter, `Comparison`: "Filters that have the same attribute with
# positive comparisons are joined by OR"; "with negative comparisons ... are joined by AND".
POSITIVE = {
    "EQUALS": lambda v, x: v == x,
    "PREFIX": lambda v, x: v is not None and v.startswith(x),
    "CONTAINS": lambda v, x: v is not None and x in v,
}
NEGATIVE = {"NOT_EQUALS": "EQUALS", "PREFIX_NOT_EQUALS": "PREFIX", "NOT_CONTAINS": "CONTAINS"}

_lock = threading.Lock()


def default_product_arn(partition: str, region: str, account: str) -> str:
    """User guide, "Using custom product integrations": an account's own findings use the
    default product ARN `arn:<partition>:securityhub:<region>:<account>:product/<account>/default`."""
    return f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"


def _subscribed(backend: SecurityHubBackend) -> None:
    # Assumed from the API reference's common error InvalidAccessException ("The account
    # doesn't have permission to perform this action"), with moto's own message for an account
    # where Security Hub is not enabled: a finding needs the hub.
    if not backend.enabled:
        raise RESTError("InvalidAccessException", f"Account {backend.account_id} is not subscribed to AWS Security Hub")


def _refusal(finding: dict, backend: SecurityHubBackend) -> str | None:
    """Why one finding of a BatchImportFindings call is refused, if it is."""
    missing = [k for k in REQUIRED if finding.get(k) in (None, "", [])]
    if missing:
        return f"Finding is missing required attributes: {', '.join(missing)}"
    if len(json.dumps(finding).encode()) > MAX_FINDING_BYTES:
        return "Finding is larger than 240 KB"
    # API reference, BatchImportFindings: with the default product ARN, "the identifier of the
    # account that you are calling BatchImportFindings from needs to be the same as the
    # AwsAccountId attribute for the finding".
    if finding["AwsAccountId"] != backend.account_id:
        return f"AwsAccountId {finding['AwsAccountId']} is not the calling account {backend.account_id}"
    own = default_product_arn("aws", backend.region_name, backend.account_id)
    if finding["ProductArn"] != own:
        return f"ProductArn {finding['ProductArn']} is not this account's default product in {backend.region_name}"
    return None


def _reopened(old: dict, new: dict) -> bool:
    """API reference, Workflow, `Status`: Security Hub resets the status from NOTIFIED or
    RESOLVED to NEW when RecordState changes from ARCHIVED to ACTIVE, or the compliance status
    changes from PASSED to WARNING, FAILED or NOT_AVAILABLE."""
    if (old.get("Workflow") or {}).get("Status") not in ("NOTIFIED", "RESOLVED"):
        return False
    archived_to_active = old.get("RecordState") == "ARCHIVED" and new.get("RecordState") == "ACTIVE"
    was = (old.get("Compliance") or {}).get("Status")
    now = (new.get("Compliance") or {}).get("Status")
    return archived_to_active or (was == "PASSED" and now in ("WARNING", "FAILED", "NOT_AVAILABLE"))


def _find(backend: SecurityHubBackend, finding_id: str, product_arn: str) -> Finding | None:
    # A finding is identified by its Id and ProductArn together (API reference,
    # AwsSecurityFindingIdentifier).
    return next((f for f in backend.findings if f.id == finding_id and f.data.get("ProductArn") == product_arn), None)


def batch_import_findings(self: SecurityHubBackend, findings: list[dict]) -> tuple[int, int, list[dict]]:
    _subscribed(self)
    if not 1 <= len(findings) <= MAX_FINDINGS:
        raise InvalidInputException(op="BatchImportFindings", msg="Findings must hold 1 to 100 findings")
    failed, succeeded = [], 0
    with _lock:
        for finding in findings:
            problem = _refusal(finding, self)
            if problem:
                failed.append({"Id": finding.get("Id", ""), "ErrorCode": "InvalidInput", "ErrorMessage": problem})
                continue
            data = {k: v for k, v in finding.items() if k not in CUSTOMER_FIELDS}
            existing = _find(self, finding["Id"], finding["ProductArn"])
            if existing is None:
                # API reference, Workflow: NEW is "the initial state of a finding".
                data["Workflow"] = {"Status": "NEW"}
                self.findings.append(Finding(finding["Id"], data))
            else:
                # A finding provider updates its finding by importing the same Id again (user
                # guide, "BatchImportFindings for finding providers"); the customer's fields stay.
                old = existing.data
                data.update({k: old[k] for k in CUSTOMER_FIELDS if k in old})
                if _reopened(old, data):
                    data["Workflow"] = {"Status": "NEW"}
                existing.data = data
            succeeded += 1
    return len(failed), succeeded, failed


def _matches(finding: dict, filters: dict) -> bool:
    for field, conditions in filters.items():
        if field not in FILTER_FIELDS:
            raise InvalidInputException(op="GetFindings", msg=f"the local stack does not filter on {field}")
        values = FILTER_FIELDS[field](finding)
        positive = [c for c in conditions if c.get("Comparison", "EQUALS") in POSITIVE]
        negative = [c for c in conditions if c.get("Comparison") in NEGATIVE]
        if len(positive) + len(negative) != len(conditions):
            raise InvalidInputException(op="GetFindings", msg=f"unknown comparison in the {field} filter")
        if positive and not any(POSITIVE[c.get("Comparison", "EQUALS")](v, c["Value"]) for c in positive for v in values):
            return False
        if any(POSITIVE[NEGATIVE[c["Comparison"]]](v, c["Value"]) for c in negative for v in values):
            return False
    return True


def get_findings(self: SecurityHubBackend, filters=None, sort_criteria=None, max_results=None, next_token=None):
    _subscribed(self)
    size = int(max_results or 100)
    # API reference, GetFindings, `MaxResults`: "Valid Range: Minimum value of 1. Maximum value of 100."
    if not 1 <= size <= 100:
        raise InvalidInputException(op="GetFindings", msg="MaxResults must be a number between 1 and 100")
    with _lock:
        matching = [f.as_dict() for f in self.findings if _matches(f.data, filters or {})]
    start = int(next_token or 0)
    end = start + size
    return matching[start:end], (str(end) if end < len(matching) else None)


def batch_update_findings(self: SecurityHubBackend, identifiers: list[dict], params: dict) -> tuple[list, list]:
    _subscribed(self)
    if not 1 <= len(identifiers) <= MAX_UPDATES:
        raise InvalidInputException(op="BatchUpdateFindings", msg="FindingIdentifiers must hold 1 to 100 findings")
    status = (params.get("Workflow") or {}).get("Status")
    if status is not None and status not in WORKFLOW_STATUSES:
        raise InvalidInputException(op="BatchUpdateFindings", msg=f"Workflow.Status must be one of {WORKFLOW_STATUSES}")
    processed, unprocessed = [], []
    with _lock:
        for ident in identifiers:
            finding = _find(self, ident.get("Id"), ident.get("ProductArn"))
            if finding is None:
                # API reference, BatchUpdateFindingsUnprocessedFinding, `ErrorCode`.
                unprocessed.append({"FindingIdentifier": ident, "ErrorCode": "FindingNotFound", "ErrorMessage": "Finding not found"})
                continue
            if status is not None:
                finding.data["Workflow"] = {"Status": status}
            if params.get("Note"):
                at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                finding.data["Note"] = {**params["Note"], "UpdatedAt": at}
            # API reference, BatchUpdateFindings: "Updates from BatchUpdateFindings don't affect
            # the value of UpdatedAt for a finding."
            processed.append(ident)
    return processed, unprocessed


def _batch_update_response(self: SecurityHubResponse) -> str:
    params = json.loads(self.body) if self.body else {}
    processed, unprocessed = self.securityhub_backend.batch_update_findings(params.get("FindingIdentifiers", []), params)
    return json.dumps({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed})


_installed = False


def install() -> None:
    """Puts the three operations on moto's Security Hub (idempotent); before the first request,
    when moto builds the service's routes."""
    global _installed
    if _installed:
        return
    _installed = True
    SecurityHubBackend.batch_import_findings = batch_import_findings
    SecurityHubBackend.get_findings = get_findings
    SecurityHubBackend.batch_update_findings = batch_update_findings
    SecurityHubResponse.batch_update_findings = _batch_update_response
    securityhub_urls.url_paths["{0}/findings/batchupdate$"] = SecurityHubResponse.dispatch
