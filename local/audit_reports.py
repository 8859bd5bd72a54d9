"""CreateCertificateAuthorityAuditReport and DescribeCertificateAuthorityAuditReport for
moto's ACM PCA, in moto's own style: backend state next to the CAs, response methods on
`ACMPCAResponse` (moto dispatches the X-Amz-Target action to the snake_case method), errors as
`JsonRESTError`. `install()` adds them to a running moto; small enough to offer upstream.

The report is built from moto's real CA state (its issued certificates and revocations) and
written into moto's S3 backend of the account that owns the bucket (the CA's own, or a central
account's: bucket names are global), if that bucket's policy lets the service write it for
this CA (`aws:SourceAccount`, `aws:SourceArn`, `aws:SourceOrgID`; see `policy.py`) and, for
SSE-KMS, the key's policy lets the service use the key with the encryption context S3 sets.
The caller's own permission to write the bucket is checked on the create call when the
account opts in (setting `check_caller_write`: 1 the permission test objects, 2 those and the
report's key; docs/local-stack.md says why).

Every rule below cites the AWS page it follows, or says it is assumed and why; the table in
docs/local-stack.md lists them all.

Service facts (../shared/AWS_FACTS.md): the key is `audit-report/<CA uuid>/<report id>.json|csv`;
the content lists every certificate issued and revoked; one report per CA every 30 minutes;
the report is produced asynchronously and a bucket permission problem shows as FAILED.
"""

import base64
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
import logging

from moto.core.exceptions import JsonRESTError
from moto.iam.models import iam_backends
from moto.kms.models import kms_backends
from moto.s3.models import s3_backends

from . import policy, settings, trust

log = logging.getLogger("local.audit_reports")

ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:\d{12}:certificate-authority/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
# Private CA user guide, "Understand AWS Private CA CA status", column "Generate audits"
# (https://docs.aws.amazon.com/privateca/latest/userguide/PcaUpdateStatus.html): Yes for
# ACTIVE and DISABLED only; EXPIRED, CREATING, PENDING_CERTIFICATE, FAILED, DELETED: No.
AUDITABLE_STATES = {"ACTIVE", "DISABLED"}
# Private CA user guide, "Use audit reports with your private CA" (PcaAuditReport.html): "Audit
# report generation is not supported for certificate authorities that have issued more than
# 100 million certificates"; its Java sample page (JavaApi-CreateCertificateAuthorityAuditReport
# .html): "If you call this operation for such a CA, the service returns a
# LimitExceededException".
MAX_AUDITABLE_CERTIFICATES = 100_000_000
# Objects Private CA writes into a report bucket: its permission test objects at the bucket's
# root and the report. Private CA user guide, "Encrypting your audit reports" (PcaAuditReport.html
# #audit-report-encryption), key-policy statement for a bucket without S3 Bucket Key:
# bucket/acm-pca-permission-test-key, bucket/acm-pca-permission-test-key-private,
# bucket/audit-report/* (and bucket/crl/* for CRLs).
PERMISSION_TEST_KEYS = ("acm-pca-permission-test-key", "acm-pca-permission-test-key-private")
SERVICE_PRINCIPAL = "acm-pca.amazonaws.com"
DEFAULT_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
# The report's columns (CSV header, JSON keys), in the order of the Private CA user guide's
# sample, "Use audit reports with your private CA"
# (https://docs.aws.amazon.com/privateca/latest/userguide/PcaAuditReport.html). The function's
# reader (src/evidence/contents.rs, READ_REPORTS) requires exactly these names.
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


class LimitExceededException(JsonRESTError):
    def __init__(self, arn: str, count: int):
        super().__init__(
            "LimitExceededException",
            f"The certificate authority {arn} has issued {count} certificates; audit reports are not "
            f"supported for certificate authorities that have issued more than {MAX_AUDITABLE_CERTIFICATES}.",
        )


