"""Checks of template.yaml and member-role.yaml that the linters cannot make.

The IAM drift test derives the function's permissions from the code: every AWS SDK operation
called in src/ (found by name, from the operation modules of the SDK crates cargo downloaded),
and every credentials provider that calls AWS itself, becomes IAM actions, and the role's
`audit-calls` policy must grant exactly those, plus the one action the service checks on the
caller. The template's conditions are evaluated (`render`) for a single-account, an
account-list and an organization deployment: together they grant exactly that, and the
single-account one nothing for other accounts. Run with
.venv-tools/bin/python -m pytest infra_tests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def code_facts() -> dict:
    """What the function's code says of itself, from its own values (examples/facts.rs): the
    metrics it emits, the work item's fields, the ledger's keys and index. Read this way, not
    by parsing Rust files, so that moving or reformatting the code cannot fool a test."""
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "--example", "facts"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)
TEMPLATE_PATH = ROOT / "template.yaml"
MEMBER_ROLE_PATH = ROOT / "member-role.yaml"

# SDK crate -> IAM service prefix.
SDK_CRATES = {
    "aws-sdk-acmpca": "acm-pca",
    "aws-sdk-dynamodb": "dynamodb",
    "aws-sdk-s3": "s3",
    "aws-sdk-organizations": "organizations",
    "aws-sdk-sqs": "sqs",
    "aws-sdk-eventbridge": "events",
}

# Credentials providers of aws-config that call AWS with the role's own credentials, named in
# the code as a type, not as a `.<operation>(` call: the member roles are assumed through
# AssumeRoleProvider, which calls sts:AssumeRole.
CREDENTIAL_PROVIDERS = {"AssumeRoleProvider": {"sts:AssumeRole"}}

# Operations whose IAM actions are not `service:OperationName`.
ACTION_EXCEPTIONS = {
    # A transaction is authorised item by item; ours holds an Update and a Put.
    ("dynamodb", "transact_write_items"): {"dynamodb:PutItem", "dynamodb:UpdateItem"},
    ("dynamodb", "transact_get_items"): {"dynamodb:GetItem"},
    ("s3", "head_bucket"): {"s3:ListBucket"},
    ("s3", "list_objects"): {"s3:ListBucket"},
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    # With a version id, S3 also asks s3:GetObjectVersion (S3 API reference, GetObject and
    # HeadObject, "Permissions"); the pinned version is what is read and verified.
    ("s3", "get_object"): {"s3:GetObject", "s3:GetObjectVersion"},
    ("s3", "head_object"): {"s3:GetObject", "s3:GetObjectVersion"},
    ("s3", "list_object_versions"): {"s3:ListBucketVersions"},
    # A multipart upload is authorised as s3:PutObject, part by part (S3 user guide,
    # "Multipart upload API and permissions").
    ("s3", "create_multipart_upload"): {"s3:PutObject"},
    ("s3", "upload_part"): {"s3:PutObject"},
    ("s3", "complete_multipart_upload"): {"s3:PutObject"},
    # A batch is authorised as its single action.
    ("sqs", "send_message_batch"): {"sqs:SendMessage"},
    ("sqs", "delete_message_batch"): {"sqs:DeleteMessage"},
    ("sqs", "change_message_visibility_batch"): {"sqs:ChangeMessageVisibility"},
}

# Not called by the code, granted on purpose: CreateCertificateAuthorityAuditReport checks that
# the calling principal may write to the bucket (AWS_FACTS.md, "IAM for the function").
# s3:PutObject is also called, for the coverage manifest; kms:GenerateDataKey and kms:Decrypt
# are what S3 needs of the caller to write that manifest in parts with the bucket's own key
# (SSE-KMS), held to evidence/* by the encryption context.
DOCUMENTED_EXTRAS = {"s3:PutObject", "kms:GenerateDataKey", "kms:Decrypt"}
# Granted only with the stack's own key (ReportEncryption SSE-KMS).
SSE_KMS_ONLY = {"kms:GenerateDataKey", "kms:Decrypt"}

# ReadReports=true needs nothing more: each report is pinned with HeadObject (s3:GetObject,
# and kms:Decrypt with the stack's SSE-KMS key) whatever the setting, and the ledger Query
# that finds the CA's previous report is granted anyway, for coverage.
READING_ACTIONS: set[str] = set()
READING_EXTRAS: set[str] = set()

# The only actions that may have Resource "*". ListCertificateAuthorities and ListAccounts
# support no resource-level permission; ListAccountsForParent and ListChildren read the tree
# under the OUs or roots of AUDIT_ORGANIZATIONAL_UNITS, DescribeAccount and ListParents one
# account a work item or a manual request names (read-only, the organization's only).
STAR_RESOURCE_ACTIONS = {
    "acm-pca:ListCertificateAuthorities",
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListChildren",
    "organizations:DescribeAccount",
    "organizations:ListParents",
}

# What only a deployment auditing other accounts may be granted: assuming their roles,
# discovering the organization's accounts, sending fan-out work items.
CROSS_ACCOUNT_ACTIONS = {
    "sts:AssumeRole",
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListChildren",
    "organizations:DescribeAccount",
    "organizations:ListParents",
    "sqs:SendMessage",
}

# What Lambda's SQS event source mapping does with the function's role (policy
# `fanout-event-source`): not calls of the code.
EVENT_SOURCE_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
}

ENV_VARS = {
    "EVENT_BUS",
    "SECURITY_HUB_FINDINGS",
    "LEDGER_TABLE",
    "REPORT_BUCKET",
    "REPORT_BUCKET_OWNER",
    "REPORT_FORMAT",
    "MIN_INTERVAL_MINUTES",
    "AUDIT_REGIONS",
    "AUDIT_CA_STATES",
    "HISTORY_RETENTION_DAYS",
    "COVERAGE_SLACK_MINUTES",
    "MAX_CONCURRENCY",
    "AUDIT_ACCOUNTS",
    "AUDIT_ORGANIZATIONAL_UNITS",
    "MEMBER_ROLE_NAME",
    "MEMBER_ROLE_EXTERNAL_ID",
    "EXEMPT_CA_ARNS",
    "REQUIRED_TAGS",
    "AUDIT_CA_TYPES",
    "FANOUT_QUEUE_URL",
    "FANOUT_THRESHOLD",
    "READ_REPORTS",
    "REPORT_KMS_KEY_ARN",
}

# Environment variable -> the template parameter it is set from, as it is.
ENV_FROM_PARAMETER = {
    "EVENT_BUS": "EventBus",
    "SECURITY_HUB_FINDINGS": "SecurityHubFindings",
    "REPORT_FORMAT": "ReportFormat",
    "MIN_INTERVAL_MINUTES": "MinIntervalMinutes",
    "AUDIT_REGIONS": "AuditRegions",
    "AUDIT_CA_STATES": "AuditCaStates",
    "HISTORY_RETENTION_DAYS": "HistoryRetentionDays",
    "COVERAGE_SLACK_MINUTES": "CoverageSlackMinutes",
    "MAX_CONCURRENCY": "MaxConcurrency",
    "AUDIT_ACCOUNTS": "AuditAccounts",
    "AUDIT_ORGANIZATIONAL_UNITS": "AuditOrganizationalUnits",
    "MEMBER_ROLE_NAME": "MemberRoleName",
    "MEMBER_ROLE_EXTERNAL_ID": "MemberRoleExternalId",
    "EXEMPT_CA_ARNS": "ExemptCaArns",
    "REQUIRED_TAGS": "RequiredTags",
    "AUDIT_CA_TYPES": "AuditCaTypes",
    "FANOUT_THRESHOLD": "FanOutThreshold",
    "READ_REPORTS": "ReadReports",
}

# The deployments the template's conditions tell apart.
SINGLE_ACCOUNT: dict[str, str] = {}
ACCOUNT_LIST = {"AuditAccounts": "111111111111,222222222222"}
ORGANIZATION = {
    "AuditAccounts": "ORGANIZATION",
    "OrganizationId": "o-abcdefghij",
    "AuditOrganizationalUnits": "ou-ab12-cdefgh34",
}
EXISTING_BUCKET = {"ExistingReportBucketName": "central-evidence"}
SCENARIOS = {
    "single-account": SINGLE_ACCOUNT,
    "account-list": ACCOUNT_LIST,
    "organization": ORGANIZATION,
    "single-account, existing bucket": EXISTING_BUCKET,
    "organization, existing bucket": {**ORGANIZATION, **EXISTING_BUCKET},
    "account-list, SSE-KMS": {**ACCOUNT_LIST, "ReportEncryption": "SSE-KMS"},
    "single-account, reading reports": {"ReadReports": "true"},
    "organization, SSE-KMS, reading reports": {**ORGANIZATION, "ReportEncryption": "SSE-KMS", "ReadReports": "true"},
    "single-account, existing bucket, reading reports": {**EXISTING_BUCKET, "ReadReports": "true"},
    "single-account, callers write reports": {"CallerWriteGrant": "AuditReports"},
    "account-list, callers write reports": {**ACCOUNT_LIST, "CallerWriteGrant": "AuditReports"},
    "organization, existing bucket, callers write reports": {**ORGANIZATION, **EXISTING_BUCKET, "CallerWriteGrant": "AuditReports"},
}


# --------------------------------------------------------------------------------------------
# Helpers: the SDK's operations, the calls in the code, and their IAM actions
# --------------------------------------------------------------------------------------------


def cargo_registry_src() -> Path:
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    return cargo_home / "registry" / "src"


def locked_versions(lock_path: Path) -> dict[str, str]:
    """Package name -> version, from Cargo.lock (the crate versions the build uses)."""
    versions: dict[str, str] = {}
    name = None
    for line in lock_path.read_text().splitlines():
        if line.startswith("name = "):
            name = line.split('"')[1]
        elif line.startswith("version = ") and name is not None:
            versions.setdefault(name, line.split('"')[1])
            name = None
    return versions


def sdk_operations(registry_src: Path, lock_path: Path | None = None) -> dict[str, set[str]]:
    """IAM service prefix -> the snake_case operation names of its SDK crate.

    Read from the crate's `src/operation/` module directories, in the version Cargo.lock pins
    when that one is downloaded. Fails the test clearly when a crate is missing.
    """
    versions = locked_versions(lock_path) if lock_path and lock_path.exists() else {}
    operations: dict[str, set[str]] = {}
    for crate, service in SDK_CRATES.items():
        candidates = sorted(registry_src.glob(f"*/{crate}-[0-9]*/src/operation"))
        wanted = versions.get(crate)
        pinned = [c for c in candidates if c.parent.parent.name == f"{crate}-{wanted}"]
        chosen = pinned or candidates[-1:]
        if not chosen:
            pytest.fail(
                f"{crate} is not in {registry_src}: run `cargo fetch` (or any cargo build) "
                "first, so that the SDK's operation names can be read from its sources"
            )
        names = {p.name for p in chosen[0].iterdir() if p.is_dir()}
        if not names:
            pytest.fail(f"no operation modules under {chosen[0]}")
        operations[service] = names
    return operations


_LINE_COMMENT = re.compile(r"//.*$", re.MULTILINE)
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_METHOD_CALL = re.compile(r"\.\s*([a-z][a-z0-9_]*)\s*\(")


def called_operations(src_dir: Path, operations: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(service, operation) for every `.<operation>(` in the Rust files under src_dir.

    Comments are left out (a doc comment naming a call is not a call). A name that several
    SDKs share counts for each of them: the test errs towards asking for a permission.
    """
    found: set[tuple[str, str]] = set()
    for path in sorted(src_dir.rglob("*.rs")):
        code = _BLOCK_COMMENT.sub("", _LINE_COMMENT.sub("", path.read_text()))
        for name in _METHOD_CALL.findall(code):
            for service, names in operations.items():
                if name in names:
                    found.add((service, name))
    return found


