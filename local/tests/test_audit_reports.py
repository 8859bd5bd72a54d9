"""The two audit-report operations, held to the service's documented behaviour."""

import csv
import io
import json
import re
import time
import urllib.error

import pytest
from botocore.exceptions import ClientError

from .conftest import control


def create(account, arn, bucket, fmt="JSON"):
    return account.pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=arn, S3BucketName=bucket, AuditReportResponseFormat=fmt
    )


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_report_key_and_id_have_the_service_shape(fast):
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    out = create(fast, ca["arn"], fast.bucket())
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out["AuditReportId"])
    ca_id = ca["arn"].rsplit("/", 1)[1]
    assert out["S3Key"] == f"audit-report/{ca_id}/{out['AuditReportId']}.json"
    csv_ca = fast.seed(state="ACTIVE", issued=1)[0]
    assert create(fast, csv_ca["arn"], fast.bucket(), "CSV")["S3Key"].endswith(".csv")


def test_json_report_lists_issued_and_revoked_certificates_exactly(fast):
    ca = fast.seed(state="ACTIVE", issued=3, revoked=1)[0]
    bucket = fast.bucket()
    out = create(fast, ca["arn"], bucket)
    body = fast.s3.get_object(Bucket=bucket, Key=out["S3Key"])["Body"].read()
    rows = json.loads(body)
    assert isinstance(rows, list) and len(rows) == 3
    assert {r["certificateArn"] for r in rows} == set(ca["issued"])
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000")
    for row in rows:
        assert row["awsAccountId"] == fast.id
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2})*", row["serial"])
        assert row["subject"].startswith("CN=host-")
        for key in ("notBefore", "notAfter", "issuedAt"):
            assert stamp.fullmatch(row[key]), row[key]
        assert row["templateArn"] == "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
        # Optional keys are left out, not null.
        assert "requestedByServicePrincipal" not in row
        revoked = row["certificateArn"] in ca["revoked"]
        assert ("revokedAt" in row) == revoked and ("revocationReason" in row) == revoked
        if revoked:
            assert stamp.fullmatch(row["revokedAt"])
            assert row["revocationReason"] == "KEY_COMPROMISE"
    # The serial is the certificate's own.
    pem = fast.pca.get_certificate(CertificateAuthorityArn=ca["arn"], CertificateArn=ca["issued"][1])["Certificate"]
    from cryptography import x509

    number = x509.load_pem_x509_certificate(pem.encode()).serial_number
    row = next(r for r in rows if r["certificateArn"] == ca["issued"][1])
    assert int(row["serial"].replace(":", ""), 16) == number


def test_csv_report_has_the_documented_columns_and_blank_optionals(fast):
    ca = fast.seed(state="ACTIVE", issued=2, revoked=1)[0]
    bucket = fast.bucket()
    out = create(fast, ca["arn"], bucket, "CSV")
    text = fast.s3.get_object(Bucket=bucket, Key=out["S3Key"])["Body"].read().decode()
    lines = text.split("\n")
    assert lines[0] == (
        "awsAccountId,requestedByServicePrincipal,certificateArn,serial,subject,"
        "notBefore,notAfter,issuedAt,revokedAt,revocationReason,templateArn"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2
    revoked = [r for r in rows if r["revokedAt"]]
    assert len(revoked) == 1 and revoked[0]["certificateArn"] == ca["revoked"][0]
    assert revoked[0]["revocationReason"] == "KEY_COMPROMISE"
    assert all(r["requestedByServicePrincipal"] == "" for r in rows)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:s3:::bucket",
        "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/not-a-uuid",
        "nothing",
    ],
)
def test_invalid_arn(fast, arn):
    with pytest.raises(ClientError) as e:
        create(fast, arn, fast.bucket())
    assert error_code(e) == "InvalidArnException"


def test_unknown_ca(fast):
    arn = f"arn:aws:acm-pca:us-east-1:{fast.id}:certificate-authority/00000000-0000-4000-8000-000000000000"
    with pytest.raises(ClientError) as e:
        create(fast, arn, fast.bucket())
    assert error_code(e) == "ResourceNotFoundException"


def test_format_other_than_json_or_csv(fast):
    ca = fast.seed(state="ACTIVE")[0]
    # botocore checks enums only loosely; the emulator checks what reaches it.
    with pytest.raises(ClientError) as e:
        create(fast, ca["arn"], fast.bucket(), "XML")
    assert error_code(e) == "InvalidArgsException"


