"""The CloudWatch dashboard of template.yaml names only what exists.

Its body (AuditDashboard's DashboardBody, an Fn::Sub of JSON) is rendered the way CloudFormation
would for each deployment (conditions from test_template.render, then the Sub evaluated with
stand-ins for resource names and ARNs), parsed as JSON, and held against the sources of truth:
the metrics from the function's own metric document (examples/facts.rs), the log fields from
the tracing macros in src/, the log groups and alarms from the
template's resources. A metric renamed in the code, an alarm added to the template but not to the
dashboard, or a widget naming a resource its deployment lacks fails here. Run with
.venv-tools/bin/python -m pytest infra_tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode

from test_template import ACCOUNT_LIST, ORGANIZATION, TEMPLATE_PATH, code_facts, render

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
STACK = "pca-audit"

# (deployment, ReadReports): the conditions the body depends on, each way.
DEPLOYMENTS = {
    "single-account": {},
    "single-account, reading reports": {"ReadReports": "true"},
    "account-list": ACCOUNT_LIST,
    "organization, reading reports": {**ORGANIZATION, "ReadReports": "true"},
}
CERTIFICATE_METRICS = {"CertificatesIssued", "CertificatesRevoked"}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def stand_in(name: str, resources: dict) -> str:
    """What `${name}` or a Ref stands for: pseudo parameters by value, a resource as <Name>,
    an attribute as <Name.Attr>. A resource the deployment does not have fails the test."""
    pseudo = {"AWS::Region": REGION, "AWS::StackName": STACK, "AWS::Partition": "aws"}
    if name in pseudo:
        return pseudo[name]
    resource = name.split(".")[0]
    assert resource in resources, f"the dashboard names {name}, not in this deployment"
    return f"<{name}>"


def evaluate(node, resources: dict) -> str:
    """A string after Fn::Sub (both forms, nested) and Ref are evaluated."""
    if isinstance(node, str):
        return node
    ((function, args),) = node.items()
    if function == "Ref":
        return stand_in(args, resources)
    if function == "Fn::GetAtt":
        return stand_in(".".join(args) if isinstance(args, list) else args, resources)
    if function == "Fn::Sub":
        text, variables = (args, {}) if isinstance(args, str) else args

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return evaluate(variables[name], resources)
            return stand_in(name, resources)

        return re.sub(r"\$\{([\w:.]+)\}", value, text)
    raise AssertionError(f"not evaluated here: {function}")


def dashboard_body(template: dict, parameters: dict[str, str]) -> tuple[dict, dict]:
    """The deployment's dashboard body as parsed JSON, and its resources."""
    resources = render(template, parameters)["Resources"]
    text = evaluate(resources["AuditDashboard"]["Properties"]["DashboardBody"], resources)
    try:
        return json.loads(text), resources
    except json.JSONDecodeError as e:
        pytest.fail(f"the dashboard body is not JSON ({e}):\n{text}")


def widgets(body: dict, kind: str) -> list[dict]:
    return [w["properties"] for w in body["widgets"] if w["type"] == kind]


def emitted_metrics() -> tuple[str, str, set[str]]:
    """Namespace, dimension and metric names of the function's EMF document (examples/facts.rs
    builds one with every metric in it, from the code's own `metrics_document`)."""
    metrics = code_facts()["metrics"]
    (dimensions,) = metrics["dimensions"]
    (dimension,) = dimensions
    assert metrics["names"], "the metric document names no metric"
    return metrics["namespace"], dimension, set(metrics["names"])


def rust_sources() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.rs")))


def logged_fields(source: str) -> set[str]:
    """Field names of the tracing events and spans in the code (`name = value`, `name,`
    shorthand and `%name` / `?name`), plus the message every event has."""
    fields = {"message"}
    for call in re.findall(r"tracing::(?:\w+_span|error|warn|info|debug)!\((.*?)\);", source, re.S):
        fields |= set(re.findall(r"(?:^|,)\s*[%?]?(\w+)\s*(?==|,)", call))
    return fields


def query_of(body: dict) -> str:
    (log,) = widgets(body, "log")
    return log["query"]


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict:
    tpl, matches = decode(str(TEMPLATE_PATH))
    assert not matches, f"template.yaml does not parse: {matches}"
    return tpl


@pytest.fixture(scope="module", params=list(DEPLOYMENTS), ids=list(DEPLOYMENTS))
def deployment(request, template) -> tuple[dict[str, str], dict, dict]:
    parameters = DEPLOYMENTS[request.param]
    body, resources = dashboard_body(template, parameters)
    return parameters, body, resources


# --------------------------------------------------------------------------------------------
# The helpers themselves
# --------------------------------------------------------------------------------------------


