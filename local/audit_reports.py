"""CreateCertificateAuthorityAuditReport and DescribeCertificateAuthorityAuditReport for
moto's ACM PCA, in moto's own style: backend state next to the CAs, response methods on
`ACMPCAResponse` (moto dispatches the X-Amz-Target action to the snake_case method), errors as
`JsonRESTError`. `install()` adds them to a running moto; small enough to offer upstream.

The report is built from moto's real CA state (its issued certificates and revocations) and
written into moto's S3 backend of the account that owns the bucket (the CA's own, or a central
account's: bucket names are global), if that bucket's policy lets the service write it for
this CA (`aws:SourceAccount`, `aws:SourceArn`, `aws:SourceOrgID`; see `policy.py`).

Service facts (../shared/AWS_FACTS.md): the key is `audit-report/<CA uuid>/<report id>.json|csv`;
the content lists every certificate issued and revoked; one report per CA every 30 minutes;
the report is produced asynchronously and a bucket permission problem shows as FAILED.
"""

import csv
import datetime
import io
import json
import re
import threading
import time
import uuid

from cryptography import x509
from moto.acmpca import models as acmpca_models
from moto.acmpca.models import ACMPCABackend, CertificateAuthority, acmpca_backends
from moto.acmpca.responses import ACMPCAResponse
from moto.core.exceptions import JsonRESTError
from moto.s3.models import s3_backends

from . import policy, settings

ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:\d{12}:certificate-authority/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
AUDITABLE_STATES = {"ACTIVE", "DISABLED", "EXPIRED"}
SERVICE_PRINCIPAL = "acm-pca.amazonaws.com"
DEFAULT_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
CSV_COLUMNS = [
    "awsAccountId",
    "requestedByServicePrincipal",
    "certificateArn",
    "serial",
    "subject",
    "notBefore",
    "notAfter",
    "issuedAt",
    "revokedAt",
    "revocationReason",
    "templateArn",
]

_lock = threading.RLock()
# Every create call, for tests and benchmarks to count at the emulator.
CALLS: list[dict] = []
# Throttling answers given, per operation.
THROTTLED: dict[str, int] = {}


class InvalidArnException(JsonRESTError):
    def __init__(self, arn: str):
        super().__init__("InvalidArnException", f"The ARN {arn!r} is not valid.")


class InvalidArgsException(JsonRESTError):
    def __init__(self, message: str):
        super().__init__("InvalidArgsException", message)


class InvalidStateException(JsonRESTError):
    def __init__(self, arn: str, state: str):
        super().__init__(
            "InvalidStateException",
            f"The certificate authority {arn} is in state {state} and cannot be audited.",
        )


class RequestInProgressException(JsonRESTError):
    def __init__(self, arn: str):
        super().__init__(
            "RequestInProgressException",
            f"An audit report for {arn} was requested less than 30 minutes ago.",
        )


class ResourceNotFoundException(JsonRESTError):
    def __init__(self, message: str):
        super().__init__("ResourceNotFoundException", message)


class ThrottlingException(JsonRESTError):
    def __init__(self) -> None:
        super().__init__("ThrottlingException", "Rate exceeded")