# User guide, "Understand AWS Private CA CA status", column "Generate audits": Yes for ACTIVE
# and DISABLED only.
@pytest.mark.parametrize("state", ["EXPIRED", "CREATING", "PENDING_CERTIFICATE", "FAILED", "DELETED"])
def test_states_that_cannot_generate_audits_are_refused(fast, state):
    ca = fast.seed(state=state, issued=1 if state == "EXPIRED" else 0)[0]
    bucket = fast.bucket()
    with pytest.raises(ClientError) as e:
        create(fast, ca["arn"], bucket)
    assert error_code(e) == "InvalidStateException"
    assert fast.calls()[-1]["outcome"] == "InvalidStateException"
    assert fast.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_ca_that_expires_can_no_longer_be_audited(fast):
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    bucket = fast.bucket()
    assert create(fast, ca["arn"], bucket)["AuditReportId"]
    fast.configure(window_seconds=0)
    control("POST", "/ca-state", {"arn": ca["arn"], "state": "EXPIRED"})
    with pytest.raises(ClientError) as e:
        create(fast, ca["arn"], bucket)
    assert error_code(e) == "InvalidStateException"


@pytest.mark.parametrize("state", ["ACTIVE", "DISABLED"])
def test_states_that_can_be_audited(fast, state):
    ca = fast.seed(state=state, issued=1)[0]
    bucket = fast.bucket()
    out = create(fast, ca["arn"], bucket)
    assert fast.s3.head_object(Bucket=bucket, Key=out["S3Key"])["ContentLength"] > 0


def test_a_ca_past_100_million_certificates_is_limit_exceeded(fast):
    """User guide, PcaAuditReport and JavaApi-CreateCertificateAuthorityAuditReport: no audit
    report for a CA that has issued more than 100 million certificates; LimitExceededException."""
    at_limit, past_limit = fast.seed(state="ACTIVE", count=2, issued=1)
    assert control("POST", "/certificate-count", {"arn": at_limit["arn"], "count": 100_000_000}) == {
        "arn": at_limit["arn"],
        "count": 100_000_000,
    }
    control("POST", "/certificate-count", {"arn": past_limit["arn"], "count": 100_000_001})
    bucket = fast.bucket()
    # Exactly 100 million is not "more than": audited.
    assert create(fast, at_limit["arn"], bucket)["AuditReportId"]
    with pytest.raises(ClientError) as e:
        create(fast, past_limit["arn"], bucket)
    assert error_code(e) == "LimitExceededException"
    assert "100000000" in e.value.response["Error"]["Message"]
    # Permanent: the window passing changes nothing, and nothing was written for that CA.
    fast.configure(window_seconds=0)
    with pytest.raises(ClientError) as e:
        create(fast, past_limit["arn"], bucket)
    assert error_code(e) == "LimitExceededException"
    ca_id = past_limit["arn"].rsplit("/", 1)[1]
    assert fast.s3.list_objects_v2(Bucket=bucket, Prefix=f"audit-report/{ca_id}/").get("KeyCount", 0) == 0
    outcomes = [c["outcome"] for c in fast.calls() if c["ca_arn"] == past_limit["arn"]]
    assert outcomes == ["LimitExceededException", "LimitExceededException"]


def test_certificate_count_needs_an_existing_ca_and_a_whole_count(fast):
    ca = fast.seed(state="ACTIVE")[0]
    missing = ca["arn"][:-12] + "000000000000"
    for body in ({"arn": missing, "count": 1}, {"arn": ca["arn"], "count": -1}, {"arn": ca["arn"], "count": 1.5}):
        with pytest.raises(urllib.error.HTTPError) as e:
            control("POST", "/certificate-count", body)
        assert e.value.code == 400, body


def test_missing_bucket_is_an_error_on_the_create_call(fast):
    ca = fast.seed(state="ACTIVE")[0]
    with pytest.raises(ClientError) as e:
        create(fast, ca["arn"], "no-such-bucket-here")
    assert error_code(e) == "ResourceNotFoundException"
    assert "no-such-bucket-here" in e.value.response["Error"]["Message"]


def test_bucket_without_the_service_policy_ends_failed_and_writes_nothing(fast):
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    bucket = fast.bucket(policy=False)
    out = create(fast, ca["arn"], bucket)
    status = fast.pca.describe_certificate_authority_audit_report(
        CertificateAuthorityArn=ca["arn"], AuditReportId=out["AuditReportId"]
    )["AuditReportStatus"]
    assert status == "FAILED"
    assert fast.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_second_request_inside_the_window_is_request_in_progress(fast):
    ca = fast.seed(state="ACTIVE")[0]
    bucket = fast.bucket()
    create(fast, ca["arn"], bucket)
    with pytest.raises(ClientError) as e:
        create(fast, ca["arn"], bucket)
    assert error_code(e) == "RequestInProgressException"
    # With the window shortened by setting, the CA can be audited again once it passes.
    fast.configure(window_seconds=0.5)
    time.sleep(0.6)
    assert create(fast, ca["arn"], bucket)["AuditReportId"]