def provider_actions(src_dir: Path) -> set[str]:
    """IAM actions of the credentials providers (CREDENTIAL_PROVIDERS) named in the code."""
    actions: set[str] = set()
    for path in sorted(src_dir.rglob("*.rs")):
        code = _BLOCK_COMMENT.sub("", _LINE_COMMENT.sub("", path.read_text()))
        for provider, provided in CREDENTIAL_PROVIDERS.items():
            if re.search(rf"\b{provider}\b", code):
                actions |= provided
    return actions


def iam_actions(calls: set[tuple[str, str]]) -> set[str]:
    actions: set[str] = set()
    for service, op in calls:
        mapped = ACTION_EXCEPTIONS.get((service, op))
        if mapped is None:
            mapped = {f"{service}:" + "".join(part.capitalize() for part in op.split("_"))}
        actions |= mapped
    return actions


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(policy_document) -> list[dict]:
    return as_list(policy_document["Statement"])


# --------------------------------------------------------------------------------------------
# Helpers: the template as CloudFormation deploys it for given parameter values
# --------------------------------------------------------------------------------------------

_NO_VALUE = object()


def render(template: dict, parameters: dict[str, str]) -> dict:
    """The template with its conditions evaluated for these parameter values (the rest at
    their defaults): every Fn::If resolved, AWS::NoValue dropped, and the resources and
    outputs whose condition is false left out. Refs, Subs and GetAtts stay as they are."""
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    unknown = set(parameters) - set(values)
    assert not unknown, f"no such parameters: {unknown}"
    values.update(parameters)
    conditions: dict[str, bool] = {}

    def value(node):
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return values.get(node["Ref"], node["Ref"])
        return str(node)

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = evaluate(template["Conditions"][name])
        return conditions[name]

    def evaluate(node) -> bool:
        ((function, args),) = node.items()
        if function == "Fn::Equals":
            return value(args[0]) == value(args[1])
        if function == "Fn::Not":
            return not evaluate(args[0])
        if function == "Fn::And":
            return all(evaluate(a) for a in args)
        if function == "Fn::Or":
            return any(evaluate(a) for a in args)
        if function == "Condition":
            return condition(args)
        raise AssertionError(f"unknown condition function {function}")

    def resolve(node):
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, if_true, if_false = node["Fn::If"]
                return resolve(if_true if condition(name) else if_false)
            if node == {"Ref": "AWS::NoValue"}:
                return _NO_VALUE
            resolved = {k: resolve(v) for k, v in node.items()}
            return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
        if isinstance(node, list):
            return [v for v in (resolve(item) for item in node) if v is not _NO_VALUE]
        return node

    rendered = {}
    for section in ("Resources", "Outputs"):
        rendered[section] = {
            name: resolve(body)
            for name, body in template.get(section, {}).items()
            if "Condition" not in body or condition(body["Condition"])
        }
    rendered["Conditions"] = {name: condition(name) for name in template["Conditions"]}
    return rendered


def role_policy_documents(resources: dict) -> dict[str, dict]:
    role = resources["AuditFunctionRole"]["Properties"]
    return {p["PolicyName"]: p["PolicyDocument"] for p in role["Policies"]}


def granted_actions(document) -> set[str]:
    actions: set[str] = set()
    for statement in statements(document):
        assert statement["Effect"] == "Allow"
        actions |= set(as_list(statement["Action"]))
    return actions


def statement_by_sid(document, sid: str) -> dict:
    (statement,) = [s for s in statements(document) if s.get("Sid") == sid]
    return statement


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def template() -> dict:
    tpl, matches = decode(str(TEMPLATE_PATH))
    assert not matches, f"template.yaml does not parse: {matches}"
    return tpl


@pytest.fixture(scope="session")
def resources(template) -> dict:
    return template["Resources"]


@pytest.fixture(scope="session")
def rendered(template) -> dict[str, dict]:
    """Each scenario's template as deployed (see render)."""
    return {name: render(template, parameters) for name, parameters in SCENARIOS.items()}


@pytest.fixture(scope="session")
def member_template() -> dict:
    tpl, matches = decode(str(MEMBER_ROLE_PATH))
    assert not matches, f"member-role.yaml does not parse: {matches}"
    return tpl


@pytest.fixture(scope="session")
def operations() -> dict[str, set[str]]:
    return sdk_operations(cargo_registry_src(), ROOT / "Cargo.lock")


@pytest.fixture(scope="session")
def function_props(resources) -> dict:
    return resources["AuditFunction"]["Properties"]


@pytest.fixture(scope="session")
def role_policies(rendered) -> dict[str, dict]:
    """The role of the deployment that grants the most: the organization's."""
    return role_policy_documents(rendered["organization"]["Resources"])


# --------------------------------------------------------------------------------------------
# The scanner itself, on a fake source tree
# --------------------------------------------------------------------------------------------

FAKE_OPERATIONS = {
    "acm-pca": {"list_certificate_authorities", "create_certificate_authority_audit_report"},
    "dynamodb": {"batch_get_item", "update_item", "put_item", "transact_write_items", "query"},
    "s3": {"head_bucket", "put_object", "list_objects_v2"},
}


def test_scanner_finds_calls_across_files_and_lines_and_ignores_comments(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "lib.rs").write_text(
        "fn a(c: &Client) {\n"
        "    c.list_certificate_authorities()\n"
        "        .into_paginator().items().send();\n"
        "    // c.put_object() is done by the service, not by us\n"
        "    /* c.query(\n       ) */\n"
        "    let x = builder.update(window).put(history); // builder methods, not operations\n"
        "}\n"
    )
    (tmp_path / "store" / "ledger.rs").write_text(
        "client\n    .transact_write_items()\n    .send().await;\n"
        "client. batch_get_item ().send();\n"
        "s3.head_bucket().bucket(b);\n"
    )
    (tmp_path / "notes.txt").write_text("c.put_item()")  # not Rust: ignored

    calls = called_operations(tmp_path, FAKE_OPERATIONS)

    assert calls == {
        ("acm-pca", "list_certificate_authorities"),
        ("dynamodb", "transact_write_items"),
        ("dynamodb", "batch_get_item"),
        ("s3", "head_bucket"),
    }
    assert iam_actions(calls) == {
        "acm-pca:ListCertificateAuthorities",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchGetItem",
        "s3:ListBucket",
    }


def test_action_names_follow_iam_spelling():
    assert iam_actions({("acm-pca", "create_certificate_authority_audit_report")}) == {
        "acm-pca:CreateCertificateAuthorityAuditReport"
    }
    assert iam_actions({("s3", "list_objects_v2"), ("s3", "list_object_versions")}) == {
        "s3:ListBucket",
        "s3:ListBucketVersions",
    }


def test_assume_role_provider_counts_as_sts_assume_role(tmp_path):
    (tmp_path / "accounts.rs").write_text(
        "use aws_config::sts::AssumeRoleProvider;\n"
        "let p = AssumeRoleProvider::builder(arn).session_name(\"audit\");\n"
    )
    (tmp_path / "notes.rs").write_text("// AssumeRoleProvider in a comment only\n")
    assert provider_actions(tmp_path) == {"sts:AssumeRole"}
    (tmp_path / "accounts.rs").write_text("/* AssumeRoleProvider */ fn f() {}\n")
    assert provider_actions(tmp_path) == set()


def test_batch_operations_map_to_their_single_action():
    assert iam_actions({("sqs", "send_message_batch")}) == {"sqs:SendMessage"}
    assert iam_actions(
        {("organizations", "list_accounts_for_parent"), ("acm-pca", "list_tags")}
    ) == {"organizations:ListAccountsForParent", "acm-pca:ListTags"}


def test_missing_sdk_crates_fail_with_a_clear_message(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="cargo fetch"):
        sdk_operations(tmp_path)


def test_sdk_operation_names_are_read_from_the_downloaded_crates(operations):
    assert "create_certificate_authority_audit_report" in operations["acm-pca"]
    assert "transact_write_items" in operations["dynamodb"]
    assert "head_bucket" in operations["s3"]
    assert "list_accounts_for_parent" in operations["organizations"]
    assert "send_message_batch" in operations["sqs"]


# --------------------------------------------------------------------------------------------
# IAM: the function's role
# --------------------------------------------------------------------------------------------


def code_actions(operations) -> tuple[set[tuple[str, str]], set[str]]:
    """The code's calls, and the IAM actions they and its credentials providers need."""
    calls = called_operations(ROOT / "src", operations)
    assert calls, "no AWS SDK call found in src/: is the scanner looking in the right place?"
    return calls, iam_actions(calls) | provider_actions(ROOT / "src")