class _TokenBucket:
    """`rate` requests a second with a burst of one second's worth (at least one)."""

    def __init__(self) -> None:
        self.tokens = None
        self.at = 0.0

    def take(self, rate: float) -> bool:
        now = time.monotonic()
        capacity = max(1.0, rate)
        if self.tokens is None:
            self.tokens = capacity
        self.tokens = min(capacity, self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


_buckets: dict[tuple, _TokenBucket] = {}


def check_quota(account_id: str, region: str, operation: str) -> None:
    """Raises ThrottlingException beyond the operation's quota in this account and region."""
    conf = settings.get(account_id)
    rate = conf["create_rps"] if operation == "CreateCertificateAuthorityAuditReport" else conf["read_rps"]
    with _lock:
        bucket = _buckets.setdefault((account_id, region, operation), _TokenBucket())
        allowed = bucket.take(rate)
    if not allowed:
        with _lock:
            THROTTLED[operation] = THROTTLED.get(operation, 0) + 1
        raise ThrottlingException()


def reset() -> None:
    with _lock:
        CALLS.clear()
        THROTTLED.clear()
        _buckets.clear()


# --- what moto does not keep: when each certificate was issued, with which template ---------

_issued_meta: dict[str, dict] = {}
_original_issue = CertificateAuthority.issue_certificate


def _issue_certificate(self: CertificateAuthority, csr_bytes: bytes, template_arn: str | None) -> str:
    cert_arn = _original_issue(self, csr_bytes, template_arn)
    _issued_meta[cert_arn] = {"issued_at": time.time(), "template_arn": template_arn or DEFAULT_TEMPLATE}
    return cert_arn


def _normal_serial(serial: str) -> int:
    return int(serial.replace(":", ""), 16)


def _colon_serial(number: int) -> str:
    hex_digits = format(number, "x")
    if len(hex_digits) % 2:
        hex_digits = "0" + hex_digits
    return ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2))


def _stamp(epoch: float) -> str:
    # The report's own form: 2020-02-26T18:39:57+0000
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def report_rows(ca: CertificateAuthority) -> list[dict]:
    """One row per certificate the CA issued, in issue order, with its revocation if any."""
    revoked = {}
    for serial, info in ca.revoked_certificates.items():
        try:
            revoked[_normal_serial(serial)] = info
        except ValueError:
            continue
    rows = []
    for cert_arn, pem in ca.issued_certificates.items():
        cert = x509.load_pem_x509_certificate(pem)
        meta = _issued_meta.get(cert_arn, {})
        row = {
            "awsAccountId": ca.account_id,
            "certificateArn": cert_arn,
            "serial": _colon_serial(cert.serial_number),
            "subject": cert.subject.rfc4514_string(),
            "notBefore": _stamp(cert.not_valid_before_utc.timestamp()),
            "notAfter": _stamp(cert.not_valid_after_utc.timestamp()),
            "issuedAt": _stamp(meta.get("issued_at", cert.not_valid_before_utc.timestamp())),
        }
        revocation = revoked.get(cert.serial_number)
        if revocation:
            row["revokedAt"] = _stamp(revocation["revocation_time"])
            row["revocationReason"] = revocation["revocation_reason"]
        row["templateArn"] = meta.get("template_arn", DEFAULT_TEMPLATE)
        rows.append(row)
    return rows


def render(rows: list[dict], fmt: str) -> bytes:
    if fmt == "JSON":
        # Optional keys are left out, not null.
        return json.dumps(rows, separators=(",", ":")).encode()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})
    return out.getvalue().encode()


def _source_context(ca: CertificateAuthority) -> dict:
    """The condition keys the service sets when it writes for a CA: the CA's account and ARN,
    and the organization of the CA's account when it belongs to one."""
    return {
        "aws:SourceAccount": ca.account_id,
        "aws:SourceArn": ca.arn,
        "aws:SourceOrgID": policy.organization_id(ca.account_id),
    }


def _policy_allows_service(bucket, key: str, ca: CertificateAuthority) -> bool:
    """Whether the bucket policy lets acm-pca.amazonaws.com put the report's key for this CA:
    an Allow naming the service (or everyone) for s3:PutObject on the key whose conditions hold
    (aws:SourceAccount, aws:SourceArn, aws:SourceOrgID), and no Deny that applies."""
    verdict = policy.evaluate(
        getattr(bucket, "policy", None),
        action="s3:PutObject",
        resource=f"arn:aws:s3:::{bucket.name}/{key}",
        principal=lambda block: any(p in ("*", SERVICE_PRINCIPAL) for p in policy.principal_values(block, "Service")),
        context=_source_context(ca),
    )
    return verdict == "Allow"