def test_default_quota_is_one_create_per_second(account):
    account.configure(report_delay_seconds=0)
    first, second = account.seed(state="ACTIVE", count=2)
    bucket = account.bucket()
    create(account, first["arn"], bucket)
    with pytest.raises(ClientError) as e:
        create(account, second["arn"], bucket)
    assert error_code(e) == "ThrottlingException"
    time.sleep(1.05)
    assert create(account, second["arn"], bucket)["AuditReportId"]
    outcomes = [c["outcome"] for c in sorted(account.calls(), key=lambda c: c["time"])]
    assert outcomes == ["Accepted", "ThrottlingException", "Accepted"], outcomes


def test_quota_is_per_region(account):
    account.configure(report_delay_seconds=0)
    east = account.seed(state="ACTIVE")[0]
    west = account.seed(region="us-west-2", state="ACTIVE")[0]
    bucket = account.bucket()
    create(account, east["arn"], bucket)
    west_pca = account.client("acm-pca", "us-west-2")
    assert west_pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=west["arn"], S3BucketName=bucket, AuditReportResponseFormat="JSON"
    )["AuditReportId"]


def test_read_quotas_default_to_twenty_and_throttle_beyond(account):
    from .conftest import control

    assert control("GET", f"/config?account_id={account.id}")["read_rps"] == 20
    # A rate this test can outrun from one thread, to see the bucket empty and refill.
    account.configure(read_rps=2)
    account.seed(state="ACTIVE")
    answers = []
    for _ in range(6):
        try:
            account.pca.list_certificate_authorities()
            answers.append("ok")
        except ClientError as e:
            answers.append(e.response["Error"]["Code"])
    assert answers[:2] == ["ok", "ok"]
    assert "ThrottlingException" in answers
    time.sleep(1.0)
    account.pca.list_certificate_authorities()


def test_report_is_creating_then_success_after_the_delay(account):
    account.configure(report_delay_seconds=0.5)
    ca = account.seed(state="ACTIVE", issued=1)[0]
    bucket = account.bucket()
    out = create(account, ca["arn"], bucket)

    def describe():
        return account.pca.describe_certificate_authority_audit_report(
            CertificateAuthorityArn=ca["arn"], AuditReportId=out["AuditReportId"]
        )

    first = describe()
    assert first["AuditReportStatus"] == "CREATING"
    assert first["S3BucketName"] == bucket and first["S3Key"] == out["S3Key"]
    assert account.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    # The object appears on time even if nobody asks.
    time.sleep(0.8)
    assert account.s3.head_object(Bucket=bucket, Key=out["S3Key"])["ContentLength"] > 0
    assert describe()["AuditReportStatus"] == "SUCCESS"


def test_describe_unknown_report(fast):
    ca = fast.seed(state="ACTIVE")[0]
    with pytest.raises(ClientError) as e:
        fast.pca.describe_certificate_authority_audit_report(
            CertificateAuthorityArn=ca["arn"], AuditReportId="00000000-0000-4000-8000-000000000000"
        )
    assert error_code(e) == "ResourceNotFoundException"


def test_describe_answers_only_for_the_ca_that_made_the_report(fast):
    """Rule 19: a report id is known for the CA it was made for, never for another one."""
    made_for, other = (ca["arn"] for ca in fast.seed(state="ACTIVE", count=2))
    report = create(fast, made_for, fast.bucket())
    described = fast.pca.describe_certificate_authority_audit_report(
        CertificateAuthorityArn=made_for, AuditReportId=report["AuditReportId"]
    )
    assert described["S3Key"] == report["S3Key"]
    with pytest.raises(ClientError) as e:
        fast.pca.describe_certificate_authority_audit_report(
            CertificateAuthorityArn=other, AuditReportId=report["AuditReportId"]
        )
    assert error_code(e) == "ResourceNotFoundException"


def test_finish_reports_ends_the_reports_still_creating_of_one_account(account):
    account.configure(report_delay_seconds=600)
    ca = account.seed(state="ACTIVE", issued=1)[0]
    bucket = account.bucket()
    out = create(account, ca["arn"], bucket)
    status = lambda: account.pca.describe_certificate_authority_audit_report(  # noqa: E731
        CertificateAuthorityArn=ca["arn"], AuditReportId=out["AuditReportId"]
    )["AuditReportStatus"]
    assert status() == "CREATING"
    other = control("POST", "/finish-reports", {"account_id": "000000000001"})
    assert other["finished"] == 0 and status() == "CREATING"
    assert control("POST", "/finish-reports", {"account_id": account.id})["finished"] == 1
    assert status() == "SUCCESS"
    assert account.s3.head_object(Bucket=bucket, Key=out["S3Key"])["ContentLength"] > 0