class AccessDeniedException(JsonRESTError):
    def __init__(self, caller_arn: str, resource: str, explicit: bool = False):
        why = " with an explicit deny in a resource-based policy" if explicit else ""
        super().__init__(
            "AccessDeniedException",
            f"User: {caller_arn} is not authorized to perform: s3:PutObject on resource: {resource}{why}",
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
        _certificate_counts.clear()


# --- how many certificates a CA has issued, as the service counts them ------------------------

# Set through the control API (POST /certificate-count): a CA cannot be made to issue 100
# million certificates locally, so the count the service would hold is set instead.
_certificate_counts: dict[str, int] = {}


def set_certificate_count(arn: str, count: int) -> None:
    with _lock:
        _certificate_counts[arn] = count


def certificate_count(ca: CertificateAuthority) -> int:
    with _lock:
        forced = _certificate_counts.get(ca.arn)
    return forced if forced is not None else len(ca.issued_certificates)


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
    the organization of the CA's account when it belongs to one, and the keys that say the
    caller is a service principal. IAM user guide, "AWS global condition context keys"
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html):
    aws:SourceAccount, aws:SourceArn and aws:SourceOrgID are there "only when the call to your
    resource is made directly by an AWS service principal"; aws:PrincipalServiceName is the
    calling service principal's name and aws:PrincipalIsAWSService true, both present only for
    a call made by an AWS service principal. ASSUMED: that Private CA's write of a report is
    such a call (the bucket policy grants it as the service principal, which is what the guide
    documents). A policy that requires these keys then passes; if the service did not send
    them, a Deny keyed on them would fail every report: loud, as FAILED."""
    return service_context(ca.account_id, ca.arn, policy.organization_id(ca.account_id))


def service_context(account_id: str, ca_arn: str, org_id: str | None = None) -> dict:
    """The request context of Private CA's write for the CA `ca_arn` of `account_id`."""
    return {
        "aws:SourceAccount": account_id,
        "aws:SourceArn": ca_arn,
        "aws:SourceOrgID": org_id,
        "aws:PrincipalServiceName": SERVICE_PRINCIPAL,
        "aws:PrincipalIsAWSService": "true",
    }


def names_service(block) -> bool:
    return any(p in ("*", SERVICE_PRINCIPAL) for p in policy.principal_values(block, "Service"))


def service_request(bucket, key: str, ca: CertificateAuthority, action: str = "s3:PutObject") -> str | None:
    """The bucket policy's verdict ("Allow", "Deny" or None) on acm-pca.amazonaws.com doing
    `action` on the bucket's `key` for this CA: an Allow naming the service (or everyone) on
    the key whose conditions hold, and no Deny that applies."""
    return policy.evaluate(
        getattr(bucket, "policy", None),
        action=action,
        resource=f"arn:aws:s3:::{bucket.name}/{key}",
        principal=names_service,
        context=_source_context(ca),
    )


def _policy_allows_service(bucket, key: str, ca: CertificateAuthority) -> bool:
    return service_request(bucket, key, ca) == "Allow"


def _default_encryption(bucket) -> dict:
    """The bucket's default encryption rule as moto keeps it (S3 PutBucketEncryption's XML):
    `ApplyServerSideEncryptionByDefault` and `BucketKeyEnabled`. No configuration is SSE-S3:
    every bucket has it by default (S3 user guide, "Setting default server-side encryption
    behavior for Amazon S3 buckets", https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-encryption.html)."""
    config = getattr(bucket, "encryption", None) or {}
    rule = config.get("Rule") or {}
    if isinstance(rule, list):
        rule = rule[0] if rule else {}
    return rule


def _kms_key(key_id: str, bucket):
    """The KMS key a bucket's KMSMasterKeyID names, in moto's KMS: a key ARN or alias ARN is
    looked up in the account and region it names; a bare key id or alias in the bucket owner's
    account and the bucket's region (S3 resolves it there). None if there is no such key."""
    parts = key_id.split(":")
    if key_id.startswith("arn:") and len(parts) >= 6:
        account_id, region = parts[4], parts[3]
        ident = parts[5]
    else:
        account_id, region, ident = bucket.account_id, bucket.region_name, key_id
    if account_id not in kms_backends or region not in kms_backends[account_id]:
        return None, region
    backend = kms_backends[account_id][region]
    if ident.startswith("alias/"):
        # Look the alias up without moto making the AWS managed key it reserves.
        found = next((k for k in backend.keys.values() if ident in k.aliases), None)
        return found, region
    return backend.keys.get(ident.removeprefix("key/")), region