def test_function_role_grants_exactly_what_the_code_calls(operations, rendered):
    """Over every deployment, audit-calls grants exactly the code's actions and the extras;
    the organization's deployment, which uses every feature, grants them all at once."""
    calls, actions = code_actions(operations)
    expected = actions | DOCUMENTED_EXTRAS | READING_EXTRAS

    granted_by = {
        name: granted_actions(role_policy_documents(r["Resources"])["audit-calls"])
        for name, r in rendered.items()
    }
    granted = set().union(*granted_by.values())
    missing, extra = expected - granted, granted - expected
    assert not missing and not extra, (
        f"the code calls {sorted(f'{s}:{o}' for s, o in calls)}; "
        f"not granted: {sorted(missing)}; granted but not called: {sorted(extra)}"
    )
    assert granted_by["organization, SSE-KMS, reading reports"] == expected
    # Without ReadReports, nothing that reads a report; without the stack's own SSE-KMS key,
    # no kms:GenerateDataKey (the coverage manifest's).
    assert granted_by["organization"] == expected - READING_ACTIONS - READING_EXTRAS - SSE_KMS_ONLY
    assert granted_by["account-list, SSE-KMS"] >= SSE_KMS_ONLY


def test_single_account_grants_nothing_for_other_accounts(operations, rendered):
    """Without AuditAccounts: no sts, organizations or fan-out permission, no queue, and
    everything else the code calls is still granted."""
    _, actions = code_actions(operations)
    single = rendered["single-account"]
    policies = role_policy_documents(single["Resources"])
    assert set(policies) == {"audit-calls", "lambda-platform"}
    assert granted_actions(policies["audit-calls"]) == (
        actions | DOCUMENTED_EXTRAS
    ) - CROSS_ACCOUNT_ACTIONS - READING_ACTIONS - SSE_KMS_ONLY
    everything = {a for d in policies.values() for a in granted_actions(d)}
    assert not {a for a in everything if a.startswith(("sts:", "organizations:"))}
    assert not EVENT_SOURCE_ACTIONS & everything
    # sqs:SendMessage only to the OnFailure destination.
    assert statement_by_sid(policies["lambda-platform"], "OnFailureDestination")["Resource"] == {
        "Fn::GetAtt": ["FailedRunQueue", "Arn"]
    }
    assert not [n for n in single["Resources"] if n.startswith("FanOut")]
    assert not [n for n in single["Outputs"] if n.startswith(("FanOut", "MemberRole"))]
    variables = single["Resources"]["AuditFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["FANOUT_QUEUE_URL"] == ""
    bucket_policy = single["Resources"]["ReportBucketPolicy"]["Properties"]["PolicyDocument"]
    assert {s["Sid"] for s in statements(bucket_policy)} == {
        "AcmPcaWritesAuditReports",
        "OnlyPrivateCaWritesReports",
        "DenyInsecureTransport",
    }


def test_account_list_assumes_member_roles_but_never_reads_the_organization(rendered):
    policies = role_policy_documents(rendered["account-list"]["Resources"])
    granted = granted_actions(policies["audit-calls"])
    assert "sts:AssumeRole" in granted and "sqs:SendMessage" in granted
    assert not {a for a in granted if a.startswith("organizations:")}
    assert set(policies) == {"audit-calls", "lambda-platform", "fanout-event-source"}


def test_member_roles_are_the_only_roles_assumed(role_policies):
    statement = statement_by_sid(role_policies["audit-calls"], "AssumeMemberRoles")
    assert as_list(statement["Action"]) == ["sts:AssumeRole"]
    assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"}
    # Held to the audited accounts (tested by evaluation below).
    assert statement["Condition"]


def test_organization_discovery_is_read_only(role_policies):
    statement = statement_by_sid(role_policies["audit-calls"], "OrganizationAccounts")
    assert set(as_list(statement["Action"])) == {
        "organizations:ListAccounts",
        "organizations:ListAccountsForParent",
        "organizations:ListChildren",
        "organizations:DescribeAccount",
        "organizations:ListParents",
    }


def test_own_ca_calls_stay_in_this_account(role_policies):
    statement = statement_by_sid(role_policies["audit-calls"], "OwnCertificateAuthorities")
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:acm-pca:*:${AWS::AccountId}:certificate-authority/*"
    }


def test_fan_out_send_is_to_the_fan_out_queue_only(role_policies):
    statement = statement_by_sid(role_policies["audit-calls"], "FanOutSend")
    assert as_list(statement["Action"]) == ["sqs:SendMessage"]
    assert statement["Resource"] == {"Fn::GetAtt": ["FanOutQueue", "Arn"]}


def test_report_listing_keeps_head_bucket_and_refuses_other_prefixes(rendered):
    """HeadBucket sends no s3:prefix: a plain StringLike on audit-report/* would refuse it.
    IfExists (key absent) and "" (key empty) let it through, with the listings under
    audit-report/, and no listing of another prefix."""
    for name, r in rendered.items():
        document = role_policy_documents(r["Resources"])["audit-calls"]
        statement = statement_by_sid(document, "ReportBucketList")
        assert as_list(statement["Action"]) == ["s3:ListBucket", "s3:ListBucketVersions"], name
        assert statement["Condition"] == {
            "StringLikeIfExists": {"s3:prefix": ["", "audit-report/*"]}
        }


def test_role_policies_by_deployment(resources, rendered):
    role = resources["AuditFunctionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert resources["AuditFunction"]["Properties"]["Role"] == {
        "Fn::GetAtt": ["AuditFunctionRole", "Arn"]
    }
    for name, r in rendered.items():
        policies = set(role_policy_documents(r["Resources"]))
        if name.startswith("single-account"):
            assert policies == {"audit-calls", "lambda-platform"}, name
        else:
            assert policies == {"audit-calls", "lambda-platform", "fanout-event-source"}, name


def test_event_source_policy_is_exactly_polling_the_fan_out_queue(role_policies):
    by_action = {}
    for statement in statements(role_policies["fanout-event-source"]):
        for action in as_list(statement["Action"]):
            by_action[action] = statement["Resource"]
    assert by_action == {a: {"Fn::GetAtt": ["FanOutQueue", "Arn"]} for a in EVENT_SOURCE_ACTIONS}


def test_only_listing_actions_have_a_star_resource(rendered):
    for scenario, r in rendered.items():
        for name, document in role_policy_documents(r["Resources"]).items():
            for statement in statements(document):
                actions = set(as_list(statement["Action"]))
                assert not any("*" in a for a in actions), f"{name}: wildcard action in {actions}"
                if "*" in as_list(statement["Resource"]):
                    assert actions <= STAR_RESOURCE_ACTIONS, f"{scenario}/{name}: {actions} on *"


def test_lambda_platform_policy_is_logs_and_the_failure_queue(role_policies):
    by_action = {}
    for statement in statements(role_policies["lambda-platform"]):
        for action in as_list(statement["Action"]):
            by_action[action] = statement["Resource"]
    assert by_action == {
        "logs:CreateLogStream": {"Fn::GetAtt": ["AuditLogGroup", "Arn"]},
        "logs:PutLogEvents": {"Fn::GetAtt": ["AuditLogGroup", "Arn"]},
        "sqs:SendMessage": {"Fn::GetAtt": ["FailedRunQueue", "Arn"]},
    }


# The objects Private CA writes into a report bucket for audit reports (user guide, "Encrypting
# your audit reports": its permission test objects at the bucket's root, and the reports).
AUDIT_REPORT_OBJECTS = ("/audit-report/*", "/acm-pca-permission-test-key", "/acm-pca-permission-test-key-private")
PERMISSION_TEST_OBJECTS = ("/acm-pca-permission-test-key", "/acm-pca-permission-test-key-private")


def caller_write_objects(scenario: str) -> tuple[str, ...]:
    """What the callers may write for the service's check: the permission test objects, and
    the reports only with CallerWriteGrant=AuditReports."""
    if "callers write reports" in scenario:
        return PERMISSION_TEST_OBJECTS + ("/audit-report/*",)
    return PERMISSION_TEST_OBJECTS


def test_put_object_is_limited_to_the_permission_test_objects_unless_widened(rendered):
    """The write the service checks on the caller: by default only Private CA's permission
    test objects at the bucket's root; audit-report/* only with CallerWriteGrant=AuditReports."""
    for name, r in rendered.items():
        (statement,) = [
            s
            for s in statements(role_policy_documents(r["Resources"])["audit-calls"])
            if "s3:PutObject" in as_list(s["Action"]) and s.get("Sid") != "CoverageManifest"
        ]
        resources = [item["Fn::Sub"] for item in as_list(statement["Resource"])]
        bucket = "${ReportBucket.Arn}" if "existing bucket" not in name else "arn:${AWS::Partition}:s3:::${ExistingReportBucketName}"
        assert resources == [bucket + suffix for suffix in caller_write_objects(name)], name


def test_caller_write_grant_is_the_same_parameter_in_both_templates(template, member_template):
    central = template["Parameters"]["CallerWriteGrant"]
    member = member_template["Parameters"]["CallerWriteGrant"]
    for parameter in (central, member):
        assert parameter["Default"] == "PermissionTestKeys"
        assert parameter["AllowedValues"] == ["PermissionTestKeys", "AuditReports"]


def test_only_the_function_reads_reports_and_no_role_may_change_one(rendered, member_template):
    """The function pins each report (HeadObject: s3:GetObject, s3:GetObjectVersion) on
    audit-report/* of the report bucket only; the member roles never read one; and no role may
    delete a report or a version of one."""
    reading = {"s3:GetObject", "s3:GetObjectVersion"}
    changing = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"}
    for scenario, r in rendered.items():
        for name, document in role_policy_documents(r["Resources"]).items():
            for statement in statements(document):
                actions = set(as_list(statement["Action"]))
                assert not actions & changing, f"{scenario}/{name}: {statement}"
                if actions & reading:
                    assert statement["Sid"] == "PinReports", f"{scenario}/{name}: {statement}"
                    assert statement["Resource"]["Fn::Sub"].endswith("/audit-report/*"), statement
    for resource in member_template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in statements(policy["PolicyDocument"]):
                actions = set(as_list(statement["Action"]))
                assert not actions & (reading | changing | {"kms:Decrypt"}), statement


@pytest.mark.parametrize(
    ("scenario", "bucket", "with_key"),
    [
        ("single-account, reading reports", "${ReportBucket.Arn}", False),
        ("organization, SSE-KMS, reading reports", "${ReportBucket.Arn}", True),
        ("single-account, existing bucket, reading reports", "arn:${AWS::Partition}:s3:::${ExistingReportBucketName}", False),
    ],
)
def test_reading_reports_grants_get_object_on_reports_query_on_the_ledger_and_decrypt_via_s3(
    rendered, scenario, bucket, with_key
):
    """Reading and pinning reports: GetObject on audit-report/* of the report bucket only,
    Query on the ledger only (granted for coverage in every mode), and kms:Decrypt on the
    stack's report key through S3 only when it has one."""
    policy = role_policy_documents(rendered[scenario]["Resources"])["audit-calls"]
    read = statement_by_sid(policy, "PinReports")
    assert as_list(read["Action"]) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert read["Resource"] == {"Fn::Sub": bucket + "/audit-report/*"}
    query = [s for s in statements(policy) if "dynamodb:Query" in as_list(s["Action"])]
    assert [q["Resource"] for q in query] == [{"Fn::GetAtt": ["LedgerTable", "Arn"]}]
    # The manifest's own kms:Decrypt (CoverageManifestKey) is held to evidence/*.
    decrypt = [
        s
        for s in statements(policy)
        if "kms:Decrypt" in as_list(s["Action"]) and s.get("Sid") != "CoverageManifestKey"
    ]
    if not with_key:
        assert decrypt == []
        return
    (decrypt,) = decrypt
    assert as_list(decrypt["Action"]) == ["kms:Decrypt"]
    assert decrypt["Resource"] == {"Fn::GetAtt": ["ReportKey", "Arn"]}
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
    }


def test_read_reports_is_off_by_default_and_reaches_the_function(template, function_props):
    parameter = template["Parameters"]["ReadReports"]
    assert parameter["Default"] == "false"
    assert parameter["AllowedValues"] == ["true", "false"]
    assert function_props["Environment"]["Variables"]["READ_REPORTS"] == {"Ref": "ReadReports"}


# --------------------------------------------------------------------------------------------
# The function
# --------------------------------------------------------------------------------------------


def test_every_environment_variable_is_set(template, function_props):
    variables = function_props["Environment"]["Variables"]
    assert set(variables) == ENV_VARS
    # The expected bucket owner: this account, or the one named for an existing bucket.
    assert variables["REPORT_BUCKET_OWNER"] == {
        "Fn::If": ["HasExistingReportBucketOwner", {"Ref": "ExistingReportBucketOwner"}, {"Ref": "AWS::AccountId"}]
    }
    owner = template["Parameters"]["ExistingReportBucketOwner"]
    assert owner["Default"] == ""
    assert [v for v in ("", "111122223333", "1111", "11112222333a") if re.fullmatch(owner["AllowedPattern"], v)] == [
        "",
        "111122223333",
    ]
    assert variables["LEDGER_TABLE"] == {"Ref": "LedgerTable"}
    assert variables["REPORT_BUCKET"] == {
        "Fn::If": ["CreateReportBucket", {"Ref": "ReportBucket"}, {"Ref": "ExistingReportBucketName"}]
    }
    for variable, parameter in ENV_FROM_PARAMETER.items():
        assert parameter in template["Parameters"], parameter
        assert variables[variable] == {"Ref": parameter}, variable
    # The queue only exists with other accounts; without it, the function never fans out.
    assert variables["FANOUT_QUEUE_URL"] == {
        "Fn::If": ["IsMultiAccount", {"Ref": "FanOutQueue"}, ""]
    }


def test_new_settings_defaults(template):
    parameters = template["Parameters"]
    assert parameters["AuditAccounts"]["Default"] == ""
    assert parameters["MemberRoleName"]["Default"] == "PcaAuditSchedulerMember"
    # Not NoEcho: AWS does not treat an external id as a secret, and SAM's guided deploy asks
    # a NoEcho parameter again on every Enter (test_guided_deploy.py).
    assert "NoEcho" not in parameters["MemberRoleExternalId"]
    assert parameters["AuditCaTypes"]["Default"] == "ROOT,SUBORDINATE"
    assert parameters["FanOutThreshold"]["Default"] == 8
    for name in ("AuditOrganizationalUnits", "OrganizationId", "ExemptCaArns", "RequiredTags"):
        assert parameters[name]["Default"] == "", name


@pytest.mark.parametrize(
    ("parameter", "good", "bad"),
    [
        ("AuditAccounts", ["", "ORGANIZATION", "111111111111", "111111111111,222222222222"],
         ["organization", "11111111111", "111111111111, 222222222222", "111111111111,"]),
        ("AuditOrganizationalUnits", ["", "r-ab12", "ou-ab12-cdefgh34,r-ab12"],
         ["ou-ab12", "o-abcdefghij", "r-ab12,"]),
        ("OrganizationId", ["", "o-abcdefghij"], ["o-abc", "r-ab12"]),
        # Split at the commas into aws:RequestedRegion: no spaces, no empty item.
        ("AuditRegions", ["", "us-east-1", "us-east-1,eu-west-1", "us-gov-west-1", "eusc-de-east-1", "ap-southeast-2"],
         ["us-east-1, eu-west-1", "us-east-1,", ",us-east-1", "US-EAST-1", "*", "us-*", "us-east-01"]),
        ("AuditCaTypes", ["ROOT", "SUBORDINATE", "ROOT,SUBORDINATE", "SUBORDINATE,ROOT"],
         ["", "ROOT,", "INTERMEDIATE"]),
        ("RequiredTags", ["", "env=prod", "env=prod,owner", "audit="], ["=prod", "env=prod,"]),
    ],
)
def test_parameter_patterns(template, parameter, good, bad):
    pattern = re.compile(template["Parameters"][parameter]["AllowedPattern"])
    assert all(pattern.fullmatch(v) for v in good), parameter
    assert not any(pattern.fullmatch(v) for v in bad), parameter


def test_organization_settings_are_enforced_by_rules(template):
    rules = template["Rules"]
    organization = rules["OrganizationNeedsItsId"]
    assert organization["RuleCondition"] == {"Fn::Equals": [{"Ref": "AuditAccounts"}, "ORGANIZATION"]}
    assert organization["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationId"}, ""]}]
    }
    units = rules["OrganizationalUnitsNeedTheOrganization"]["Assertions"][0]["Assert"]
    assert units == {"Fn::Equals": [{"Ref": "AuditAccounts"}, "ORGANIZATION"]}


def test_conditions_tell_the_deployments_apart(rendered):
    expected = {
        "single-account": (False, False, False),
        "account-list": (True, False, True),
        "organization": (True, True, False),
    }
    for name, (multi, organization, account_list) in expected.items():
        conditions = rendered[name]["Conditions"]
        assert (
            conditions["IsMultiAccount"],
            conditions["IsOrganization"],
            conditions["IsAccountList"],
        ) == (multi, organization, account_list), name


def test_function_runtime_build_and_limits(resources, function_props):
    metadata = resources["AuditFunction"]["Metadata"]
    assert metadata["BuildMethod"] == "rust-cargolambda"
    assert metadata["BuildProperties"]["Binary"] == "pca-audit-scheduler"
    assert function_props["Runtime"] == "provided.al2023"
    assert function_props["Architectures"] == ["arm64"]
    assert function_props["Handler"] == "bootstrap"
    assert function_props["MemorySize"] == 128
    assert function_props["Timeout"] == 900
    assert function_props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }


def test_reserved_concurrency_default_leaves_room_beyond_fan_out_and_zero_means_none(template):
    """The default reserves the fan-out queue's invocations, the scheduled run and a manual
    run; every deployment the defaults make passes the template's rules."""
    parameters = template["Parameters"]
    reserved = int(parameters["ReservedConcurrency"]["Default"])
    fan_out = int(parameters["FanOutConcurrency"]["Default"])
    assert reserved == fan_out + 2
    assert template["Conditions"]["HasReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, "0"]}]
    }
    for name, scenario in SCENARIOS.items():
        assert refused_by_rules(template, scenario) == [], name


def test_binary_name_matches_the_crate():
    cargo = (ROOT / "Cargo.toml").read_text()
    assert re.search(r'\[\[bin\]\]\s*\nname = "pca-audit-scheduler"', cargo)


def test_logs_are_json_into_the_stack_log_group_with_retention(resources, function_props):
    logging = function_props["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    assert logging["ApplicationLogLevel"] == "INFO"
    assert logging["LogGroup"] == {"Ref": "AuditLogGroup"}
    assert resources["AuditLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_failed_runs_are_retried_once_then_queued(function_props):
    config = function_props["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 1
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["FailedRunQueue", "Arn"]},
    }


# --------------------------------------------------------------------------------------------
# Schedule and queues
# --------------------------------------------------------------------------------------------


def test_schedule_input_is_the_shape_the_function_accepts(resources):
    target = resources["AuditSchedule"]["Properties"]["Target"]
    payload = json.loads(target["Input"])
    sample = json.loads((ROOT / "events" / "scheduler.json").read_text())
    assert payload["source"] == "aws.scheduler"
    assert set(sample) <= set(payload) <= {"source", "executionId", "scheduledTime", "scheduleArn"}
    assert payload["executionId"] == "<aws.scheduler.execution-id>"
    assert payload["scheduledTime"] == "<aws.scheduler.scheduled-time>"
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1


def test_schedule_role_can_invoke_only_the_function_and_its_queue(resources):
    role = resources["AuditScheduleRole"]["Properties"]
    trust = statements(role["AssumeRolePolicyDocument"])[0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    granted = {
        (a, json.dumps(s["Resource"], sort_keys=True))
        for p in role["Policies"]
        for s in statements(p["PolicyDocument"])
        for a in as_list(s["Action"])
    }
    assert granted == {
        ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["AuditFunction", "Arn"]})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]})),
    }


@pytest.mark.parametrize(
    "queue", ["ScheduleDeadLetterQueue", "FailedRunQueue", "FanOutDeadLetterQueue"]
)
def test_queues_are_encrypted_and_alarmed(resources, queue):
    assert resources[queue]["Properties"]["SqsManagedSseEnabled"] is True
    alarms = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and r["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
    ]
    assert len(alarms) == 1
    assert alarms[0]["Threshold"] == 0
    assert alarms[0]["ComparisonOperator"] == "GreaterThanThreshold"


def test_every_queue_is_encrypted_and_tls_only(rendered):
    for name, r in rendered.items():
        resources = r["Resources"]
        queues = {n for n, res in resources.items() if res["Type"] == "AWS::SQS::Queue"}
        covered = set()
        for policy in (res for res in resources.values() if res["Type"] == "AWS::SQS::QueuePolicy"):
            props = policy["Properties"]
            (deny,) = [s for s in statements(props["PolicyDocument"]) if s.get("Sid") == "DenyInsecureTransport"]
            assert deny["Principal"] == "*" and deny["Action"] == "sqs:*"
            assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            listed = {q["Ref"] for q in props["Queues"]}
            assert {a["Fn::GetAtt"][0] for a in deny["Resource"]} == listed
            covered |= listed
        assert covered == queues, name
        for queue in queues:
            assert resources[queue]["Properties"]["SqsManagedSseEnabled"] is True, (name, queue)


def test_fan_out_queue_outlasts_six_timeouts_and_has_a_dead_letter_queue(function_props, rendered):
    resources = rendered["organization"]["Resources"]
    queue = resources["FanOutQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function_props["Timeout"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["FanOutDeadLetterQueue", "Arn"]}
    assert 1 <= redrive["maxReceiveCount"] <= 10
    # An item that keeps failing reaches the dead-letter queue before it expires.
    assert queue["MessageRetentionPeriod"] > redrive["maxReceiveCount"] * queue["VisibilityTimeout"]
    dead = resources["FanOutDeadLetterQueue"]["Properties"]
    assert dead["MessageRetentionPeriod"] >= queue["MessageRetentionPeriod"]


def test_fan_out_queue_feeds_the_function_batches_of_ten_without_a_batching_window(rendered):
    resources = rendered["account-list"]["Resources"]
    mappings = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 1
    mapping = mappings[0]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["FanOutQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "AuditFunction"}
    # Ten: a batch's items run side by side (entry::work_items). A standard queue's batch
    # goes above ten only with a batching window, and a window would add to the visibility
    # timeout Lambda asks for (six function timeouts plus the window).
    assert mapping["BatchSize"] == 10
    assert mapping.get("MaximumBatchingWindowInSeconds", 0) == 0
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "FanOutConcurrency"}
    variables = resources["AuditFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["FANOUT_QUEUE_URL"] == {"Ref": "FanOutQueue"}
    assert not any(
        r["Type"] == "AWS::Lambda::EventSourceMapping"
        for r in rendered["single-account"]["Resources"].values()
    )


def test_multi_account_outputs(rendered):
    outputs = rendered["organization"]["Outputs"]
    assert outputs["FanOutQueueUrl"]["Value"] == {"Ref": "FanOutQueue"}
    assert outputs["MemberRoleName"]["Value"] == {"Ref": "MemberRoleName"}
    assert outputs["AuditFunctionRoleArn"]["Value"] == {"Fn::GetAtt": ["AuditFunctionRole", "Arn"]}
    assert "AuditFunctionRoleArn" in rendered["single-account"]["Outputs"]


# --------------------------------------------------------------------------------------------
# Ledger table
# --------------------------------------------------------------------------------------------


def test_ledger_table_keys_ttl_pitr_and_retention(resources):
    table = resources["LedgerTable"]
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    assert props["DeletionProtectionEnabled"] is True
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]} == {
        ("certificate_authority_arn", "HASH"),
        ("record", "RANGE"),
    }
    assert {(a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]} == {
        ("certificate_authority_arn", "S"),
        ("record", "S"),
        # The key of the sparse index (see the next test).
        ("account_id", "S"),
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_ledger_has_a_sparse_keys_only_index_of_window_items(resources):
    """Coverage finds every CA the ledger knows in this index: keyed on account_id, which only
    window items carry, so it holds one item per CA and no history."""
    props = resources["LedgerTable"]["Properties"]
    assert ("account_id", "S") in {
        (a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"]
    }
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ca-windows"
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
        ("account_id", "HASH"),
        ("certificate_authority_arn", "RANGE"),
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    ledger = code_facts()["ledger"]
    assert ledger["caIndex"] == {"name": index["IndexName"], "key": "account_id"}
    assert ledger["partitionKey"] == "certificate_authority_arn"
    assert "account_id = :account" in ledger["claimWrites"], "the claim writes the index's key"


def test_coverage_writes_only_its_manifest_and_reads_only_the_index(rendered):
    """The coverage request's permissions: PutObject on evidence/* of the report bucket,
    Query on the table, Scan on the sparse index only, and with the stack's own key,
    kms:GenerateDataKey through S3 and nothing that decrypts."""
    for name, r in rendered.items():
        document = role_policy_documents(r["Resources"])["audit-calls"]
        manifest = statement_by_sid(document, "CoverageManifest")
        assert manifest["Action"] == ["s3:PutObject", "s3:AbortMultipartUpload"], name
        bucket = "${ReportBucket.Arn}" if "existing bucket" not in name else "arn:${AWS::Partition}:s3:::${ExistingReportBucketName}"
        assert manifest["Resource"] == {"Fn::Sub": bucket + "/evidence/*"}, name
        scan = statement_by_sid(document, "LedgerCaIndex")
        assert scan["Action"] == "dynamodb:Scan", name
        assert scan["Resource"] == {"Fn::Sub": "${LedgerTable.Arn}/index/ca-windows"}, name
        assert "dynamodb:Query" in statement_by_sid(document, "Ledger")["Action"], name
        keys = [s for s in statements(document) if s.get("Sid") == "CoverageManifestKey"]
        for key in keys:
            assert key["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"], name
            assert key["Resource"] == {"Fn::GetAtt": ["ReportKey", "Arn"]}, name
            assert key["Condition"] == {
                "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}},
                "StringLike": {
                    "kms:EncryptionContext:aws:s3:arn": {"Fn::Sub": "${ReportBucket.Arn}/evidence/*"}
                },
            }, name
        # Only the stack's own key is named to the function, for the manifest's encryption.
        env = r["Resources"]["AuditFunction"]["Properties"]["Environment"]["Variables"]
        assert env["REPORT_KMS_KEY_ARN"] == ({"Fn::GetAtt": ["ReportKey", "Arn"]} if keys else ""), name


# --------------------------------------------------------------------------------------------
# Report bucket
# --------------------------------------------------------------------------------------------


def bucket_policy_statements(resources) -> dict[str, dict]:
    document = resources["ReportBucketPolicy"]["Properties"]["PolicyDocument"]
    return {s["Sid"]: s for s in statements(document)}


def test_bucket_policy_lets_only_this_accounts_cas_write(rendered):
    resources = rendered["single-account"]["Resources"]
    statement = bucket_policy_statements(resources)["AcmPcaWritesAuditReports"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "acm-pca.amazonaws.com"}
    assert set(statement["Action"]) == {
        "s3:PutObject",
        "s3:PutObjectAcl",
        "s3:GetBucketAcl",
        "s3:GetBucketLocation",
    }
    condition = statement["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert condition["ArnLike"]["aws:SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:acm-pca:*:${AWS::AccountId}:certificate-authority/*"
    }


def test_bucket_policy_lets_the_listed_accounts_cas_write(rendered):
    statements_ = bucket_policy_statements(rendered["account-list"]["Resources"])
    condition = statements_["AcmPcaWritesAuditReports"]["Condition"]
    assert condition["StringEquals"] == {"aws:SourceAccount": {"Fn::Split": [",", {"Ref": "AuditAccounts"}]}}
    assert condition["ArnLike"]["aws:SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:acm-pca:*:*:certificate-authority/*"
    }
    member = statements_["MemberRolesPassTheWriteCheck"]
    # The listed accounts as principals (no "*" held by aws:PrincipalAccount, which Block
    # Public Access does not count as non-public), narrowed to the member role by ARN.
    assert member["Principal"] == {"AWS": {"Fn::Split": [",", {"Ref": "AuditAccounts"}]}}
    assert set(member["Condition"]) == {"ArnLike"}


def test_bucket_policy_lets_the_organizations_cas_write(rendered):
    statements_ = bucket_policy_statements(rendered["organization"]["Resources"])
    condition = statements_["AcmPcaWritesAuditReports"]["Condition"]
    assert condition["StringEquals"] == {"aws:SourceOrgID": {"Ref": "OrganizationId"}}
    assert "aws:SourceAccount" not in condition["StringEquals"]
    member = statements_["MemberRolesPassTheWriteCheck"]
    assert member["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}


@pytest.mark.parametrize("scenario", ["account-list", "organization", "account-list, callers write reports"])
def test_member_roles_pass_the_write_check_for_the_permission_test_objects_only(rendered, scenario):
    member = bucket_policy_statements(rendered[scenario]["Resources"])["MemberRolesPassTheWriteCheck"]
    assert member["Effect"] == "Allow"
    assert member["Action"] == "s3:PutObject"
    assert member["Resource"] == [{"Fn::Sub": "${ReportBucket.Arn}" + suffix} for suffix in caller_write_objects(scenario)]
    # Only roles of the member role's name, of the audited accounts (principals, or the
    # organization: tested above).
    assert member["Condition"]["ArnLike"] == {
        "aws:PrincipalArn": {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"}
    }


def test_no_allow_is_open_to_everyone_but_by_organization(rendered):
    """S3 user guide, "The meaning of public": a statement with Principal "*" is non-public
    only when held to fixed values of keys such as aws:PrincipalOrgID; aws:PrincipalAccount is
    not one. Every Allow of the bucket policy names its principals, or is the organization's."""
    for name, r in rendered.items():
        if "ReportBucketPolicy" not in r["Resources"]:
            continue
        for statement in bucket_policy_statements(r["Resources"]).values():
            if statement["Effect"] != "Allow" or statement["Principal"] not in ("*", {"AWS": "*"}):
                continue
            assert "aws:PrincipalOrgID" in statement["Condition"].get("StringEquals", {}), (name, statement["Sid"])


def test_private_ca_may_write_only_its_audit_report_objects(rendered):
    """Not bucket/*: an audited account's CRLs (crl/*, the same service principal) cannot be
    pointed into the evidence bucket."""
    for name in ("single-account", "account-list", "organization"):
        statement = bucket_policy_statements(rendered[name]["Resources"])["AcmPcaWritesAuditReports"]
        assert statement["Resource"] == [{"Fn::GetAtt": ["ReportBucket", "Arn"]}] + [
            {"Fn::Sub": "${ReportBucket.Arn}" + suffix} for suffix in AUDIT_REPORT_OBJECTS
        ], name


def only_private_ca(resources) -> dict:
    return bucket_policy_statements(resources)["OnlyPrivateCaWritesReports"]


@pytest.mark.parametrize("scenario", ["single-account", "account-list", "organization"])
def test_only_private_ca_writes_or_deletes_reports(rendered, scenario):
    deny = only_private_ca(rendered[scenario]["Resources"])
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    assert {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
            "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold"} <= set(deny["Action"])
    assert deny["Resource"] == {"Fn::Sub": "${ReportBucket.Arn}/audit-report/*"}
    # Every principal that is not the service: IAM principals carry no aws:PrincipalServiceName.
    assert deny["Condition"] == {"StringNotEqualsIfExists": {"aws:PrincipalServiceName": "acm-pca.amazonaws.com"}}


@pytest.mark.parametrize(
    ("scenario", "members"),
    [("single-account, callers write reports", False), ("account-list, callers write reports", True)],
)
def test_a_widened_caller_grant_excepts_exactly_the_callers_from_the_deny(rendered, scenario, members):
    deny = only_private_ca(rendered[scenario]["Resources"])
    expected = [{"Fn::GetAtt": ["AuditFunctionRole", "Arn"]}]
    if members:
        expected.append({"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}"})
    assert deny["Condition"] == {
        "StringNotEqualsIfExists": {"aws:PrincipalServiceName": "acm-pca.amazonaws.com"},
        "ArnNotLike": {"aws:PrincipalArn": expected},
    }


def test_bucket_refuses_plain_http(rendered):
    statement = bucket_policy_statements(rendered["organization"]["Resources"])["DenyInsecureTransport"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_is_private_versioned_and_retained(resources):
    bucket = resources["ReportBucket"]
    props = bucket["Properties"]
    assert bucket["Condition"] == "CreateReportBucket"
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["ObjectLockEnabled"]["Fn::If"][0] == "HasObjectLock"


def test_object_lock_is_on_by_default_for_as_long_as_the_ledger_remembers(template, rendered):
    parameters = template["Parameters"]
    assert parameters["ReportObjectLockMode"]["Default"] == "GOVERNANCE"
    assert parameters["ReportObjectLockDays"]["Default"] == parameters["HistoryRetentionDays"]["Default"]
    props = rendered["single-account"]["Resources"]["ReportBucket"]["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {
        "Mode": {"Ref": "ReportObjectLockMode"},
        "Days": {"Ref": "ReportObjectLockDays"},
    }
    off = render(template, {"ReportObjectLockDays": "0"})["Resources"]["ReportBucket"]["Properties"]
    assert "ObjectLockEnabled" not in off and "ObjectLockConfiguration" not in off


def test_no_lifecycle_rule_removes_a_report_version_the_ledger_remembers(resources):
    rules = resources["ReportBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    reports = [r for r in rules if "audit-report/".startswith(r.get("Prefix", "")) and r["Status"] == "Enabled"]
    assert reports
    for rule in reports:
        expiration = rule.get("NoncurrentVersionExpiration")
        if expiration is not None:
            assert expiration["NoncurrentDays"] == {"Ref": "HistoryRetentionDays"}, rule["Id"]
        # The current version only ever gets a delete marker (versioned bucket), never removed.
        assert "ExpirationDate" not in rule


def test_an_existing_buckets_owner_needs_an_existing_bucket(template):
    assert refused_by_rules(template, {"ExistingReportBucketOwner": "111122223333"}) == ["BucketOwnerIsForAnExistingBucket"]
    assert refused_by_rules(
        template, {"ExistingReportBucketOwner": "111122223333", "ExistingReportBucketName": "central-evidence"}
    ) == []


def test_key_policy_lets_acm_pca_encrypt_only_this_buckets_objects(resources):
    key = resources["ReportKey"]
    assert key["DeletionPolicy"] == "Retain"
    assert key["Properties"]["EnableKeyRotation"] is True
    (statement,) = [
        s
        for s in statements(key["Properties"]["KeyPolicy"])
        if s["Principal"] == {"Service": "acm-pca.amazonaws.com"}
    ]
    assert set(statement["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert set(statement["Condition"]) == {"StringLike"}
    contexts = statement["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
    bucket_name = resources["ReportBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    # The key policy names the bucket by the same computed name the bucket is given: the
    # bucket's ARN (the encryption context S3 passes with an S3 Bucket Key, which the bucket
    # has) and the objects Private CA writes (the context without one). Not bucket/*: nothing
    # else of the bucket is the service's to encrypt.
    bucket_arn = "arn:${AWS::Partition}:s3:::" + bucket_name[0]
    assert [c["Fn::Sub"][0] for c in contexts] == [bucket_arn] + [bucket_arn + suffix for suffix in AUDIT_REPORT_OBJECTS]
    assert all(c["Fn::Sub"][1] == bucket_name[1] for c in contexts)
    encryption = resources["ReportBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["BucketKeyEnabled"] == {"Fn::If": ["CreateReportKey", True, {"Ref": "AWS::NoValue"}]}


# --------------------------------------------------------------------------------------------
# The member role (member-role.yaml)
# --------------------------------------------------------------------------------------------


def member_role(member_template, **parameters) -> dict:
    return render(member_template, parameters)["Resources"]["MemberRole"]["Properties"]


def test_member_template_is_plain_cloudformation_with_one_role(member_template, template):
    assert "Transform" not in member_template
    assert set(member_template["Resources"]) == {"MemberRole"}
    role = member_template["Resources"]["MemberRole"]
    assert role["Type"] == "AWS::IAM::Role"
    assert role["Properties"]["RoleName"] == {"Ref": "MemberRoleName"}
    assert "ManagedPolicyArns" not in role["Properties"]
    # The central stack assumes the role by the name both default to.
    default = member_template["Parameters"]["MemberRoleName"]["Default"]
    assert default == template["Parameters"]["MemberRoleName"]["Default"] == "PcaAuditSchedulerMember"
    assert "NoEcho" not in member_template["Parameters"]["ExternalId"]


def test_member_role_trusts_only_the_central_function_role(member_template):
    for external_id in ("", "pca-audit-4711"):
        role = member_role(member_template, ExternalId=external_id)
        (trust,) = statements(role["AssumeRolePolicyDocument"])
        assert trust["Effect"] == "Allow"
        assert trust["Action"] == "sts:AssumeRole"
        expected = {"ArnLike": {"aws:PrincipalArn": {"Ref": "CentralFunctionRoleArn"}}}
        if external_id:
            expected["StringEquals"] = {"sts:ExternalId": {"Ref": "ExternalId"}}
        assert trust["Condition"] == expected, external_id


def member_grants(member_template) -> set[tuple[str, str]]:
    role = member_role(member_template)
    return {
        (action, json.dumps(statement["Resource"], sort_keys=True))
        for policy in role["Policies"]
        for statement in statements(policy["PolicyDocument"])
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }


def test_member_role_grants_exactly_the_audit_calls_on_this_accounts_cas(member_template):
    own_cas = json.dumps(
        {"Fn::Sub": "arn:${AWS::Partition}:acm-pca:*:${AWS::AccountId}:certificate-authority/*"}
    )
    assert member_grants(member_template) == {
        ("acm-pca:ListCertificateAuthorities", json.dumps("*")),
        ("acm-pca:CreateCertificateAuthorityAuditReport", own_cas),
        ("acm-pca:DescribeCertificateAuthorityAuditReport", own_cas),
        ("acm-pca:ListTags", own_cas),
        (
            "s3:PutObject",
            json.dumps([{"Fn::Sub": "arn:${AWS::Partition}:s3:::${ReportBucketName}" + suffix} for suffix in PERMISSION_TEST_OBJECTS]),
        ),
    }
    widened = member_role(member_template, CallerWriteGrant="AuditReports")
    (statement,) = [
        s
        for policy in widened["Policies"]
        for s in statements(policy["PolicyDocument"])
        if s.get("Sid") == "ReportWriteCheckedOnCaller"
    ]
    assert statement["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ReportBucketName}" + suffix}
        for suffix in PERMISSION_TEST_OBJECTS + ("/audit-report/*",)
    ]


def test_member_role_grants_what_the_code_calls_in_a_member_account(operations, member_template):
    """Every ACM PCA call of the code is made in the audited account (with the member role
    there), plus the write the service checks on the caller; nothing else."""
    _, actions = code_actions(operations)
    expected = {a for a in actions if a.startswith("acm-pca:")} | DOCUMENTED_EXTRAS - SSE_KMS_ONLY
    assert {action for action, _ in member_grants(member_template)} == expected


# --------------------------------------------------------------------------------------------
# Alarms and suppressions
# --------------------------------------------------------------------------------------------


def test_failed_metric_alarm_matches_the_functions_emf(resources):
    alarm = resources["FailedCertificateAuthoritiesAlarm"]["Properties"]
    assert alarm["Namespace"] == "PcaAuditScheduler"
    assert alarm["MetricName"] == "Failed"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "AuditFunction"}}]
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_function_errors_are_alarmed(resources):
    alarm = resources["FunctionErrorsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "AuditFunction"}}]


def test_every_checkov_suppression_gives_its_reason(resources, member_template):
    for name, resource in {**resources, **member_template["Resources"]}.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 40, f"{name}: {skip['id']} has no reason"


# --------------------------------------------------------------------------------------------
# Rules: only the functions CloudFormation allows there, and what they enforce
# --------------------------------------------------------------------------------------------

# The functions a rule's RuleCondition and Assertions may use ("Rule functions", CloudFormation
# template reference, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference-rules.html),
# and Ref. Anything else (Fn::Select, Fn::Split, Fn::Sub, Condition...) makes the stack fail to
# deploy, and cfn-lint does not check it.
RULE_FUNCTIONS = {
    "Fn::And",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::Equals",
    "Fn::If",
    "Fn::Not",
    "Fn::Or",
    "Fn::RefAll",
    "Fn::ValueOf",
    "Fn::ValueOfAll",
    "Ref",
}


def functions_in(node, path: str = "") -> list[tuple[str, str]]:
    """(path, function) for every intrinsic function call in node, nested ones included. The
    loader (cfnlint's decode) turns the YAML short forms (!Select) into their long form."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if len(node) == 1 and (key.startswith("Fn::") or key in ("Ref", "Condition")):
                found.append((path, key))
            found += functions_in(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += functions_in(item, f"{path}/{i}")
    return found


def rule_functions(template: dict) -> list[tuple[str, str]]:
    """(rule/path, function) for every function of every rule's RuleCondition and assertions."""
    found: list[tuple[str, str]] = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule:
            found += functions_in(rule["RuleCondition"], f"{name}/RuleCondition")
        for i, assertion in enumerate(rule.get("Assertions", [])):
            found += functions_in(assertion["Assert"], f"{name}/Assertions/{i}/Assert")
    return found


def decode_text(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    tpl, matches = decode(str(path))
    assert not matches, matches
    return tpl


def parameter_values(template: dict, parameters: dict[str, str]) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    unknown = set(parameters) - set(values)
    assert not unknown, f"no such parameters: {unknown}"
    values.update(parameters)
    return values


def rule_value(node, values: dict[str, str]):
    """A rule's operand: a parameter's value (a string, as CloudFormation hands it to rules),
    a literal, or a list of those."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return values[node["Ref"]]
        raise AssertionError(f"rule operand not understood here: {node}")
    if isinstance(node, list):
        return [rule_value(item, values) for item in node]
    return str(node)


def rule_holds(node, values: dict[str, str]) -> bool:
    """Evaluates a rule expression of Fn::And, Fn::Or, Fn::Not, Fn::Equals and Fn::Contains,
    with CloudFormation's limits on the number of conditions."""
    ((function, args),) = node.items()
    if function == "Fn::Equals":
        left, right = (rule_value(a, values) for a in args)
        return left == right
    if function == "Fn::Contains":
        strings, string = (rule_value(a, values) for a in args)
        return string in strings
    if function == "Fn::Not":
        (inner,) = args
        return not rule_holds(inner, values)
    if function in ("Fn::And", "Fn::Or"):
        assert 2 <= len(args) <= 10, f"{function} takes 2 to 10 conditions, not {len(args)}"
        results = [rule_holds(a, values) for a in args]
        return all(results) if function == "Fn::And" else any(results)
    raise AssertionError(f"rule function not evaluated here: {function}")


def refused_by_rules(template: dict, parameters: dict[str, str]) -> list[str]:
    """The rules whose assertions refuse these parameter values (CloudFormation then refuses
    to create or update the stack)."""
    values = parameter_values(template, parameters)
    refused = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not rule_holds(rule["RuleCondition"], values):
            continue
        if not all(rule_holds(a["Assert"], values) for a in rule["Assertions"]):
            refused.append(name)
    return refused


def test_rules_use_only_rule_functions(template, member_template):
    for name, tpl in (("template.yaml", template), ("member-role.yaml", member_template)):
        bad = [(where, fn) for where, fn in rule_functions(tpl) if fn not in RULE_FUNCTIONS]
        assert not bad, f"{name}: functions CloudFormation refuses in Rules: {bad}"
    # The walk does reach the rules' functions.
    assert ("ReservedConcurrencyLeavesRoomForFanOut/RuleCondition", "Fn::And") in rule_functions(template)


def test_rule_function_check_catches_the_old_member_role_rule(tmp_path):
    """member-role.yaml's rule before this check: deploying it failed."""
    old = decode_text(
        tmp_path,
        "Parameters:\n"
        "  CentralAccountId: {Type: String}\n"
        "  CentralFunctionRoleArn: {Type: String}\n"
        "Rules:\n"
        "  CentralRoleIsInTheCentralAccount:\n"
        "    Assertions:\n"
        "      - Assert: !Equals\n"
        "          - !Select [4, !Split [':', !Ref CentralFunctionRoleArn]]\n"
        "          - !Ref CentralAccountId\n"
        "        AssertDescription: CentralFunctionRoleArn must be a role of CentralAccountId.\n"
        "Resources:\n"
        "  Topic: {Type: AWS::SNS::Topic}\n",
    )
    bad = {fn for _, fn in rule_functions(old) if fn not in RULE_FUNCTIONS}
    assert bad == {"Fn::Select", "Fn::Split"}


def test_member_role_trusts_the_account_of_the_central_role_arn(member_template):
    """The trusted account comes from CentralFunctionRoleArn itself: no second parameter that
    could name another account."""
    assert "CentralAccountId" not in member_template["Parameters"]
    pattern = re.compile(member_template["Parameters"]["CentralFunctionRoleArn"]["AllowedPattern"])
    for arn, account in [
        ("arn:aws:iam::111122223333:role/pca-audit-scheduler-AuditFunctionRole-AbC123", "111122223333"),
        ("arn:aws-us-gov:iam::444455556666:role/path/with/Role-AbC", "444455556666"),
    ]:
        assert pattern.fullmatch(arn), arn
        role = member_role(member_template, CentralFunctionRoleArn=arn)
        (trust,) = statements(role["AssumeRolePolicyDocument"])
        partition = arn.split(":")[1]
        assert substitute(trust["Principal"]["AWS"], {"CentralFunctionRoleArn": arn},
                          partition) == f"arn:{partition}:iam::{account}:root"


def substitute(node, values: dict[str, str], partition: str = "aws") -> str:
    """Evaluates Fn::Sub (both forms), Fn::Select, Fn::Split and Ref for these values."""
    pseudo = {"AWS::Partition": partition}
    if isinstance(node, str):
        return node
    ((function, args),) = node.items()
    if function == "Ref":
        return {**pseudo, **values}[args]
    if function == "Fn::Select":
        index, items = args
        return substitute_list(items, values, partition)[int(index)]
    if function == "Fn::Sub":
        text, variables = (args, {}) if isinstance(args, str) else args
        known = {**pseudo, **values, **{k: substitute(v, values, partition) for k, v in variables.items()}}
        return re.sub(r"\$\{([\w:]+)\}", lambda m: known[m.group(1)], text)
    raise AssertionError(f"not evaluated here: {function}")


def substitute_list(node, values: dict[str, str], partition: str) -> list[str]:
    ((function, args),) = node.items()
    assert function == "Fn::Split", function
    delimiter, text = args
    return substitute(text, values, partition).split(delimiter)


def test_reserved_concurrency_must_exceed_fan_out_concurrency(template):
    """Whenever fan-out is on (AuditAccounts set) and concurrency is reserved, the rules refuse
    every ReservedConcurrency that is not above FanOutConcurrency, and accept the rest; without
    other accounts, or with nothing reserved, any pair is accepted."""
    parameters = template["Parameters"]
    reserved_values = range(parameters["ReservedConcurrency"]["MinValue"],
                            parameters["ReservedConcurrency"]["MaxValue"] + 1)
    fan_out_values = range(parameters["FanOutConcurrency"]["MinValue"],
                           parameters["FanOutConcurrency"]["MaxValue"] + 1)
    for accounts in ("", "111111111111,222222222222"):
        for reserved in reserved_values:
            for fan_out in fan_out_values:
                refused = "ReservedConcurrencyLeavesRoomForFanOut" in refused_by_rules(
                    template,
                    {"AuditAccounts": accounts, "ReservedConcurrency": str(reserved),
                     "FanOutConcurrency": str(fan_out)},
                )
                should_refuse = bool(accounts) and reserved != 0 and reserved <= fan_out
                assert refused == should_refuse, (accounts, reserved, fan_out)
    # A number written another way matches no case: refused rather than let through.
    assert refused_by_rules(
        template, {"AuditAccounts": "ORGANIZATION", "OrganizationId": "o-abcdefghij",
                   "ReservedConcurrency": "04", "FanOutConcurrency": "2"}
    ) == ["ReservedConcurrencyLeavesRoomForFanOut"]


def test_organization_rules_refuse_what_they_say(template):
    assert refused_by_rules(template, {"AuditAccounts": "ORGANIZATION"}) == ["OrganizationNeedsItsId"]
    # Whatever the bucket: the role's sts:AssumeRole is held to the organization by its id.
    assert refused_by_rules(
        template, {"AuditAccounts": "ORGANIZATION", "ExistingReportBucketName": "evidence"}
    ) == ["OrganizationNeedsItsId"]
    assert refused_by_rules(
        template, {"AuditAccounts": "ORGANIZATION", "OrganizationId": "o-abcdefghij",
                   "ExistingReportBucketName": "evidence"}
    ) == []
    assert refused_by_rules(template, {"AuditOrganizationalUnits": "r-ab12"}) == [
        "OrganizationalUnitsNeedTheOrganization"
    ]


# --------------------------------------------------------------------------------------------
# Logs: Lambda's level filter never drops the metric line
# --------------------------------------------------------------------------------------------

# Levels at which Lambda still sends INFO lines. The Embedded Metric Format line has no "level"
# field, and Lambda treats such a JSON line as INFO
# (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
LEVELS_KEEPING_INFO = {"TRACE", "DEBUG", "INFO"}


def possible_values(node, template: dict) -> set[str]:
    """Every value a property can take: a literal, a parameter (its AllowedValues; a parameter
    without them can take anything), or either branch of an Fn::If."""
    if isinstance(node, dict) and set(node) == {"Ref"}:
        parameter = template["Parameters"][node["Ref"]]
        assert "AllowedValues" in parameter, f"{node['Ref']} can be set to any level"
        return {str(v) for v in parameter["AllowedValues"]}
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, if_true, if_false = node["Fn::If"]
        return possible_values(if_true, template) | possible_values(if_false, template)
    assert isinstance(node, str), f"cannot tell which levels {node} allows"
    return {node}


def test_lambda_log_filter_cannot_drop_the_metric_line(template, function_props):
    logging = function_props["LoggingConfig"]
    # Without JSON, Lambda does not filter application logs by level at all; with it, the
    # level must keep INFO lines, whatever value a deployment gives it.
    assert logging["LogFormat"] == "JSON"
    levels = possible_values(logging["ApplicationLogLevel"], template)
    assert levels <= LEVELS_KEEPING_INFO, f"ApplicationLogLevel may be {levels - LEVELS_KEEPING_INFO}"
    # The template's Globals cannot set it behind the function's back either.
    function_globals = template.get("Globals", {}).get("Function", {})
    assert "ApplicationLogLevel" not in function_globals.get("LoggingConfig", {})


def test_log_level_check_refuses_a_parameter_above_info(template):
    broken = json.loads(json.dumps(template))
    broken["Parameters"]["LogLevel"] = {"Type": "String", "AllowedValues": ["INFO", "WARN"]}
    assert possible_values({"Ref": "LogLevel"}, broken) - LEVELS_KEEPING_INFO == {"WARN"}
    broken["Parameters"]["LogLevel"] = {"Type": "String", "Default": "INFO"}
    with pytest.raises(AssertionError, match="any level"):
        possible_values({"Ref": "LogLevel"}, broken)


# --------------------------------------------------------------------------------------------
# Documentation: every path the templates and the README point to exists
# --------------------------------------------------------------------------------------------

_MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
# Repository paths named in text: docs and top-level documents, sample events, scripts.
_NAMED_PATH = re.compile(
    r"(?<![\w./-])((?:docs|events|scripts|infra_tests)/[\w./-]*\w|[A-Z][A-Z_]*\.md|[\w-]+\.yaml)"
    r"(#[\w-]+)?"
)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def referenced_paths(source: Path) -> set[tuple[str, Path]]:
    """(reference, the directory it is relative to): paths named in the text are the
    repository's; a Markdown link is relative to its document."""
    text = source.read_text()
    found = {(m.group(1) + (m.group(2) or ""), ROOT) for m in _NAMED_PATH.finditer(text)}
    if source.suffix == ".md":
        found |= {
            (target, source.parent)
            for target in _MD_LINK.findall(text)
            if not re.match(r"[a-z]+:", target)
        }
    return found


def missing_references(source: Path) -> list[str]:
    missing = []
    for reference, base in sorted(referenced_paths(source)):
        path, _, anchor = reference.partition("#")
        target = (base / path).resolve() if path else source
        if not target.exists():
            missing.append(reference)
        elif anchor and target.suffix == ".md" and anchor not in github_anchors(target.read_text()):
            missing.append(reference)
    return sorted(set(missing))


# The Markdown documents (README.md, docs/*.md, …) are checked the same way by test_docs.py.
@pytest.mark.parametrize("document", ["template.yaml", "member-role.yaml"])
def test_every_path_a_document_points_to_exists(document):
    source = ROOT / document
    assert referenced_paths(source), f"{document} names no path: is the scanner right?"
    assert missing_references(source) == [], document


def test_reference_check_catches_a_missing_doc_and_anchor(tmp_path):
    """What template.yaml said before (docs/deploy.md, which never existed), an anchor
    README.md does not have beside one it has, and links relative to their document."""
    (tmp_path / "other.md").write_text("# Some Section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "See docs/deploy.md, README.md#using-an-existing-bucket, README.md#no-such-section, "
        "[there](other.md#some-section), [gone](gone.md) and [web](https://example.com/x.md).\n"
    )
    assert missing_references(page) == ["README.md#no-such-section", "docs/deploy.md", "gone.md"]


# --------------------------------------------------------------------------------------------
# Sample events: the shapes the template sends
# --------------------------------------------------------------------------------------------


def sample(name: str) -> dict:
    return json.loads((ROOT / "events" / name).read_text())


def test_scheduler_sample_carries_every_field_the_schedule_sends(resources):
    payload = json.loads(resources["AuditSchedule"]["Properties"]["Target"]["Input"])
    event = sample("scheduler.json")
    assert set(event) == set(payload)
    assert event["source"] == "aws.scheduler"
    assert re.fullmatch(r"arn:aws:scheduler:[a-z0-9-]+:\d{12}:schedule/[\w.-]+/[\w.-]+",
                        event["scheduleArn"])


def test_fan_out_sample_is_an_sqs_batch_of_one_work_item(rendered):
    event = sample("fan-out-work-item.json")
    # A batch as the event source hands it out: one record up to BatchSize (one is what a
    # queue holding a single item gives).
    (record,) = event["Records"]
    mapping = rendered["account-list"]["Resources"]["FanOutEventSource"]["Properties"]
    assert 1 <= len(event["Records"]) <= mapping["BatchSize"]
    assert record["eventSource"] == "aws:sqs"
    queue = re.fullmatch(r"arn:aws:sqs:([a-z0-9-]+):(\d{12}):([\w-]+)", record["eventSourceARN"])
    assert queue and queue.group(1) == record["awsRegion"]
    assert "-FanOutQueue-" in queue.group(3)
    for key in ("messageId", "receiptHandle", "md5OfBody", "attributes"):
        assert record[key], key
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    # The body is what the fan-out sends: a serialised WorkItem, every field the function
    # requires present, nothing it does not know.
    body = json.loads(record["body"])
    fields = code_facts()["workItemFields"]
    assert set(body) <= set(fields), set(body) - set(fields)
    assert {f for f, required in fields.items() if required} <= set(body)
    assert re.fullmatch(r"\d{12}", body["accountId"])
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", body["region"])


def test_requests_page_lists_every_sample_event():
    readme = (ROOT / "docs" / "requests.md").read_text()  # the sample events left the README
    section = readme.split("## Sample events", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w-]+\.json)` \|", section, re.MULTILINE))
    assert listed == {p.name for p in (ROOT / "events").glob("*.json")}


def test_events_go_to_the_configured_bus_only_and_none_without_one(template, rendered):
    """PutEvents on the EventBus parameter's bus alone; with EventBus empty, no grant."""
    assert template["Parameters"]["EventBus"]["Default"] == "default"
    for name, r in rendered.items():
        audit = role_policy_documents(r["Resources"])["audit-calls"]
        put = [s for s in statements(audit) if "events:PutEvents" in as_list(s["Action"])]
        assert len(put) == 1, name
        assert put[0]["Resource"] == {
            "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBus}"
        }, name
    off = render(template, {"EventBus": ""})
    audit = role_policy_documents(off["Resources"])["audit-calls"]
    assert not [s for s in statements(audit) if "events:PutEvents" in as_list(s["Action"])]
    assert "CaAlertsRule" not in off["Resources"]


def test_security_hub_grants_only_with_findings_on_and_only_this_accounts_own(template, rendered):
    """Off by default: no Security Hub action at all. On: BatchImportFindings on this account's
    default product for findings of this account, and BatchUpdateFindings on its hub, only to
    set a workflow to RESOLVED."""
    assert template["Parameters"]["SecurityHubFindings"]["Default"] == "false"
    for name, r in rendered.items():
        audit = role_policy_documents(r["Resources"])["audit-calls"]
        hub = [s for s in statements(audit) if any(a.startswith("securityhub:") for a in as_list(s["Action"]))]
        assert hub == [], name
    on = render(template, {"SecurityHubFindings": "true"})
    audit = role_policy_documents(on["Resources"])["audit-calls"]
    hub = {a: s for s in statements(audit) for a in as_list(s["Action"]) if a.startswith("securityhub:")}
    assert set(hub) == {"securityhub:BatchImportFindings", "securityhub:BatchUpdateFindings"}
    imports = hub["securityhub:BatchImportFindings"]
    assert imports["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:product/${AWS::AccountId}/default"
    }
    assert imports["Condition"] == {"StringEquals": {"securityhub:TargetAccount": {"Ref": "AWS::AccountId"}}}
    updates = hub["securityhub:BatchUpdateFindings"]
    assert updates["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:hub/default"
    }
    assert updates["Condition"] == {"StringEquals": {"securityhub:ASFFSyntaxPath/Workflow.Status": "RESOLVED"}}
    for s in (imports, updates):
        assert as_list(s["Action"]) == [a for a in as_list(s["Action"]) if a in hub], "one action a statement"


@pytest.mark.parametrize(
    ("alarm", "metric"),
    [
        ("OverdueCertificateAuthoritiesAlarm", "OverdueCertificateAuthorities"),
        ("AccountsNotEnteredAlarm", "AccountsNotEntered"),
    ],
)
def test_overdue_and_accounts_alarms_match_the_functions_emf(resources, alarm, metric):
    props = resources[alarm]["Properties"]
    assert (props["Namespace"], props["MetricName"]) == ("PcaAuditScheduler", metric)
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "AuditFunction"}}]
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    emf = (ROOT / "src" / "telemetry.rs").read_text()
    assert f'{{"Name": "{metric}", "Unit": "Count"}}' in emf


def test_ca_alerts_reach_the_alarm_topic_as_one_message_naming_the_ca(template):
    """With AlarmEmail, the rule sends the failed and overdue events to the stack's topic
    through an input transformer naming the CA, its account and region and what to do; the
    topic's policy lets this rule (and CloudWatch) publish."""
    r = render(template, {"AlarmEmail": "ops@example.com"})["Resources"]
    rule = r["CaAlertsRule"]["Properties"]
    assert rule["EventPattern"]["source"] == ["pca-audit-scheduler"]
    assert set(rule["EventPattern"]["detail-type"]) == {
        "Certificate Authority Audit Failed",
        "Certificate Authority Audit Overdue",
    }
    [target] = rule["Targets"]
    assert target["Arn"] == {"Ref": "AlarmTopic"}
    paths = target["InputTransformer"]["InputPathsMap"]
    assert paths["ca"] == "$.detail.certificateAuthorityArn"
    assert {"account", "region", "reason", "todo"} <= set(paths)
    text = target["InputTransformer"]["InputTemplate"]
    for name in paths:
        assert f"<{name}>" in text, name
    policy = r["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]
    events = statement_by_sid(policy, "CaAlertsRulePublishes")
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert events["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["CaAlertsRule", "Arn"]}
    assert statement_by_sid(policy, "CloudWatchAlarmsPublish")["Principal"] == {
        "Service": "cloudwatch.amazonaws.com"
    }
    # Without any alarm topic, no rule.
    assert "CaAlertsRule" not in render(template, {})["Resources"]
