"""STS AssumeRole with the target role's trust policy enforced, for callers that are themselves
assumed-role sessions (the function running with its role's temporary credentials). moto
lets anyone assume any ARN, which would hide a missing member role or a wrong external id.

Callers with long-term keys (the harness's `testing` key, an IAM user's key) are not checked:
test harnesses use them to step into any account by assuming `arn:aws:iam::<account>:role/<any>`.

For a checked caller the role must exist in moto's IAM of the role's account, and its trust
policy must allow `sts:AssumeRole` for the caller: Principal `*`, the caller's account id,
`arn:aws:iam::<account>:root`, the caller's role ARN or its session ARN, with the conditions
`sts:ExternalId`, `sts:RoleSessionName`, `aws:PrincipalAccount`, `aws:PrincipalArn`,
`aws:PrincipalOrgID`, `aws:PrincipalType` available (see `policy.py`). Otherwise the answer is
the service's: HTTP 403 `AccessDenied`, "User: <session ARN> is not authorized to perform:
sts:AssumeRole on resource: <role ARN>", the same whether the role is missing or not trusted.
"""

import re

from moto.core.exceptions import _RESTError
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse

from . import policy

ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(.+)$")


class AccessDenied(_RESTError):
    """STS's own error document (a single `Error`, with `Type`), HTTP 403."""

    code = 403

    def __init__(self, caller_arn: str, role_arn: str):
        super().__init__(
            "AccessDenied",
            f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
        )
        self.description = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{_xml(self.message)}</Message></Error>"
            "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        )
        self.content_type = "text/xml"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def caller_session(access_key: str, account_id: str, partition: str):
    """moto's AssumedRole behind these keys, or None for long-term keys."""
    return sts_backends[account_id][partition].get_assumed_role_from_access_key(access_key)


def trust_allows(caller, role_arn: str, external_id: str | None, session_name: str | None) -> bool:
    match = ROLE_ARN.match(role_arn or "")
    if not match:
        return False
    partition, account_id = match.group(1), match.group(2)
    try:
        role = iam_backends[account_id][partition].get_role_by_arn(role_arn)
    except Exception:
        return False
    caller_account = caller.account_id
    caller_role_arn = caller.role_arn
    identities = {
        "*",
        caller_account,
        f"arn:{partition}:iam::{caller_account}:root",
        caller_role_arn,
        caller.arn,
    }

    def names_caller(block) -> bool:
        return any(p in identities for p in policy.principal_values(block, "AWS"))

    context = {
        "sts:ExternalId": external_id,
        "sts:RoleSessionName": session_name,
        "aws:PrincipalAccount": caller_account,
        "aws:PrincipalArn": caller_role_arn,
        "aws:PrincipalOrgID": policy.organization_id(caller_account),
        "aws:PrincipalType": "AssumedRole",
    }
    verdict = policy.evaluate(role.assume_role_policy_document, action="sts:AssumeRole", principal=names_caller, context=context)
    return verdict == "Allow"


_original_assume_role = TokenResponse.assume_role


def _assume_role(self: TokenResponse):
    caller = caller_session(self.get_access_key(), self.current_account, self.partition)
    if caller is not None:
        role_arn = self._get_param("RoleArn")
        if not trust_allows(caller, role_arn, self._get_param("ExternalId"), self._get_param("RoleSessionName")):
            raise AccessDenied(caller.arn, role_arn)
    return _original_assume_role(self)


_installed = False


def install() -> None:
    """Puts the trust check in front of moto's AssumeRole (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    TokenResponse.assume_role = _assume_role