def _encryption_allows_service(bucket, key: str, ca: CertificateAuthority) -> bool:
    """Whether the service can encrypt the report with the bucket's default encryption.

    SSE-S3 needs nothing (Private CA user guide, "Encrypting your audit reports",
    PcaAuditReport.html#audit-report-encryption). SSE-KMS needs a customer managed key ("ACM
    Private CA does not support using default KMS keys generated automatically by S3": the AWS
    managed aws/s3 key fails), enabled (KMS developer guide, "Key states of AWS KMS keys"), in
    the bucket's region (S3 user guide, "Specifying server-side encryption with AWS KMS":
    the key must be in the bucket's region), whose key policy lets acm-pca.amazonaws.com
    kms:GenerateDataKey and kms:Decrypt (the two actions the guide's statements grant) with
    kms:EncryptionContext:aws:s3:arn set as S3 sets it: the bucket ARN with an S3 Bucket Key,
    the object ARN without (S3 user guide, "Configuring your bucket to use an S3 Bucket Key with
    SSE-KMS for new objects", configuring-bucket-key.html). ASSUMED: that a key policy granting
    GenerateDataKey without Decrypt fails the report (the guide grants both; failing is the loud
    reading); no other condition key (aws:SourceAccount...) is set on this KMS call (none is
    documented, so a policy requiring one fails)."""
    rule = _default_encryption(bucket)
    default = rule.get("ApplyServerSideEncryptionByDefault") or {}
    algorithm = default.get("SSEAlgorithm", "AES256")
    if algorithm == "AES256":
        return True
    if algorithm not in ("aws:kms", "aws:kms:dsse"):
        log.warning("bucket %s: encryption %s is not modelled by the local stack: report FAILED", bucket.name, algorithm)
        return False
    key_id = default.get("KMSMasterKeyID")
    if not key_id:
        # aws:kms without a key id is the AWS managed aws/s3 key, which Private CA refuses.
        return False
    kms_key, region = _kms_key(str(key_id), bucket)
    if kms_key is None:
        log.warning("bucket %s: KMS key %s does not exist: report FAILED", bucket.name, key_id)
        return False
    if kms_key.key_manager != "CUSTOMER" or any(a.startswith("alias/aws/") for a in kms_key.aliases):
        return False
    if kms_key.key_state != "Enabled" or region != bucket.region_name:
        return False
    bucket_key = str(rule.get("BucketKeyEnabled", "false")).lower() == "true"
    context = {
        "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket.name}" if bucket_key else f"arn:aws:s3:::{bucket.name}/{key}"
    }
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        verdict = policy.evaluate(
            kms_key.policy,
            action=action,
            resource=kms_key.arn,
            principal=names_service,
            context=context,
        )
        if verdict != "Allow":
            return False
    return True


def bucket_backend(bucket_name: str):
    """The S3 backend of the account that owns the bucket (names are global; moto keeps S3
    per account), or None when no account has it."""
    owner = s3_backends.bucket_accounts.get(bucket_name)
    if owner is None:
        return None
    partition, account_id = owner
    backend = s3_backends[account_id][partition]
    return backend if bucket_name in backend.buckets else None


def _crc64nvme_table() -> list[int]:
    # CRC-64/NVME: polynomial 0xAD93D23594C93659, reflected in and out, initial value and final
    # XOR all ones (the NVM Express base specification's CRC; "123456789" gives
    # 0xAE8B14860A799888, checked in local/tests). Table-driven on the reflected polynomial.
    reflected = int(format(0xAD93D23594C93659, "064b")[::-1], 2)
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ reflected if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64NVME = _crc64nvme_table()


def crc64nvme(data: bytes) -> int:
    try:
        # awscrt (when installed) computes it natively; moto's own fallback without it is a
        # CRC32 under the CRC64NVME name, which would be the wrong value.
        from awscrt import checksums

        return checksums.crc64nvme(data)
    except ImportError:
        pass
    crc = 0xFFFFFFFFFFFFFFFF
    table = _CRC64NVME
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def crc64nvme_base64(data: bytes) -> str:
    """The value of x-amz-checksum-crc64nvme: the CRC's 8 bytes, big-endian, in base64."""
    return base64.b64encode(crc64nvme(data).to_bytes(8, "big")).decode()


