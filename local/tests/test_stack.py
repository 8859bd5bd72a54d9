"""Listing, accounts, seed data and faults of the local stack."""

import http.client
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import Account, control


def test_listing_pages_at_most_100(fast):
    fast.seed(state="ACTIVE", count=230)
    pages = list(fast.pca.get_paginator("list_certificate_authorities").paginate(PaginationConfig={"PageSize": 1000}))
    sizes = [len(p["CertificateAuthorities"]) for p in pages]
    assert sizes == [100, 100, 30]


def test_seed_makes_every_state_with_certificates(fast):
    made = []
    for state in ["ACTIVE", "DISABLED", "EXPIRED", "CREATING", "PENDING_CERTIFICATE", "FAILED", "DELETED"]:
        made += fast.seed(state=state, issued=2, revoked=1, type="SUBORDINATE", tags={"team": "pki"})
    listed = {ca["Arn"]: ca for ca in fast.pca.list_certificate_authorities()["CertificateAuthorities"]}
    for ca in made:
        assert listed[ca["arn"]]["Status"] == ca["state"]
        assert listed[ca["arn"]]["Type"] == "SUBORDINATE"
        with_certs = ca["state"] in ("ACTIVE", "DISABLED", "EXPIRED", "DELETED")
        assert len(ca["issued"]) == (2 if with_certs else 0)
        assert len(ca["revoked"]) == (1 if with_certs else 0)
    tags = fast.pca.list_tags(CertificateAuthorityArn=made[0]["arn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "pki"}]



def test_more_certificates_of_an_existing_ca_are_issued_and_revoked(fast):
    (ca,) = fast.seed(state="ACTIVE", issued=1, revoked=0)
    more = control("POST", "/certificates", {"arn": ca["arn"], "issued": 3, "revoked": 2})
    assert len(more["issued"]) == 3 and more["revoked"] == more["issued"][:2]
    for cert_arn in [*ca["issued"], *more["issued"]]:
        got = fast.pca.get_certificate(CertificateAuthorityArn=ca["arn"], CertificateArn=cert_arn)
        assert got["Certificate"].startswith("-----BEGIN CERTIFICATE-----")

def test_seeding_hundreds_is_fast(fast):
    started = time.monotonic()
    made = fast.seed(state="ACTIVE", count=300, issued=1)
    elapsed = time.monotonic() - started
    assert len(made) == 300
    print(f"seeded 300 CAs in {elapsed:.1f} s")


def test_accounts_are_separate(stack):
    a, b = Account(), Account()
    a.seed(state="ACTIVE", count=2)
    assert len(a.pca.list_certificate_authorities()["CertificateAuthorities"]) == 2
    assert b.pca.list_certificate_authorities()["CertificateAuthorities"] == []


def test_config_is_per_account_and_resets(stack):
    a, b = Account(), Account()
    assert a.configure(window_seconds=5)["window_seconds"] == 5
    assert control("GET", f"/config?account_id={b.id}")["window_seconds"] == 1800
    with pytest.raises(Exception):
        a.configure(no_such_setting=1)


def test_force_state(fast):
    ca = fast.seed(state="ACTIVE")[0]
    control("POST", "/ca-state", {"arn": ca["arn"], "state": "EXPIRED"})
    status = fast.pca.describe_certificate_authority(CertificateAuthorityArn=ca["arn"])["CertificateAuthority"]["Status"]
    assert status == "EXPIRED"


def fault(**rule):
    return control("POST", "/faults", rule)


def clear(rule):
    control("DELETE", f"/faults/{rule['id']}")


def test_acm_pca_throttling_fault_on_and_off(fast):
    rule = fault(service="acm-pca", operation="ListCertificateAuthorities", account_id=fast.id, rate=1, kind="throttle")
    try:
        with pytest.raises(ClientError) as e:
            fast.pca.list_certificate_authorities()
        assert e.value.response["Error"]["Code"] == "ThrottlingException"
        # Only that operation.
        with pytest.raises(ClientError) as e:
            fast.pca.describe_certificate_authority(
                CertificateAuthorityArn=f"arn:aws:acm-pca:us-east-1:{fast.id}:certificate-authority/00000000-0000-4000-8000-000000000000"
            )
        assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        clear(rule)
    fast.pca.list_certificate_authorities()


def test_s3_500_fault_and_share(fast):
    bucket = fast.bucket()
    rule = fault(service="s3", account_id=fast.id, rate=0.5, kind="500", seed=7)
    try:
        answers = []
        for _ in range(40):
            try:
                fast.s3.head_bucket(Bucket=bucket)
                answers.append(200)
            except ClientError as e:
                answers.append(int(e.response["ResponseMetadata"]["HTTPStatusCode"]))
        assert set(answers) == {200, 500}
        assert 8 <= answers.count(500) <= 32
    finally:
        clear(rule)
    listed = control("GET", "/faults")["faults"]
    assert all(r["id"] != rule["id"] for r in listed)


def test_slow_fault_delays_the_answer(fast):
    rule = fault(service="acm-pca", account_id=fast.id, rate=1, kind="slow", delay_ms=400)
    try:
        started = time.monotonic()
        fast.pca.list_certificate_authorities()
        assert time.monotonic() - started >= 0.4
    finally:
        clear(rule)


def test_a_hung_call_gets_no_answer_and_is_never_handled(fast):
    """`hang`: the client waits for nothing; its own read timeout ends the call, and the
    service never saw the request (no create recorded)."""
    import botocore.exceptions

    rule = fault(service="acm-pca", account_id=fast.id, rate=1, kind="hang", delay_ms=5000)
    config = Config(read_timeout=1, retries={"total_max_attempts": 1, "mode": "standard"})
    impatient = fast.session.client("acm-pca", region_name=fast.region, config=config)
    try:
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            impatient.list_certificate_authorities()
        assert 1 <= time.monotonic() - started < 4, "ended by the client's timeout"
        # A create that hangs is never handled: no report made, none recorded.
        ca = fast.seed(state="ACTIVE", count=1)[0]["arn"]
        bucket = fast.bucket()
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            impatient.create_certificate_authority_audit_report(
                CertificateAuthorityArn=ca, S3BucketName=bucket, AuditReportResponseFormat="JSON"
            )
    finally:
        clear(rule)
    calls = control("GET", "/audit-calls", None)["calls"]
    assert not [c for c in calls if c["ca_arn"] == ca], calls
    assert fast.pca.list_certificate_authorities()["CertificateAuthorities"] is not None


def key_table(ddb, table: str) -> None:
    """A table with one string hash key `k`."""
    ddb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_dynamodb_faults_through_the_proxy(stack):
    table = f"t-{time.time_ns()}"
    ddb = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    key_table(ddb, table)
    ddb.put_item(TableName=table, Item={"k": {"S": "1"}})
    rule = fault(service="dynamodb", table=table, operation="GetItem", rate=1, kind="throttle")
    try:
        with pytest.raises(ClientError) as e:
            ddb.get_item(TableName=table, Key={"k": {"S": "1"}})
        assert e.value.response["Error"]["Code"] == "ThrottlingException"
        ddb.put_item(TableName=table, Item={"k": {"S": "2"}})
    finally:
        clear(rule)
    assert ddb.get_item(TableName=table, Key={"k": {"S": "1"}})["Item"]["k"]["S"] == "1"
    rule = fault(service="dynamodb", table=table, rate=1, kind="500")
    try:
        with pytest.raises(ClientError) as e:
            ddb.get_item(TableName=table, Key={"k": {"S": "1"}})
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        clear(rule)


def test_dynamodb_faults_reach_batches_and_transactions_and_reset_drops_the_connection(stack):
    table = f"b-{time.time_ns()}"
    ddb = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    key_table(ddb, table)
    rule = fault(service="dynamodb", table=table, rate=1, kind="throttle")
    try:
        # A table-scoped rule reaches a batch's RequestItems and a transaction's items too.
        with pytest.raises(ClientError) as e:
            ddb.batch_get_item(RequestItems={table: {"Keys": [{"k": {"S": "1"}}]}})
        assert e.value.response["Error"]["Code"] == "ThrottlingException"
        with pytest.raises(ClientError) as e:
            ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {"k": {"S": "1"}}}}])
        assert e.value.response["Error"]["Code"] == "ThrottlingException"
    finally:
        clear(rule)
    rule = fault(service="dynamodb", table=table, rate=1, kind="reset")
    try:
        with pytest.raises(Exception) as e:
            ddb.get_item(TableName=table, Key={"k": {"S": "1"}})
        assert not isinstance(e.value, ClientError), "no answer at all, not an error answer"
    finally:
        clear(rule)
    assert "Item" not in ddb.get_item(TableName=table, Key={"k": {"S": "1"}})
    with pytest.raises(Exception):
        fault(service="s3", rate=1, kind="reset")


