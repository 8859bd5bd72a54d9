"""The part of IAM policy evaluation the stack needs: resource policies (an S3 bucket policy, a
role's trust policy, a KMS key policy) judged for one principal, and identity policies (a
role's inline and managed policies, which have no Principal element), for one action, one
resource and a few condition keys. An explicit Deny wins over any Allow; no Allow means an
implicit deny (IAM user guide, "Policy evaluation logic",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).

Supported: Principal / NotPrincipal, Action / NotAction, Resource / NotResource with `*` and
`?` wildcards; condition operators String(Not)Equals, String(Not)EqualsIgnoreCase,
String(Not)Like, Arn(Not)Equals, Arn(Not)Like, Bool, each with `IfExists`, the `ForAnyValue:` /
`ForAllValues:` set operators, and `Null`. A negated operator holds for a key the request lacks
(IAM user guide, "IAM JSON policy elements: Condition operators": "If the policy condition
requires that the key is not matched, such as StringNotLike or ArnNotLike, and the right key is
not present, the condition is true"). Condition keys are matched without regard to case, as IAM
does. An operator not listed makes its statement not apply (for an Allow: no access; for a
Deny: no denial), and the stack says so in its log.

A context value may be a list: a multivalued key such as `aws:ResourceOrgPaths` (the account's
paths `o-…/r-…/ou-…/`). With a set operator (IAM user guide, "Set operators for multivalued
context keys",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html):
`ForAnyValue:` holds if at least one value of the request passes the operator (a negated
operator: one value matches none of the policy's), and is false for a key the request lacks or
that is empty; `ForAllValues:` holds if every value passes, and is true for a key absent or
empty ("a condition operator modified by ForAllValues returns true, and a condition operator
modified by ForAnyValue returns false"). A single-valued key is a set of one. Without a set
operator a list is matched if any value matches (ASSUMED: IAM says to use a set operator with
a multivalued key, and the template always does).

Keys are whatever the caller puts in the context; the template's grants use `aws:SourceAccount`,
`aws:SourceArn`, `aws:SourceOrgID`, `aws:PrincipalArn`, `aws:PrincipalAccount`,
`aws:PrincipalOrgID`, `aws:PrincipalServiceName`, `aws:SecureTransport`,
`aws:RequestedRegion`, `aws:ResourceAccount`, `aws:ResourceOrgID` (single-valued) and
`aws:ResourceOrgPaths` (multivalued) (IAM user guide, "AWS global condition context keys").
"""

import json
import logging
import re
from collections.abc import Callable

log = logging.getLogger("local.policy")


def as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        return [value]
    return list(value)


def parse(document) -> dict | None:
    """A policy document from what moto stores (a JSON string, maybe bytes), or None."""
    if not document:
        return None
    if isinstance(document, dict):
        return document
    try:
        if isinstance(document, bytes):
            document = document.decode()
        parsed = json.loads(document)
    except ValueError:
        # moto keeps IAM documents as they came; some clients send them URL-encoded.
        from urllib.parse import unquote

        try:
            parsed = json.loads(unquote(document))
        except ValueError:
            return None
    return parsed if isinstance(parsed, dict) else None


def like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: `*` any run of characters, `?` any one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S | (re.I if ignore_case else 0)) is not None


