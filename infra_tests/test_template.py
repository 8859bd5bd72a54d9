"""Checks of template.yaml that the linters cannot make.

The IAM drift test derives the function's permissions from the code: every AWS SDK operation
called in src/ (found by name, from the operation modules of the SDK crates cargo downloaded)
becomes IAM actions, and the role's `audit-calls` policy must grant exactly those, plus the one
action the service checks on the caller. Run with .venv-tools/bin/python -m pytest infra_tests.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"

# SDK crate -> IAM service prefix.
SDK_CRATES = {"aws-sdk-acmpca": "acm-pca", "aws-sdk-dynamodb": "dynamodb", "aws-sdk-s3": "s3"}

# Operations whose IAM actions are not `service:OperationName`.
ACTION_EXCEPTIONS = {
    # A transaction is authorised item by item; ours holds an Update and a Put.
    ("dynamodb", "transact_write_items"): {"dynamodb:PutItem", "dynamodb:UpdateItem"},
    ("dynamodb", "transact_get_items"): {"dynamodb:GetItem"},
    ("s3", "head_bucket"): {"s3:ListBucket"},
    ("s3", "list_objects"): {"s3:ListBucket"},
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    ("s3", "get_object"): {"s3:GetObject"},
    ("s3", "head_object"): {"s3:GetObject"},
}

# Not called by the code, granted on purpose: CreateCertificateAuthorityAuditReport checks that
# the calling principal may write to the bucket (AWS_FACTS.md, "IAM for the function").
DOCUMENTED_EXTRAS = {"s3:PutObject"}

# The only action that may have Resource "*": it supports no resource-level permission.
STAR_RESOURCE_ACTIONS = {"acm-pca:ListCertificateAuthorities"}

ENV_VARS = {
    "LEDGER_TABLE",
    "REPORT_BUCKET",
    "REPORT_FORMAT",
    "MIN_INTERVAL_MINUTES",
    "AUDIT_REGIONS",
    "AUDIT_CA_STATES",
    "HISTORY_RETENTION_DAYS",
    "MAX_CONCURRENCY",
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
def operations() -> dict[str, set[str]]:
    return sdk_operations(cargo_registry_src(), ROOT / "Cargo.lock")


@pytest.fixture(scope="session")
def function_props(resources) -> dict:
    return resources["AuditFunction"]["Properties"]


@pytest.fixture(scope="session")
def role_policies(resources) -> dict[str, dict]:
    role = resources["AuditFunctionRole"]["Properties"]
    return {p["PolicyName"]: p["PolicyDocument"] for p in role["Policies"]}


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
    assert iam_actions({("s3", "list_objects_v2"), ("s3", "get_object")}) == {
        "s3:ListBucket",
        "s3:GetObject",
    }


def test_missing_sdk_crates_fail_with_a_clear_message(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="cargo fetch"):
        sdk_operations(tmp_path)


def test_sdk_operation_names_are_read_from_the_downloaded_crates(operations):
    assert "create_certificate_authority_audit_report" in operations["acm-pca"]
    assert "transact_write_items" in operations["dynamodb"]
    assert "head_bucket" in operations["s3"]


# --------------------------------------------------------------------------------------------
# IAM: the function's role
# --------------------------------------------------------------------------------------------


def test_function_role_grants_exactly_what_the_code_calls(operations, role_policies):
    calls = called_operations(ROOT / "src", operations)
    assert calls, "no AWS SDK call found in src/: is the scanner looking in the right place?"
    expected = iam_actions(calls) | DOCUMENTED_EXTRAS

    granted: set[str] = set()
    for statement in statements(role_policies["audit-calls"]):
        assert statement["Effect"] == "Allow"
        granted |= set(as_list(statement["Action"]))

    missing, extra = expected - granted, granted - expected
    assert not missing and not extra, (
        f"the code calls {sorted(f'{s}:{o}' for s, o in calls)}; "
        f"not granted: {sorted(missing)}; granted but not called: {sorted(extra)}"
    )


def test_role_has_only_the_two_inline_policies(resources, role_policies):
    role = resources["AuditFunctionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert set(role_policies) == {"audit-calls", "lambda-platform"}
    assert resources["AuditFunction"]["Properties"]["Role"] == {
        "Fn::GetAtt": ["AuditFunctionRole", "Arn"]
    }


def test_only_list_certificate_authorities_has_a_star_resource(role_policies):
    for name, document in role_policies.items():
        for statement in statements(document):
            actions = set(as_list(statement["Action"]))
            assert not any("*" in a for a in actions), f"{name}: wildcard action in {actions}"
            if "*" in as_list(statement["Resource"]):
                assert actions <= STAR_RESOURCE_ACTIONS, f"{name}: {actions} on Resource *"


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


def test_put_object_is_limited_to_audit_reports(role_policies):
    (statement,) = [
        s for s in statements(role_policies["audit-calls"]) if "s3:PutObject" in as_list(s["Action"])
    ]
    branches = statement["Resource"]["Fn::If"][1:]
    assert all(b["Fn::Sub"].endswith("/audit-report/*") for b in branches)


# --------------------------------------------------------------------------------------------
# The function
# --------------------------------------------------------------------------------------------


def test_every_environment_variable_is_set(function_props):
    variables = function_props["Environment"]["Variables"]
    assert set(variables) == ENV_VARS
    assert variables["LEDGER_TABLE"] == {"Ref": "LedgerTable"}
    assert variables["REPORT_BUCKET"] == {
        "Fn::If": ["CreateReportBucket", {"Ref": "ReportBucket"}, {"Ref": "ExistingReportBucketName"}]
    }


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


def test_reserved_concurrency_defaults_to_two_and_zero_means_none(template):
    parameter = template["Parameters"]["ReservedConcurrency"]
    assert parameter["Default"] == 2
    assert template["Conditions"]["HasReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, "0"]}]
    }


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


@pytest.mark.parametrize("queue", ["ScheduleDeadLetterQueue", "FailedRunQueue"])
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
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


# --------------------------------------------------------------------------------------------
# Report bucket
# --------------------------------------------------------------------------------------------


def bucket_policy_statements(resources) -> dict[str, dict]:
    document = resources["ReportBucketPolicy"]["Properties"]["PolicyDocument"]
    return {s["Sid"]: s for s in statements(document)}


def test_bucket_policy_lets_only_this_accounts_cas_write(resources):
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


def test_bucket_refuses_plain_http(resources):
    statement = bucket_policy_statements(resources)["DenyInsecureTransport"]
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
    context = statement["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
    key_arn_pattern = context["Fn::Sub"][0]
    bucket_name = resources["ReportBucket"]["Properties"]["BucketName"]["Fn::Sub"][0]
    # The key policy names the bucket by the same computed name the bucket is given.
    assert key_arn_pattern == "arn:${AWS::Partition}:s3:::" + bucket_name + "/*"


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


def test_every_checkov_suppression_gives_its_reason(resources):
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 40, f"{name}: {skip['id']} has no reason"
