"""The report bucket's policy for tests and the demo: one definition (`bucket_policy.json`,
read by the Rust harness too), the policy docs/deploying.md gives for an existing bucket. Statement 0
is Private CA's Allow (its account condition is set here); statement 1 the Deny that keeps
every other principal from writing, overwriting or deleting under audit-report/ (template.yaml's
OnlyPrivateCaWritesReports, without its exception for the callers)."""

import json
from pathlib import Path

_TEMPLATE = json.loads((Path(__file__).parent / "bucket_policy.json").read_text())


def bucket_policy(bucket: str, accounts: list[str] | None = None) -> str:
    """The policy letting ACM PCA write `bucket`'s audit reports for the CAs of `accounts`
    (`None`: of any account, for the stack's own tests of other conditions)."""
    policy = json.loads(json.dumps(_TEMPLATE).replace("BUCKET", bucket))
    statement = policy["Statement"][0]
    if accounts is None:
        del statement["Condition"]
    else:
        statement["Condition"]["StringEquals"]["aws:SourceAccount"] = list(accounts)
    return json.dumps(policy)