def arn_like(pattern: str, value: str) -> bool:
    """ArnLike / ArnEquals: the six colon-separated parts compared one by one, with wildcards."""
    want, have = pattern.split(":", 5), value.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        return False
    return all(like(w, h) for w, h in zip(want, have))


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, have: want == have,
    "StringEqualsIgnoreCase": lambda want, have: want.lower() == have.lower(),
    "StringLike": like,
    "ArnEquals": arn_like,
    "ArnLike": arn_like,
    # Bool: "true"/"false", compared without regard to case (the context holds "true", a
    # policy may say true or "True").
    "Bool": lambda want, have: want.lower() == have.lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def condition_holds(block, context: dict) -> bool:
    """Whether a statement's Condition block holds for the request's condition keys."""
    if not block:
        return True
    if not isinstance(block, dict):
        return False
    known = {k.lower(): v for k, v in context.items() if v is not None}
    for operator, tests in block.items():
        if not isinstance(tests, dict):
            return False
        qualifier, base = operator.split(":", 1) if operator.startswith(("ForAnyValue:", "ForAllValues:")) else (None, operator)
        if_exists = base.endswith("IfExists")
        if if_exists:
            base = base[: -len("IfExists")]
        if base == "Null":
            for key, wanted in tests.items():
                absent = key.lower() not in known
                if any((str(w).lower() == "true") != absent for w in as_list(wanted)):
                    return False
            continue
        negated = base in _NEGATED
        compare = _OPERATORS.get(_NEGATED.get(base, base))
        if compare is None:
            log.warning("condition operator %s is not supported by the local stack: statement ignored", operator)
            return False
        for key, wanted in tests.items():
            have = known.get(key.lower())
            values = [str(h) for h in as_list(have) if str(h) != ""] if qualifier else as_list(have)
            if qualifier and not values:
                # Set operators on a key absent or empty: ForAllValues true, ForAnyValue false.
                if qualifier == "ForAllValues" or if_exists:
                    continue
                return False
            if have is None:
                # A key the request does not carry: false for a positive test, true for a
                # negated one, and true with IfExists.
                if if_exists or negated:
                    continue
                return False

            def passes(value) -> bool:
                return any(compare(str(w), str(value)) for w in as_list(wanted)) != negated

            if qualifier == "ForAllValues":
                if not all(passes(v) for v in values):
                    return False
            elif qualifier == "ForAnyValue":
                if not any(passes(v) for v in values):
                    return False
            else:
                hit = any(compare(str(w), str(h)) for w in as_list(wanted) for h in values)
                if hit == negated:
                    return False
    return True


def principal_values(block, kind: str) -> list[str]:
    """The principals of one kind ("AWS", "Service") a Principal element names; "*" for anyone."""
    if block == "*":
        return ["*"]
    if not isinstance(block, dict):
        return []
    values = [str(v) for v in as_list(block.get(kind))]
    if kind != "AWS" and "*" in [str(v) for v in as_list(block.get("AWS"))]:
        # {"AWS": "*"} is the same as "*": everyone, services included.
        values.append("*")
    return values


def _statement_applies(st: dict, action: str, resource: str | None, principal: Callable | None, context: dict) -> bool:
    if principal is None:
        # An identity policy: it applies to the identity it is attached to, and names no
        # principal.
        pass
    elif "Principal" in st:
        if not principal(st["Principal"]):
            return False
    elif "NotPrincipal" in st:
        if principal(st["NotPrincipal"]):
            return False
    else:
        return False
    if "Action" in st:
        if not any(like(str(a), action, ignore_case=True) for a in as_list(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(like(str(a), action, ignore_case=True) for a in as_list(st["NotAction"])):
            return False
    else:
        return False
    if resource is not None:
        if "Resource" in st:
            if not any(like(str(r), resource) for r in as_list(st["Resource"])):
                return False
        elif "NotResource" in st:
            if any(like(str(r), resource) for r in as_list(st["NotResource"])):
                return False
    return condition_holds(st.get("Condition"), context)


def evaluate(document, *, action: str, principal: Callable[[object], bool] | None, resource: str | None = None, context: dict | None = None) -> str | None:
    """"Deny" if a Deny statement applies, else "Allow" if an Allow does, else None.

    `principal` says whether a statement's Principal element names the requester; None for an
    identity policy (no Principal element: it applies to the identity that holds it).
    `resource` None skips the Resource element (trust policies have none)."""
    policy = parse(document)
    if policy is None:
        return None
    allowed = False
    for st in as_list(policy.get("Statement")):
        if not isinstance(st, dict) or not _statement_applies(st, action, resource, principal, context or {}):
            continue
        if st.get("Effect") == "Deny":
            return "Deny"
        if st.get("Effect") == "Allow":
            allowed = True
    return "Allow" if allowed else None


def organization_id(account_id: str) -> str | None:
    """The id of the organization (moto's Organizations) the account belongs to, if any."""
    from moto.organizations.models import organizations_backends

    owner = organizations_backends.master_accounts.get(account_id)
    if owner is not None:
        management, partition = owner
        org = organizations_backends[management][partition].org
        return org.id if org else None
    # The management account is not in master_accounts: it holds the organization itself.
    if account_id in organizations_backends:
        for backend in list(organizations_backends[account_id].values()):
            if backend.org is not None:
                return backend.org.id
    return None