class AuditReport:
    def __init__(self, ca: CertificateAuthority, bucket_name: str, fmt: str, delay: float, report_id: str | None = None):
        self.id = report_id or str(uuid.uuid4())
        self.ca = ca
        self.bucket_name = bucket_name
        self.format = fmt
        self.key = report_key(ca, self.id, fmt)
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
            if not _encryption_allows_service(bucket, self.key, self.ca):
                # The same for a key the service may not use: FAILED, nothing written
                # (AWS_FACTS.md: "A permission or encryption problem with the bucket shows up as
                # FAILED"; ASSUMED that it is never an error of the create call).
                self.status = "FAILED"
                return
            body = render(report_rows(self.ca), self.format)
            written = backend.put_object(self.bucket_name, self.key, body)
            # S3 user guide, "Checking object integrity"
            # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html)
            # and the API's Checksum type: an object "uploaded without a checksum" gets the
            # default, a full-object CRC64NVME, which HeadObject and GetObject return with
            # checksum mode ENABLED (x-amz-checksum-crc64nvme, x-amz-checksum-type FULL_OBJECT).
            # ASSUMED: Private CA sends no checksum of its own (none is documented); if it sent
            # another algorithm, a reader pinning CRC64NVME would see none and must say so.
            written.checksum_algorithm = "CRC64NVME"
            written.checksum_value = crc64nvme_base64(body)
            written.checksum_type = "FULL_OBJECT"
            self.status = "SUCCESS"


def report_key(ca: CertificateAuthority, report_id: str, fmt: str) -> str:
    return f"audit-report/{ca.id}/{report_id}.{fmt.lower()}"


def _caller_identity_policies(role) -> list:
    """The role's identity policies in moto's IAM: inline, and the default version of each
    attached managed policy."""
    documents = list(role.policies.values())
    for managed in role.managed_policies.values():
        documents += [v.document for v in managed.versions if v.is_default]
    return documents


def principal_request(
    bucket_name: str,
    key: str,
    action: str,
    *,
    account_id: str,
    role_arn: str,
    session_arn: str | None = None,
    identity_documents: list | tuple = (),
) -> str | None:
    """IAM's verdict on a session of an IAM role doing `action` on one object of the bucket:
    "Deny" (an explicit Deny in its identity policies or the bucket policy), "Allow", or None
    (no Allow: an implicit deny).

    IAM user guide, "Policy evaluation logic" and "Cross-account policy evaluation logic"
    (reference_policies_evaluation-logic.html, ..._evaluation-logic-cross-account.html): an
    explicit Deny in either refuses; in the bucket owner's account an Allow in either suffices;
    from another account both must allow. The bucket policy's Principal names the caller when
    it is `*`, the caller's account id or `arn:aws:iam::<account>:root` (IAM user guide, "AWS
    JSON policy elements: Principal", AWS account principals: the account id and the root ARN
    both stand for the account, and so for every principal of it that its own policies allow),
    the role's ARN or the session's ARN. Condition keys: aws:PrincipalAccount, aws:PrincipalArn
    (the role's ARN for a role session), aws:PrincipalOrgID, aws:PrincipalType (AssumedRole),
    aws:PrincipalIsAWSService false; aws:PrincipalServiceName is absent (IAM user guide, "AWS
    global condition context keys": it is there only for a call made by a service principal)."""
    backend = bucket_backend(bucket_name)
    bucket = backend.buckets[bucket_name] if backend is not None else None
    return principal_verdict(
        getattr(bucket, "policy", None),
        backend.account_id if backend is not None else None,
        bucket_name,
        key,
        action,
        account_id=account_id,
        role_arn=role_arn,
        session_arn=session_arn,
        identity_documents=identity_documents,
    )


def principal_verdict(
    bucket_policy,
    bucket_account: str | None,
    bucket_name: str,
    key: str,
    action: str,
    *,
    account_id: str,
    role_arn: str,
    session_arn: str | None = None,
    identity_documents: list | tuple = (),
) -> str | None:
    """`principal_request` for a bucket policy and owner given as values (no moto state but
    the caller's organization)."""
    identities = {"*", account_id, f"arn:aws:iam::{account_id}:root", role_arn, session_arn}
    context = {
        "aws:PrincipalAccount": account_id,
        "aws:PrincipalArn": role_arn,
        "aws:PrincipalOrgID": policy.organization_id(account_id),
        "aws:PrincipalType": "AssumedRole",
        "aws:PrincipalIsAWSService": "false",
    }
    resource = f"arn:aws:s3:::{bucket_name}/{key}"
    identity = [
        policy.evaluate(doc, action=action, principal=None, resource=resource, context=context)
        for doc in identity_documents
    ]
    by_bucket = policy.evaluate(
        bucket_policy,
        action=action,
        principal=lambda block: any(p in identities for p in policy.principal_values(block, "AWS")),
        resource=resource,
        context=context,
    )
    if "Deny" in identity or by_bucket == "Deny":
        return "Deny"
    identity_allows = "Allow" in identity
    if bucket_account == account_id:
        allowed = identity_allows or by_bucket == "Allow"
    else:
        allowed = identity_allows and by_bucket == "Allow"
    return "Allow" if allowed else None


