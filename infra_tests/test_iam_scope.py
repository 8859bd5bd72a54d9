"""IAM holds the function to what it is configured to audit (issue 21, point 3): the rendered
policies of template.yaml and member-role.yaml, evaluated with the local stack's policy
evaluation (local/policy.py) as IAM would judge a request, allow inside the scope and refuse
outside it: a member role of an account not listed, of another organization or outside the
configured OUs; Private CA in a region outside AuditRegions; a work item sent to the fan-out
queue by any principal but the function's role; a wildcard CentralFunctionRoleArn.

The request context each test gives is the one IAM documents for the call (IAM user guide, "AWS
global condition context keys"): aws:ResourceAccount, aws:ResourceOrgID and the multivalued
aws:ResourceOrgPaths of the role assumed (the last two only for an account in an
organization), aws:RequestedRegion of the Private CA endpoint called, aws:PrincipalArn and
aws:SecureTransport of the sender.
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from test_template import ROOT, member_template, render, statements, template  # noqa: F401 (fixtures)

_spec = importlib.util.spec_from_file_location("local_policy", ROOT / "local" / "policy.py")
policy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(policy)

CENTRAL = "111111111111"
MEMBER = "222222222222"
STRANGER = "333333333333"
REGION = "us-east-1"
ORG = "o-abcdefghij"
OTHER_ORG = "o-zzzzzzzzzz"
OU = "ou-ab12-cdefgh34"


def deployed(template: dict, parameters: dict[str, str], account: str = CENTRAL, region: str = REGION) -> dict:
    """The resources as CloudFormation deploys them in this account and region: conditions
    evaluated (render), then Ref, Fn::Sub, Fn::GetAtt, Fn::Split, Fn::Join and Fn::Select
    resolved. A role's ARN is `arn:aws:iam::<account>:role/<logical id>`, a queue's
    `arn:aws:sqs:<region>:<account>:<logical id>`."""
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    values.update(parameters)
    values.update({"AWS::AccountId": account, "AWS::Region": region, "AWS::Partition": "aws",
                   "AWS::StackName": "pca-audit-scheduler"})
    resources = render(template, parameters)["Resources"]

    def get_att(name: str, attribute: str) -> str:
        kind = resources[name]["Type"]
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{account}:role/{name}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{region}:{account}:{name}"
        return f"arn:aws:{name.lower()}:{region}:{account}:{name}"

    def sub(text: str, extra: dict) -> str:
        def one(match):
            name = match.group(1)
            if name in extra:
                return extra[name]
            if "." in name and not name.startswith("AWS::"):
                return get_att(*name.split(".", 1))
            return values.get(name, name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(node):
        if isinstance(node, dict) and len(node) == 1:
            ((function, args),) = node.items()
            if function == "Ref":
                return values.get(args, args)
            if function == "Fn::GetAtt":
                return get_att(*(args if isinstance(args, list) else args.split(".", 1)))
            if function == "Fn::Sub":
                if isinstance(args, str):
                    return sub(args, {})
                return sub(args[0], {k: resolve(v) for k, v in args[1].items()})
            if function == "Fn::Split":
                return resolve(args[1]).split(args[0])
            if function == "Fn::Join":
                return args[0].join(resolve(args[1]))
            if function == "Fn::Select":
                return resolve(args[1])[int(resolve(args[0]))]
        if isinstance(node, dict):
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    class Resolved(dict):
        # Each resource resolved when read: the others may use functions of attributes this
        # resolver does not model (a dashboard's Fn::Select of an ARN part).
        def __getitem__(self, name):
            return resolve(resources[name])

    return Resolved(resources)


def identity_verdict(documents: list[dict], action: str, resource: str, context: dict) -> str | None:
    """"Deny", "Allow" or None (implicit deny) of a role's identity policies for one request."""
    verdicts = [policy.evaluate(json.dumps(d), action=action, principal=None, resource=resource, context=context)
                for d in documents]
    if "Deny" in verdicts:
        return "Deny"
    return "Allow" if "Allow" in verdicts else None


def role_documents(resources: dict, role: str) -> list[dict]:
    return [p["PolicyDocument"] for p in resources[role]["Properties"]["Policies"]]


# --- sts:AssumeRole: the audited accounts only ----------------------------------------------------


def member_role_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:role/PcaAuditSchedulerMember"