def test_conditional_writes_are_amazons(stack):
    """The window depends on DynamoDB Local's conditional writes and their ALL_OLD return."""
    table = f"c-{time.time_ns()}"
    ddb = boto3.client("dynamodb")
    key_table(ddb, table)
    claim = dict(
        TableName=table,
        Key={"k": {"S": "ca"}},
        UpdateExpression="SET lease = :run",
        ConditionExpression="attribute_not_exists(lease)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    ddb.update_item(**claim, ExpressionAttributeValues={":run": {"S": "a"}})
    with pytest.raises(ClientError) as e:
        ddb.update_item(**claim, ExpressionAttributeValues={":run": {"S": "b"}})
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert e.value.response["Item"]["lease"]["S"] == "a"


def test_requests_are_counted_per_service_and_operation(fast):
    control("DELETE", "/requests")
    fast.pca.list_certificate_authorities()
    fast.s3.list_buckets()
    counts = {(r["service"], r["operation"]): r["count"] for r in control("GET", "/requests")["requests"]}
    assert counts[("acm-pca", "ListCertificateAuthorities")] >= 1
    assert counts[("s3", "GET")] >= 1


# --- lost answers: the service acts, the client never hears (issue 15) ------------------------


def one_attempt_pca(account):
    # botocore's own retries would resend the create and hide the lost answer.
    return account.session.client("acm-pca", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.mark.parametrize("kind", ["accept-then-500", "accept-then-reset"])
def test_accepted_create_whose_answer_is_lost(fast, kind):
    ca = fast.seed(state="ACTIVE", issued=2)[0]
    bucket = fast.bucket()
    fast.configure(report_delay_seconds=600)
    pca = one_attempt_pca(fast)
    rule = fault(
        service="acm-pca",
        operation="CreateCertificateAuthorityAuditReport",
        account_id=fast.id,
        rate=1,
        kind=kind,
    )
    try:
        # Another operation of the same account is untouched.
        pca.list_certificate_authorities()
        with pytest.raises(Exception) as e:
            pca.create_certificate_authority_audit_report(
                CertificateAuthorityArn=ca["arn"], S3BucketName=bucket, AuditReportResponseFormat="JSON"
            )
        if kind == "accept-then-500":
            assert isinstance(e.value, ClientError)
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            assert e.value.response["Error"]["Code"] == "InternalFailure"
        else:
            assert not isinstance(e.value, ClientError), "no answer at all, not an error answer"
        (listed,) = [r for r in control("GET", "/faults")["faults"] if r["id"] == rule["id"]]
        assert (listed["seen"], listed["injected"]) == (1, 1)
    finally:
        clear(rule)
    # The service accepted it: the call log has the report the client never learnt of.
    (call,) = fast.calls()
    assert call["outcome"] == "Accepted" and call["report_id"]
    described = pca.describe_certificate_authority_audit_report(
        CertificateAuthorityArn=ca["arn"], AuditReportId=call["report_id"]
    )
    assert described["AuditReportStatus"] == "CREATING"
    assert control("POST", "/finish-reports", {"account_id": fast.id})["finished"] == 1
    ca_id = ca["arn"].rsplit("/", 1)[1]
    key = f"audit-report/{ca_id}/{call['report_id']}.json"
    assert [o["Key"] for o in fast.s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    # And it counts against the window: a retry of the lost create is RequestInProgress.
    with pytest.raises(ClientError) as e:
        pca.create_certificate_authority_audit_report(
            CertificateAuthorityArn=ca["arn"], S3BucketName=bucket, AuditReportResponseFormat="JSON"
        )
    assert e.value.response["Error"]["Code"] == "RequestInProgressException"


def test_accept_faults_honour_rate_and_seed(fast):
    pca = one_attempt_pca(fast)
    fast.seed(state="ACTIVE")
    rule = fault(
        service="acm-pca", operation="ListCertificateAuthorities", account_id=fast.id, rate=0.5, kind="accept-then-500", seed=3
    )
    try:
        answers = []
        for _ in range(30):
            try:
                pca.list_certificate_authorities()
                answers.append(200)
            except ClientError as e:
                answers.append(e.response["ResponseMetadata"]["HTTPStatusCode"])
        assert set(answers) == {200, 500}
        (listed,) = [r for r in control("GET", "/faults")["faults"] if r["id"] == rule["id"]]
        assert listed["seen"] == 30 and listed["injected"] == answers.count(500)
    finally:
        clear(rule)


def test_dynamodb_accept_then_faults_write_and_lose_the_answer(stack):
    table = f"a-{time.time_ns()}"
    ddb = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    key_table(ddb, table)
    for kind, value in (("accept-then-500", "1"), ("accept-then-reset", "2")):
        rule = fault(service="dynamodb", table=table, operation="PutItem", rate=1, kind=kind)
        try:
            with pytest.raises(Exception) as e:
                ddb.put_item(TableName=table, Item={"k": {"S": value}})
            if kind == "accept-then-500":
                assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            else:
                assert not isinstance(e.value, ClientError)
        finally:
            clear(rule)
        # The write happened.
        assert ddb.get_item(TableName=table, Key={"k": {"S": value}})["Item"]["k"]["S"] == value


def test_a_bucket_of_another_account_refuses_a_request_expecting_another_owner(stack):
    """S3 user guide, "Verifying bucket ownership with bucket owner condition": a request whose
    x-amz-expected-bucket-owner is not the bucket's account fails with 403 Access Denied."""
    owner, other = Account(), Account()
    bucket = owner.bucket(policy=False)
    owner.s3.put_object(Bucket=bucket, Key="evidence/x", Body=b"x", ExpectedBucketOwner=owner.id)
    assert other.s3.head_object(Bucket=bucket, Key="evidence/x", ExpectedBucketOwner=owner.id)["ContentLength"] == 1
    for call in (
        lambda: other.s3.put_object(Bucket=bucket, Key="evidence/y", Body=b"y", ExpectedBucketOwner=other.id),
        lambda: other.s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner=other.id),
        lambda: other.s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=other.id),
        lambda: owner.s3.copy_object(
            Bucket=bucket, Key="evidence/z", CopySource={"Bucket": bucket, "Key": "evidence/x"},
            ExpectedSourceBucketOwner=other.id,
        ),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert e.value.response["Error"]["Code"] in ("AccessDenied", "403")  # HEAD has no body
    assert [o["Key"] for o in owner.s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["evidence/x"]
    # Virtual-hosted style names the bucket in the Host: the same answer (sent by hand: the
    # test machine resolves no <bucket>.localhost; the answer comes before any signature check).
    port = int(other.s3.meta.endpoint_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("PUT", "/evidence/v", body=b"v", headers={
        "Host": f"{bucket}.s3.us-east-1.amazonaws.com",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        "x-amz-expected-bucket-owner": other.id,
    })
    answer = conn.getresponse()
    assert answer.status == 403 and b"<Code>AccessDenied</Code>" in answer.read()
