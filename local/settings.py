"""The emulator's settings: AWS's values by default, changed by environment variable at
start-up or per account through the control API, so tests can run fast while the defaults
stay what the benchmarks use."""

import os
import threading

DEFAULTS = {
    # One report per CA every 30 minutes (API reference, "You can generate a maximum of one
    # report every 30 minutes").
    "window_seconds": float(os.environ.get("PCA_LOCAL_WINDOW_SECONDS", 1800)),
    # CreateCertificateAuthorityAuditReport: 1 request per second per account and region.
    "create_rps": float(os.environ.get("PCA_LOCAL_CREATE_RPS", 1)),
    # Describe audit report, ListCertificateAuthorities, DescribeCertificateAuthority: 20 each.
    "read_rps": float(os.environ.get("PCA_LOCAL_READ_RPS", 20)),
    # How long a report stays CREATING before it is written and SUCCESS (or FAILED).
    "report_delay_seconds": float(os.environ.get("PCA_LOCAL_REPORT_DELAY_SECONDS", 2)),
    # CreateCertificateAuthorityAuditReport called by an assumed-role session of this account
    # is refused unless the caller may write the bucket (audit_reports.check_caller_write):
    # 1, the two permission test objects at the bucket's root; 2, those and the report's own
    # key (which objects AWS checks is not documented: 1 is the likely reading, 2 the wider one
    # a test uses to show the refusal a wrong guess gives). 0 (off) by default: harness sessions
    # assume roles that do not exist in moto's IAM, and a refusal there would fail every test
    # that never meant to test IAM (docs/local-stack.md).
    "check_caller_write": float(os.environ.get("PCA_LOCAL_CHECK_CALLER_WRITE", 0)),
}

_lock = threading.Lock()
_global = dict(DEFAULTS)
_per_account: dict[str, dict] = {}


def get(account_id: str) -> dict:
    with _lock:
        return {**_global, **_per_account.get(account_id, {})}


def update(values: dict, account_id: str | None = None) -> dict:
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    for key, value in values.items():
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{key} must be a number >= 0")
        if key == "check_caller_write" and value not in (0, 1, 2):
            raise ValueError("check_caller_write must be 0 (off), 1 (permission test objects) or 2 (and the report's key)")
    with _lock:
        target = _per_account.setdefault(account_id, {}) if account_id else _global
        target.update({k: float(v) for k, v in values.items()})
    return get(account_id or "")


def reset() -> None:
    with _lock:
        _global.clear()
        _global.update(DEFAULTS)
        _per_account.clear()