def bucket_backend(bucket_name: str):
    """The S3 backend of the account that owns the bucket (names are global; moto keeps S3
    per account), or None when no account has it."""
    owner = s3_backends.bucket_accounts.get(bucket_name)
    if owner is None:
        return None
    partition, account_id = owner
    backend = s3_backends[account_id][partition]
    return backend if bucket_name in backend.buckets else None


class AuditReport:
    def __init__(self, ca: CertificateAuthority, bucket_name: str, fmt: str, delay: float):
        self.id = str(uuid.uuid4())
        self.ca = ca
        self.bucket_name = bucket_name
        self.format = fmt
        self.key = f"audit-report/{ca.id}/{self.id}.{fmt.lower()}"
        self.created_at = time.time()
        self.ready_at = self.created_at + delay
        self.status = "CREATING"

    def finish(self) -> None:
        """Writes the report (SUCCESS) or gives up (FAILED) once its time has come."""
        with _lock:
            if self.status != "CREATING" or time.time() < self.ready_at:
                return
            # The bucket may belong to another account (a central one): the report goes there.
            backend = bucket_backend(self.bucket_name)
            if backend is None:
                self.status = "FAILED"
                return
            bucket = backend.buckets[self.bucket_name]
            if not _policy_allows_service(bucket, self.key, self.ca):
                # AWS reports permission problems on the bucket asynchronously, as FAILED.
                self.status = "FAILED"
                return
            body = render(report_rows(self.ca), self.format)
            backend.put_object(self.bucket_name, self.key, body)
            self.status = "SUCCESS"


# Reports per (account, region), and when each CA was last accepted.
_reports: dict[tuple, dict[str, AuditReport]] = {}
_last_accepted: dict[str, float] = {}


def create_audit_report(backend: ACMPCABackend, arn: str, bucket_name: str, fmt: str) -> AuditReport:
    if not isinstance(arn, str) or not ARN_PATTERN.match(arn):
        raise InvalidArnException(str(arn))
    if fmt not in ("JSON", "CSV"):
        raise InvalidArgsException(f"AuditReportResponseFormat must be JSON or CSV, not {fmt!r}.")
    if not isinstance(bucket_name, str) or not 3 <= len(bucket_name) <= 63:
        raise InvalidArgsException("S3BucketName must be 3 to 63 characters long.")
    ca = backend.certificate_authorities.get(arn)
    if ca is None:
        raise ResourceNotFoundException(f"Could not find certificate authority {arn}.")
    if ca.status not in AUDITABLE_STATES:
        raise InvalidStateException(arn, ca.status)
    # Which error a missing bucket gets on the create call is not documented; the service
    # checks the caller's access to the bucket synchronously (seed API page), so the request
    # is refused here as invalid arguments naming the bucket.
    # Bucket names are global: the bucket may be another account's.
    if bucket_backend(bucket_name) is None:
        raise InvalidArgsException(f"The S3 bucket {bucket_name} does not exist.")
    conf = settings.get(ca.account_id)
    with _lock:
        last = _last_accepted.get(arn)
        # ASSUMPTION (AWS_FACTS.md): no public source says which error a second request inside
        # the 30 minutes gets; RequestInProgressException is the most plausible, so it is this one.
        if last is not None and time.time() - last < conf["window_seconds"]:
            raise RequestInProgressException(arn)
        report = AuditReport(ca, bucket_name, fmt, conf["report_delay_seconds"])
        _last_accepted[arn] = report.created_at
        _reports.setdefault((backend.account_id, backend.region_name), {})[report.id] = report
    if conf["report_delay_seconds"] <= 0:
        report.finish()
    else:
        timer = threading.Timer(conf["report_delay_seconds"], report.finish)
        timer.daemon = True
        timer.start()
    return report


def finish_now(account_id: str | None = None) -> int:
    """Ends every report still CREATING (of one account), as the service would once it has
    written them: for tests of a report that outlived the run that requested it."""
    with _lock:
        pending = [
            r
            for (account, _), reports in _reports.items()
            if account_id in (None, account)
            for r in reports.values()
            if r.status == "CREATING"
        ]
        for r in pending:
            r.ready_at = time.time()
    for r in pending:
        r.finish()
    return len(pending)