def test_field_reader_finds_event_and_span_fields():
    source = """
        let span = tracing::info_span!("ca", ca_arn = %ca.arn, region = %ca.region);
        tracing::error!(outcome = "failed", error_code, "{error_message}");
        tracing::warn!(gap_from = %g.from, "coverage gap: {}", g.kind);
    """
    assert logged_fields(source) == {"message", "ca_arn", "region", "outcome", "error_code", "gap_from"}


def test_a_widget_naming_a_missing_resource_fails(template):
    resources = render(template, {})["Resources"]
    with pytest.raises(AssertionError, match="FanOutDeadLetterAlarm.Arn, not in this deployment"):
        evaluate({"Fn::Sub": '["${FanOutDeadLetterAlarm.Arn}"]'}, resources)


# --------------------------------------------------------------------------------------------
# The dashboard
# --------------------------------------------------------------------------------------------


def test_dashboard_metrics_are_the_ones_the_function_emits(deployment):
    _, body, resources = deployment
    namespace, dimension, emitted = emitted_metrics()
    assert resources["AuditFunction"]["Type"] == "AWS::Serverless::Function"
    named = set()
    for widget in widgets(body, "metric"):
        assert widget["region"] == REGION
        for metric in widget["metrics"]:
            assert metric[0] == namespace
            assert metric[2:] == [dimension, "<AuditFunction>"], metric
            named.add(metric[1])
    assert named <= emitted, f"not emitted by the function: {named - emitted}"
    assert {"Requested", "Skipped", "Deferred", "Failed"} <= named


def test_certificate_totals_only_when_reports_are_read(deployment):
    parameters, body, _ = deployment
    named = {m[1] for w in widgets(body, "metric") for m in w["metrics"]}
    if parameters.get("ReadReports") == "true":
        assert CERTIFICATE_METRICS <= named
    else:
        assert not named & CERTIFICATE_METRICS


def test_dashboard_lists_every_alarm_of_the_deployment_and_no_other(deployment):
    _, body, resources = deployment
    (alarm_widget,) = widgets(body, "alarm")
    listed = set(alarm_widget["alarms"])
    alarms = {f"<{n}.Arn>" for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert listed == alarms
    assert len(alarm_widget["alarms"]) == len(listed)


def test_log_widget_queries_the_functions_log_group(deployment):
    _, body, resources = deployment
    (log,) = widgets(body, "log")
    assert log["region"] == REGION
    sources = re.findall(r"SOURCE '([^']*)'", log["query"])
    assert sources == ["<AuditLogGroup>"]
    assert resources["AuditLogGroup"]["Type"] == "AWS::Logs::LogGroup"
    logging = resources["AuditFunction"]["Properties"]["LoggingConfig"]
    assert logging["LogGroup"] == {"Ref": "AuditLogGroup"}


def test_log_query_shows_latest_failures_and_gaps_by_fields_the_function_logs(deployment):
    _, body, _ = deployment
    query = query_of(body)
    source = rust_sources()
    # The outcomes the query filters on are ones the code logs.
    outcomes = set(re.findall(r'"(\w+)"', re.search(r"in \[(.*?)\]", query).group(1)))
    assert outcomes == {"failed", "gap", "overdue"}
    for outcome in outcomes:
        assert f'outcome = "{outcome}"' in source, f"no log line with outcome {outcome}"
    # Every field it reads: the event's under fields., the CA's span's under span.
    read = set(re.findall(r"`(fields|span)\.(\w+)`", query))
    assert {("span", "ca_arn"), ("fields", "error_code"), ("fields", "gap_kind")} <= read
    missing = {f"{where}.{name}" for where, name in read if name not in logged_fields(source)}
    assert not missing, f"the query reads fields no log line has: {missing}"
    assert re.search(r'info_span!\(\s*"ca",\s*ca_arn', source), "span ca carries ca_arn"
    # Newest first, a bounded number of rows.
    assert "sort @timestamp desc" in query
    assert re.search(r"\| limit \d+$", query)


def test_dashboard_name_and_link_are_outputs(template):
    outputs = render(template, {})["Outputs"]
    assert outputs["DashboardName"]["Value"] == {"Ref": "AuditDashboard"}
    text, variables = outputs["DashboardUrl"]["Value"]["Fn::Sub"]
    mapping, partition, key = variables["ConsoleHost"]["Fn::FindInMap"]
    assert partition == {"Ref": "AWS::Partition"}
    hosts = {p: v[key] for p, v in template["Mappings"][mapping].items()}
    assert set(hosts) == {"aws", "aws-cn", "aws-us-gov"}
    url = text.replace("${ConsoleHost}", hosts["aws"]).replace("${AWS::Region}", REGION)
    assert url == (
        f"https://console.aws.amazon.com/cloudwatch/home?region={REGION}"
        "#dashboards/dashboard/${AuditDashboard}"
    )
    name = template["Resources"]["AuditDashboard"]["Properties"]["DashboardName"]
    assert evaluate(name, {}) == f"{STACK}-{REGION}"