def role_context(account: str, org: str | None = None, paths: list[str] | None = None) -> dict:
    """What IAM knows of the role assumed: its account, and its organization and paths when the
    account is in one (absent otherwise)."""
    return {"aws:ResourceAccount": account, "aws:ResourceOrgID": org, "aws:ResourceOrgPaths": paths}


def may_assume(template, parameters, account, org=None, paths=None) -> bool:
    resources = deployed(template, parameters)
    verdict = identity_verdict(role_documents(resources, "AuditFunctionRole"), "sts:AssumeRole",
                               member_role_arn(account), role_context(account, org, paths))
    return verdict == "Allow"


def test_an_account_list_assumes_member_roles_in_the_listed_accounts_only(template):
    listed = {"AuditAccounts": f"{CENTRAL},{MEMBER}"}
    assert may_assume(template, listed, MEMBER)
    assert may_assume(template, listed, CENTRAL)
    assert not may_assume(template, listed, STRANGER)
    # Another role name in a listed account is not the member role.
    resources = deployed(template, listed)
    assert identity_verdict(role_documents(resources, "AuditFunctionRole"), "sts:AssumeRole",
                            f"arn:aws:iam::{MEMBER}:role/Admin", role_context(MEMBER)) is None


def test_an_organization_assumes_member_roles_of_its_own_accounts_only(template):
    org = {"AuditAccounts": "ORGANIZATION", "OrganizationId": ORG}
    assert may_assume(template, org, MEMBER, ORG, [f"{ORG}/r-ab12/{OU}/"])
    assert may_assume(template, org, MEMBER, ORG, [f"{ORG}/r-ab12/"])
    # An account of another organization, whatever its path, and one in none.
    assert not may_assume(template, org, STRANGER, OTHER_ORG, [f"{OTHER_ORG}/r-ab12/{OU}/"])
    assert not may_assume(template, org, STRANGER)


@pytest.mark.parametrize(
    ("units", "path", "allowed"),
    [
        (OU, f"{ORG}/r-ab12/{OU}/", True),
        (OU, f"{ORG}/r-ab12/{OU}/ou-ab12-nested12/", True),  # nested OUs included
        (OU, f"{ORG}/r-ab12/ou-ab12-other999/", False),  # another OU of the organization
        (OU, f"{ORG}/r-ab12/", False),  # directly under the root
        (OU, f"{ORG}/r-ab12/{OU}5/", False),  # an OU whose id only starts with the one named
        (f"ou-ab12-other999,{OU}", f"{ORG}/r-ab12/{OU}/", True),  # any of several
        ("r-ab12", f"{ORG}/r-ab12/{OU}/", True),  # a root: the whole tree under it
        ("r-ab12", f"{ORG}/r-ab12/", True),
    ],
)
def test_organizational_units_hold_member_roles_to_the_accounts_under_them(template, units, path, allowed):
    parameters = {"AuditAccounts": "ORGANIZATION", "OrganizationId": ORG, "AuditOrganizationalUnits": units}
    assert may_assume(template, parameters, MEMBER, ORG, [path]) is allowed
    # The same path in another organization never passes: OU ids are unique only within one.
    assert not may_assume(template, parameters, STRANGER, OTHER_ORG, [path.replace(ORG, OTHER_ORG)])


def test_the_functions_own_cas_are_held_to_the_same_accounts(template):
    """The function calls its own account's CAs with its own role: with other accounts, only
    when the setting includes its account."""
    ca = f"arn:aws:acm-pca:{REGION}:{CENTRAL}:certificate-authority/0f0e0d0c-0000-4000-8000-000000000000"

    def may_create(parameters, org=None, paths=None) -> bool:
        resources = deployed(template, parameters)
        context = {**role_context(CENTRAL, org, paths), "aws:RequestedRegion": REGION}
        verdict = identity_verdict(role_documents(resources, "AuditFunctionRole"),
                                   "acm-pca:CreateCertificateAuthorityAuditReport", ca, context)
        return verdict == "Allow"

    assert may_create({})  # single account: its own, always
    assert may_create({"AuditAccounts": f"{CENTRAL},{MEMBER}"})
    assert not may_create({"AuditAccounts": MEMBER})
    org = {"AuditAccounts": "ORGANIZATION", "OrganizationId": ORG, "AuditOrganizationalUnits": OU}
    assert may_create(org, ORG, [f"{ORG}/r-ab12/{OU}/"])
    assert not may_create(org, ORG, [f"{ORG}/r-ab12/"])  # the management account, outside the OU