def caller_write_keys(level: float, report: str) -> list[str]:
    """The objects the caller's write check covers at setting `check_caller_write` = level:
    1, the two permission test objects (the reading ../shared/AWS_FACTS.md calls likely, and
    what template.yaml grants by default); 2, those and the report's own key (the wider
    reading: what the template grants with CallerWriteGrant=AuditReports)."""
    keys = list(PERMISSION_TEST_KEYS)
    if level >= 2:
        keys.append(report)
    return keys


def check_caller_write(caller, bucket_name: str, keys: list[str]) -> None:
    """Raises AccessDeniedException unless the caller (moto's AssumedRole) may s3:PutObject
    every one of these keys of the bucket (`principal_request`, with the role's identity
    policies from moto's IAM).

    API reference, CreateCertificateAuthorityAuditReport (the text botocore still carries):
    "Both AWS Private CA and the IAM principal must have permission to write to the S3 bucket
    that you specify. If the IAM principal making the call does not have permission to write to
    the bucket, then an exception is thrown." The current text no longer says so. ASSUMED:
    which objects the check writes is not documented (`caller_write_keys` says which are
    checked at each setting); the error code (AccessDeniedException, not a modelled error of
    the operation) and the message, which follows IAM's ("Troubleshoot access denied error
    messages": "... with an explicit deny in a resource-based policy" when a bucket policy's
    Deny refused it). A caller role missing from moto's IAM is refused (it can hold no
    permission)."""
    role = None
    match = trust.ROLE_ARN.match(caller.role_arn or "")
    if match:
        try:
            role = iam_backends[match.group(2)][match.group(1)].get_role_by_arn(caller.role_arn)
        except Exception:
            role = None
    documents = _caller_identity_policies(role) if role is not None else []
    for key in keys:
        verdict = principal_request(
            bucket_name,
            key,
            "s3:PutObject",
            account_id=caller.account_id,
            role_arn=caller.role_arn,
            session_arn=caller.arn,
            identity_documents=documents,
        )
        if verdict != "Allow":
            if role is None:
                log.warning("caller write check: role %s is not in moto's IAM: refused", caller.role_arn)
            raise AccessDeniedException(caller.arn, f"arn:aws:s3:::{bucket_name}/{key}", explicit=verdict == "Deny")


# Reports per (account, region), and when each CA was last accepted.
_reports: dict[tuple, dict[str, AuditReport]] = {}
_last_accepted: dict[str, float] = {}


def create_audit_report(backend: ACMPCABackend, arn: str, bucket_name: str, fmt: str, caller=None) -> AuditReport:
    """`caller`: moto's AssumedRole behind the request's keys, None for long-term keys."""
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
    count = certificate_count(ca)
    if count > MAX_AUDITABLE_CERTIFICATES:
        raise LimitExceededException(arn, count)
    # A missing bucket: the API reference's ResourceNotFoundException is "A resource such as
    # a private CA, S3 bucket, certificate, audit report, or policy cannot be found"
    # (CreateCertificateAuthorityAuditReport, Errors). ASSUMED: the service finds out on the
    # create call (it checks the caller's access to the bucket synchronously, seed API page),
    # not only when it writes. Bucket names are global: the bucket may be another account's.
    if bucket_backend(bucket_name) is None:
        raise ResourceNotFoundException(f"The S3 bucket {bucket_name} does not exist.")
    conf = settings.get(ca.account_id)
    report_id = str(uuid.uuid4())
    if caller is not None and conf["check_caller_write"]:
        check_caller_write(caller, bucket_name, caller_write_keys(conf["check_caller_write"], report_key(ca, report_id, fmt)))
    with _lock:
        last = _last_accepted.get(arn)
        # ASSUMPTION (AWS_FACTS.md): no public source says which error a second request inside
        # the 30 minutes gets; RequestInProgressException is the most plausible, so it is this one.
        if last is not None and time.time() - last < conf["window_seconds"]:
            raise RequestInProgressException(arn)
        report = AuditReport(ca, bucket_name, fmt, conf["report_delay_seconds"], report_id)
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
        caller = trust.caller_session(self.get_access_key(), backend.account_id, self.partition)
        report = create_audit_report(
            backend, arn, params.get("S3BucketName"), params.get("AuditReportResponseFormat"), caller
        )
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
