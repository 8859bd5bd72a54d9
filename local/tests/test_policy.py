"""The policy evaluation behind bucket policies and trust policies (no stack needed)."""

import json

import pytest

from local import policy

SERVICE = "acm-pca.amazonaws.com"


def service(block) -> bool:
    return any(p in ("*", SERVICE) for p in policy.principal_values(block, "Service"))


def verdict(statements, context, resource="arn:aws:s3:::b/audit-report/x.json", action="s3:PutObject"):
    doc = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return policy.evaluate(doc, action=action, resource=resource, principal=service, context=context)


def allow(condition=None, **extra):
    st = {"Effect": "Allow", "Principal": {"Service": SERVICE}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"}
    if condition:
        st["Condition"] = condition
    st.update(extra)
    return st


CA = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/0f0e0d0c-0000-4000-8000-000000000000"
CTX = {"aws:SourceAccount": "111122223333", "aws:SourceArn": CA, "aws:SourceOrgID": None}


@pytest.mark.parametrize(
    "condition, expected",
    [
        ({"StringEquals": {"aws:SourceAccount": "111122223333"}}, "Allow"),
        ({"StringEquals": {"aws:sourceaccount": ["999999999999", "111122223333"]}}, "Allow"),
        ({"StringEquals": {"aws:SourceAccount": "999999999999"}}, None),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:acm-pca:*:111122223333:certificate-authority/*"}}, "Allow"),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:acm-pca:us-*:111122223333:certificate-authority/*"}}, None),
        ({"ArnEquals": {"aws:SourceArn": CA}}, "Allow"),
        ({"ArnLike": {"aws:SourceArn": "*"}}, None),  # not six parts: no ARN matches it
        ({"StringEquals": {"aws:SourceOrgID": "o-abc"}}, None),  # key absent
        ({"StringEqualsIfExists": {"aws:SourceOrgID": "o-abc"}}, "Allow"),
        ({"Null": {"aws:SourceOrgID": "true"}}, "Allow"),
        ({"Null": {"aws:SourceOrgID": "false"}}, None),
        ({"NumericLessThan": {"aws:SourceAccount": "1"}}, None),  # unsupported: does not apply
    ],
)
def test_conditions(condition, expected):
    assert verdict([allow(condition)], CTX) == expected


def test_deny_wins_and_negated_operators_match_absent_keys():
    deny = {**allow({"StringNotEquals": {"aws:SourceOrgID": "o-abc"}}), "Effect": "Deny"}
    assert verdict([allow(), deny], CTX) == "Deny"
    assert verdict([allow(), deny], {**CTX, "aws:SourceOrgID": "o-abc"}) == "Allow"


def test_action_resource_and_principal():
    assert verdict([allow()], CTX, resource="arn:aws:s3:::other/x") is None
    assert verdict([allow()], CTX, action="s3:GetObject") is None
    assert verdict([allow(Action="s3:*")], CTX) == "Allow"
    assert verdict([allow(Principal="*")], CTX) == "Allow"
    assert verdict([allow(Principal={"AWS": "*"})], CTX) == "Allow"
    assert verdict([allow(Principal={"Service": "cloudtrail.amazonaws.com"})], CTX) is None
    assert verdict([], CTX) is None
    assert policy.evaluate(None, action="s3:PutObject", principal=service) is None


def test_bool_and_negated_operators_on_absent_keys():
    """Bool compares "true"/"false" without regard to case. A negated operator holds for a key
    the request lacks, so a Deny "StringNotEqualsIfExists aws:PrincipalServiceName" applies to
    every IAM principal (no such key) and to every other service, not to the one named."""
    assert verdict([allow({"Bool": {"aws:PrincipalIsAWSService": "true"}})], {**CTX, "aws:PrincipalIsAWSService": "true"}) == "Allow"
    assert verdict([allow({"Bool": {"aws:PrincipalIsAWSService": "True"}})], {**CTX, "aws:PrincipalIsAWSService": "false"}) is None
    assert verdict([allow({"Bool": {"aws:SecureTransport": "false"}})], CTX) is None  # key absent
    deny = {**allow({"StringNotEqualsIfExists": {"aws:PrincipalServiceName": SERVICE}}), "Principal": "*", "Effect": "Deny"}
    assert verdict([allow(Principal="*"), deny], {**CTX, "aws:PrincipalServiceName": SERVICE}) == "Allow"
    assert verdict([allow(Principal="*"), deny], {**CTX, "aws:PrincipalServiceName": "cloudtrail.amazonaws.com"}) == "Deny"
    assert verdict([allow(Principal="*"), deny], CTX) == "Deny"
    callers = {**deny, "Condition": {**deny["Condition"], "ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Caller"}}}
    assert verdict([allow(Principal="*"), callers], {**CTX, "aws:PrincipalArn": "arn:aws:iam::1:role/Caller"}) == "Allow"
    assert verdict([allow(Principal="*"), callers], {**CTX, "aws:PrincipalArn": "arn:aws:iam::1:role/Admin"}) == "Deny"


# --- identity policies: the keys the function role's and member role's grants use ----------

ROLE = "arn:aws:iam::111111111111:role/PcaAuditSchedulerMember"
PATHS = ["o-abcdefghij/r-ab12/ou-ab12-cdefgh34/ou-ab12-nested12/"]


def identity(condition, context, action="sts:AssumeRole", resource=ROLE):
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "arn:aws:iam::*:role/*", "Condition": condition}]}
    return policy.evaluate(json.dumps(doc), action=action, resource=resource, principal=None, context=context)


def test_resource_account_and_requested_region_are_single_valued_string_keys():
    accounts = {"StringEquals": {"aws:ResourceAccount": ["111111111111", "222222222222"]}}
    assert identity(accounts, {"aws:ResourceAccount": "111111111111"}) == "Allow"
    assert identity(accounts, {"aws:ResourceAccount": "333333333333"}) is None
    assert identity(accounts, {}) is None  # key absent: a positive test fails
    regions = {"StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}}
    assert identity(regions, {"aws:RequestedRegion": "eu-west-1"}) == "Allow"
    assert identity(regions, {"aws:RequestedRegion": "eu-west-2"}) is None


def test_resource_org_paths_for_any_value_string_like():
    """The template's shape: aws:ResourceOrgID pinned, and */<ou or root>/* over the paths."""
    under = {"StringEquals": {"aws:ResourceOrgID": "o-abcdefghij"},
             "ForAnyValue:StringLike": {"aws:ResourceOrgPaths": ["*/ou-ab12-cdefgh34/*", "*/r-zz99/*"]}}
    ctx = {"aws:ResourceOrgID": "o-abcdefghij", "aws:ResourceOrgPaths": PATHS}
    assert identity(under, ctx) == "Allow"  # a nested OU of the one named
    assert identity(under, {**ctx, "aws:ResourceOrgPaths": ["o-abcdefghij/r-ab12/ou-ab12-cdefgh34/"]}) == "Allow"
    assert identity(under, {**ctx, "aws:ResourceOrgPaths": ["o-abcdefghij/r-zz99/"]}) == "Allow"  # a root
    assert identity(under, {**ctx, "aws:ResourceOrgPaths": ["o-abcdefghij/r-ab12/ou-ab12-other999/"]}) is None
    # Slashes delimit the ids: an id that only ends with the one named does not match.
    assert identity(under, {**ctx, "aws:ResourceOrgPaths": ["o-abcdefghij/r-ab12/xou-ab12-cdefgh34/"]}) is None
    assert identity(under, {**ctx, "aws:ResourceOrgID": "o-zzzzzzzzzz"}) is None  # same path, other org
    # An account in no organization carries neither key.
    assert identity(under, {}) is None
    # Any one of several values is enough.
    assert identity(under, {**ctx, "aws:ResourceOrgPaths": ["o-x/r-1/", PATHS[0]]}) == "Allow"


@pytest.mark.parametrize(
    ("operator", "values", "expected"),
    [
        # ForAnyValue: one value passing is enough; absent or empty is false.
        ("ForAnyValue:StringLike", ["a/x/", "b/y/"], True),
        ("ForAnyValue:StringLike", ["b/y/"], False),
        ("ForAnyValue:StringLike", [], False),
        ("ForAnyValue:StringLike", None, False),
        ("ForAnyValue:StringLike", [""], False),
        # ForAllValues: every value must pass; absent or empty is true.
        ("ForAllValues:StringLike", ["a/x/", "a/z/"], True),
        ("ForAllValues:StringLike", ["a/x/", "b/y/"], False),
        ("ForAllValues:StringLike", [], True),
        ("ForAllValues:StringLike", None, True),
        # Negated under a set operator: a value matching none of the policy's.
        ("ForAnyValue:StringNotLike", ["a/x/", "b/y/"], True),
        ("ForAnyValue:StringNotLike", ["a/x/"], False),
        ("ForAllValues:StringNotLike", ["b/y/", "c/"], True),
        ("ForAllValues:StringNotLike", ["b/y/", "a/x/"], False),
        ("ForAnyValue:StringEquals", ["a/x/"], False),  # equals: the * is literal
    ],
)
def test_set_operators_on_a_multivalued_key(operator, values, expected):
    condition = {operator: {"aws:ResourceOrgPaths": "a/*"}}
    got = identity(condition, {"aws:ResourceOrgPaths": values})
    assert (got == "Allow") is expected


def test_a_deny_unless_the_principal_is_the_function_role():
    """The fan-out queue's shape: Deny sqs:SendMessage to "*" with ArnNotEquals aws:PrincipalArn."""
    fn = "arn:aws:iam::111111111111:role/AuditFunctionRole"
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:111111111111:q",
         "Condition": {"ArnNotEquals": {"aws:PrincipalArn": fn}}}]})

    def verdict_for(arn):
        return policy.evaluate(doc, action="sqs:SendMessage", resource="arn:aws:sqs:us-east-1:111111111111:q",
                               principal=lambda block: block == "*", context={"aws:PrincipalArn": arn})

    assert verdict_for(fn) is None
    assert verdict_for("arn:aws:iam::111111111111:role/Admin") == "Deny"
    assert verdict_for(None) == "Deny"  # no principal ARN (a service): denied too