# --- Private CA: the audited regions only ------------------------------------------------------------

PCA_CALLS = [
    ("acm-pca:ListCertificateAuthorities", "*"),
    ("acm-pca:CreateCertificateAuthorityAuditReport", "CA"),
    ("acm-pca:DescribeCertificateAuthorityAuditReport", "CA"),
    ("acm-pca:ListTags", "CA"),
]


def pca_verdicts(documents: list[dict], account: str, region: str, extra: dict | None = None) -> set[str | None]:
    ca = f"arn:aws:acm-pca:{region}:{account}:certificate-authority/0f0e0d0c-0000-4000-8000-000000000000"
    context = {"aws:RequestedRegion": region, **role_context(account), **(extra or {})}
    return {identity_verdict(documents, action, ca if resource == "CA" else "*", context) for action, resource in PCA_CALLS}


@pytest.mark.parametrize(
    ("regions", "inside", "outside"),
    [
        ("", [REGION], ["eu-west-1", "us-east-2"]),  # empty: the stack's own region
        ("us-east-1,eu-west-1", ["us-east-1", "eu-west-1"], ["ap-south-1", "eu-west-2"]),
        ("eu-west-1", ["eu-west-1"], [REGION]),  # not the stack's own unless listed
    ],
)
def test_the_function_calls_private_ca_in_the_audited_regions_only(template, regions, inside, outside):
    for parameters in ({"AuditRegions": regions}, {"AuditRegions": regions, "AuditAccounts": f"{CENTRAL},{MEMBER}"}):
        documents = role_documents(deployed(template, parameters), "AuditFunctionRole")
        for region in inside:
            assert pca_verdicts(documents, CENTRAL, region) == {"Allow"}, (parameters, region)
        for region in outside:
            assert pca_verdicts(documents, CENTRAL, region) == {None}, (parameters, region)


@pytest.mark.parametrize(
    ("regions", "stack_region", "inside", "outside"),
    [
        ("", "us-east-1", ["us-east-1"], ["eu-west-1"]),  # empty: this stack's region, not every one
        ("", "eu-west-1", ["eu-west-1"], ["us-east-1"]),
        ("us-east-1,eu-west-1", "us-east-1", ["us-east-1", "eu-west-1"], ["ap-south-1"]),
    ],
)
def test_the_member_role_calls_private_ca_in_its_regions_only(member_template, regions, stack_region, inside, outside):
    parameters = {"CentralFunctionRoleArn": f"arn:aws:iam::{CENTRAL}:role/AuditFunctionRole",
                  "ReportBucketName": "central-evidence", "AuditRegions": regions}
    documents = role_documents(deployed(member_template, parameters, MEMBER, stack_region), "MemberRole")
    for region in inside:
        assert pca_verdicts(documents, MEMBER, region) == {"Allow"}, region
    for region in outside:
        assert pca_verdicts(documents, MEMBER, region) == {None}, region
    # Another account's CAs, even in an audited region: never.
    foreign = f"arn:aws:acm-pca:{inside[0]}:{STRANGER}:certificate-authority/0f0e0d0c-0000-4000-8000-000000000000"
    assert identity_verdict(documents, "acm-pca:CreateCertificateAuthorityAuditReport", foreign,
                            {"aws:RequestedRegion": inside[0]}) is None


def test_both_templates_read_audit_regions_alike(template, member_template):
    central, member = template["Parameters"]["AuditRegions"], member_template["Parameters"]["AuditRegions"]
    assert central["AllowedPattern"] == member["AllowedPattern"]
    assert central["Default"] == member["Default"] == ""


# --- the fan-out queue: the function's role sends, nobody else -----------------------------------------

ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}


def send_verdict(resources: dict, role: str, documents: list[dict], secure: bool = True) -> str | None:
    """sqs:SendMessage to the fan-out queue by a role of the queue's account, as IAM judges it
    within one account: a Deny in either policy refuses, an Allow in either suffices."""
    queue = f"arn:aws:sqs:{REGION}:{CENTRAL}:FanOutQueue"
    context = {"aws:PrincipalArn": role, "aws:PrincipalAccount": CENTRAL, "aws:SecureTransport": "true" if secure else "false"}
    identities = {"*", CENTRAL, f"arn:aws:iam::{CENTRAL}:root", role}
    queue_policy = resources["FanOutQueuesTlsOnlyPolicy"]
    by_queue = policy.evaluate(json.dumps(queue_policy["Properties"]["PolicyDocument"]), action="sqs:SendMessage",
                               resource=queue, context=context,
                               principal=lambda block: any(p in identities for p in policy.principal_values(block, "AWS")))
    by_identity = identity_verdict(documents, "sqs:SendMessage", queue, context)
    if "Deny" in (by_queue, by_identity):
        return "Deny"
    return "Allow" if "Allow" in (by_queue, by_identity) else None


