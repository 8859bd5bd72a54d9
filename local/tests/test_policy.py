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