def describe_audit_report(backend: ACMPCABackend, arn: str, report_id: str) -> AuditReport:
    if not isinstance(arn, str) or not ARN_PATTERN.match(arn):
        raise InvalidArnException(str(arn))
    if arn not in backend.certificate_authorities:
        raise ResourceNotFoundException(f"Could not find certificate authority {arn}.")
    report = _reports.get((backend.account_id, backend.region_name), {}).get(report_id)
    if report is None or report.ca.arn != arn:
        raise ResourceNotFoundException(f"Could not find audit report {report_id} for {arn}.")
    report.finish()
    return report


# --- the response side -------------------------------------------------------------------------


def _create_response(self: ACMPCAResponse) -> str:
    params = json.loads(self.body or "{}")
    backend = self.acmpca_backend
    arn = params.get("CertificateAuthorityArn")
    call = {"time": time.time(), "account_id": backend.account_id, "region": backend.region_name, "ca_arn": arn}
    try:
        check_quota(backend.account_id, backend.region_name, "CreateCertificateAuthorityAuditReport")
        report = create_audit_report(backend, arn, params.get("S3BucketName"), params.get("AuditReportResponseFormat"))
    except JsonRESTError as e:
        with _lock:
            CALLS.append({**call, "outcome": e.error_type, "report_id": None})
        raise
    with _lock:
        CALLS.append({**call, "outcome": "Accepted", "report_id": report.id})
    return json.dumps({"AuditReportId": report.id, "S3Key": report.key})


def _describe_response(self: ACMPCAResponse) -> str:
    params = json.loads(self.body or "{}")
    backend = self.acmpca_backend
    check_quota(backend.account_id, backend.region_name, "DescribeCertificateAuthorityAuditReport")
    report = describe_audit_report(backend, params.get("CertificateAuthorityArn"), params.get("AuditReportId"))
    return json.dumps(
        {
            "AuditReportStatus": report.status,
            "S3BucketName": report.bucket_name,
            "S3Key": report.key,
            "CreatedAt": report.created_at,
        }
    )


def _quota_checked(method, operation: str):
    def wrapper(self: ACMPCAResponse) -> str:
        backend = self.acmpca_backend
        check_quota(backend.account_id, backend.region_name, operation)
        return method(self)

    wrapper.__name__ = method.__name__
    return wrapper


def _list_response(self: ACMPCAResponse) -> str:
    # The service returns at most 100 CAs a page whatever MaxResults says.
    params = json.loads(self.body or "{}")
    max_results = min(int(params.get("MaxResults") or 100), 100)
    cas, next_token = self.acmpca_backend.list_certificate_authorities(
        max_results=max_results, next_token=params.get("NextToken"), resource_owner=params.get("ResourceOwner")
    )
    response = {"CertificateAuthorities": [ca.to_json() for ca in cas]}
    if next_token:
        response["NextToken"] = next_token
    return json.dumps(response)


_original_key = CertificateAuthority.key


def _cached_key(self: CertificateAuthority):
    # moto decrypts and validates the CA's RSA key on every use (~60 ms); keep it once loaded.
    key = self.__dict__.get("_loaded_key")
    if key is None:
        key = self.__dict__["_loaded_key"] = _original_key.fget(self)
    return key


_installed = False


def install() -> None:
    """Adds the two operations and the read quotas to moto's ACM PCA (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    CertificateAuthority.issue_certificate = _issue_certificate
    CertificateAuthority.key = property(_cached_key)
    ACMPCAResponse.create_certificate_authority_audit_report = _create_response
    ACMPCAResponse.describe_certificate_authority_audit_report = _describe_response
    ACMPCAResponse.list_certificate_authorities = _quota_checked(_list_response, "ListCertificateAuthorities")
    ACMPCAResponse.describe_certificate_authority = _quota_checked(
        ACMPCAResponse.describe_certificate_authority, "DescribeCertificateAuthority"
    )
    _ = acmpca_models, acmpca_backends