@pytest.mark.parametrize("parameters", [{"AuditAccounts": f"{CENTRAL},{MEMBER}"},
                                        {"AuditAccounts": "ORGANIZATION", "OrganizationId": ORG}])
def test_only_the_function_role_sends_work_items(template, parameters):
    resources = deployed(template, parameters)
    function_role = f"arn:aws:iam::{CENTRAL}:role/AuditFunctionRole"
    assert send_verdict(resources, function_role, role_documents(resources, "AuditFunctionRole")) == "Allow"
    # An admin of the account, allowed sqs:* by its own policy: refused by the queue's Deny.
    assert send_verdict(resources, f"arn:aws:iam::{CENTRAL}:role/Admin", [ADMIN]) == "Deny"
    # Another role whose name ends like the function's: ArnNotEquals compares the whole ARN.
    assert send_verdict(resources, f"arn:aws:iam::{CENTRAL}:role/x-AuditFunctionRole", [ADMIN]) == "Deny"
    # The function's role itself, over plain HTTP: the TLS statement still refuses it.
    assert send_verdict(resources, function_role, role_documents(resources, "AuditFunctionRole"), secure=False) == "Deny"
    # The dead-letter queue is not held so (SQS itself moves failed items there).
    document = resources["FanOutQueuesTlsOnlyPolicy"]["Properties"]["PolicyDocument"]
    (only,) = [s for s in statements(document) if s.get("Sid") == "OnlyTheFunctionSendsWorkItems"]
    assert only["Resource"] == f"arn:aws:sqs:{REGION}:{CENTRAL}:FanOutQueue"


# --- the member role trusts the function's exact role -------------------------------------------------


def test_central_function_role_arn_refuses_any_wildcard(member_template):
    pattern = re.compile(member_template["Parameters"]["CentralFunctionRoleArn"]["AllowedPattern"])
    good = [f"arn:aws:iam::{CENTRAL}:role/pca-audit-scheduler-AuditFunctionRole-AbC123",
            f"arn:aws-us-gov:iam::{CENTRAL}:role/path/with/Role-AbC"]
    bad = [f"arn:aws:iam::{CENTRAL}:role/*", f"arn:aws:iam::{CENTRAL}:role/pca-audit-scheduler-AuditFunctionRole-*",
           f"arn:aws:iam::{CENTRAL}:role/Audit?unctionRole", f"arn:aws:iam::{CENTRAL}:role/*/AuditFunctionRole",
           f"arn:aws:iam::{CENTRAL}:role/", f"arn:aws:iam::*:role/AuditFunctionRole"]
    assert all(pattern.fullmatch(v) for v in good)
    assert not any(pattern.fullmatch(v) for v in bad)


def test_the_member_role_trusts_the_function_role_and_no_other_role_of_the_central_account(member_template):
    function_role = f"arn:aws:iam::{CENTRAL}:role/pca-audit-scheduler-AuditFunctionRole-AbC123"
    role = deployed(member_template, {"CentralFunctionRoleArn": function_role, "ReportBucketName": "central-evidence"},
                    MEMBER)["MemberRole"]["Properties"]
    trust = json.dumps(role["AssumeRolePolicyDocument"])

    def trusted(caller_role: str, account: str = CENTRAL) -> bool:
        identities = {"*", account, f"arn:aws:iam::{account}:root", caller_role}
        verdict = policy.evaluate(trust, action="sts:AssumeRole", context={"aws:PrincipalArn": caller_role},
                                  principal=lambda block: any(p in identities for p in policy.principal_values(block, "AWS")))
        return verdict == "Allow"

    assert trusted(function_role)
    assert not trusted(f"arn:aws:iam::{CENTRAL}:role/pca-audit-scheduler-AuditFunctionRole-Other")
    assert not trusted(f"arn:aws:iam::{CENTRAL}:role/Admin")
    assert not trusted(f"arn:aws:iam::{STRANGER}:role/pca-audit-scheduler-AuditFunctionRole-AbC123", STRANGER)
