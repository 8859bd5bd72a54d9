"""Organisation scale: a central account assumes a role in each member account (trust policies
enforced), members' CAs write their audit reports into the central bucket (its policy judged
with aws:SourceAccount / aws:SourceArn / aws:SourceOrgID), accounts are found through
Organizations, and work goes through SQS."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from .conftest import Account, control, new_account_id

MEMBER_ROLE = "PcaAuditSchedulerMember"


def trust(*principals: str, external_id: str | None = None, effect: str = "Allow") -> str:
    statement = {"Effect": effect, "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"}
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def make_role(account: Account, document: str, name: str = MEMBER_ROLE) -> str:
    return account.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=document)["Role"]["Arn"]


def assume(caller: Account, role_arn: str, external_id: str | None = None) -> boto3.Session:
    args = {"RoleArn": role_arn, "RoleSessionName": "pca-audit-scheduler"}
    if external_id is not None:
        args["ExternalId"] = external_id
    creds = caller.client("sts").assume_role(**args)["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=caller.region,
    )


def denied(caller: Account, role_arn: str, external_id: str | None = None) -> ClientError:
    with pytest.raises(ClientError) as e:
        assume(caller, role_arn, external_id)
    return e.value


def assert_access_denied(error: ClientError, caller: Account, role_arn: str) -> None:
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error.response["Error"]["Code"] == "AccessDenied"
    assert error.response["Error"]["Message"] == (
        f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    )


# --- STS: trust policies --------------------------------------------------------------------------


def test_member_role_trusting_the_central_account_with_external_id_is_assumed(stack):
    central, member = Account(), Account()
    role_arn = make_role(member, trust(f"arn:aws:iam::{central.id}:root", external_id="ext-1"))
    session = assume(central, role_arn, "ext-1")
    identity = session.client("sts").get_caller_identity()
    assert identity["Account"] == member.id
    assert identity["Arn"] == f"arn:aws:sts::{member.id}:assumed-role/{MEMBER_ROLE}/pca-audit-scheduler"
    # The keys act in the member account.
    member.seed(state="ACTIVE")
    pca = session.client("acm-pca")
    assert len(pca.list_certificate_authorities(ResourceOwner="SELF")["CertificateAuthorities"]) == 1


@pytest.mark.parametrize("form", ["account id", "role arn", "session arn", "everyone"])
def test_trust_may_name_the_caller_in_each_form(stack, form):
    central, member = Account(), Account()
    principal = {
        "account id": central.id,
        "role arn": f"arn:aws:iam::{central.id}:role/{Account.ROLE}",
        "session arn": central.arn,
        "everyone": "*",
    }[form]
    role_arn = make_role(member, trust(principal))
    assert assume(central, role_arn).client("sts").get_caller_identity()["Account"] == member.id


def test_missing_role_is_access_denied(stack):
    central, member = Account(), Account()
    role_arn = f"arn:aws:iam::{member.id}:role/{MEMBER_ROLE}"
    assert_access_denied(denied(central, role_arn), central, role_arn)


def test_wrong_or_missing_external_id_is_access_denied(stack):
    central, member = Account(), Account()
    role_arn = make_role(member, trust(f"arn:aws:iam::{central.id}:root", external_id="right"))
    assert_access_denied(denied(central, role_arn, "wrong"), central, role_arn)
    assert_access_denied(denied(central, role_arn), central, role_arn)
    assume(central, role_arn, "right")


def test_trust_naming_another_account_is_access_denied(stack):
    central, other, member = Account(), Account(), Account()
    role_arn = make_role(member, trust(f"arn:aws:iam::{other.id}:root"))
    assert_access_denied(denied(central, role_arn), central, role_arn)
    # The account it names gets in.
    assume(other, role_arn)


def test_trust_for_another_action_or_with_a_deny_is_access_denied(stack):
    central, member = Account(), Account()
    wrong_action = json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": {"AWS": central.id}, "Action": "sts:TagSession"}]}
    )
    role_arn = make_role(member, wrong_action, "WrongAction")
    assert_access_denied(denied(central, role_arn), central, role_arn)
    deny = json.dumps(
        {
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
                {"Effect": "Deny", "Principal": {"AWS": central.id}, "Action": "sts:*"},
            ]
        }
    )
    role_arn = make_role(member, deny, "Denies")
    assert_access_denied(denied(central, role_arn), central, role_arn)


def test_harness_key_still_assumes_anything(stack):
    member = Account()
    make_role(member, trust(f"arn:aws:iam::{new_account_id()}:root", external_id="x"))
    sts = boto3.client("sts")  # the long-term `testing` key
    for name in (MEMBER_ROLE, "NoSuchRole"):
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{member.id}:role/{name}", RoleSessionName="harness")
        assert creds["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{member.id}:assumed-role/{name}/")


# --- cross-account audit reports ------------------------------------------------------------------


def service_statement(condition: dict | None = None, effect: str = "Allow") -> dict:
    statement = {
        "Effect": effect,
        "Principal": {"Service": "acm-pca.amazonaws.com"},
        "Action": ["s3:PutObject", "s3:PutObjectAcl", "s3:GetBucketAcl", "s3:GetBucketLocation"],
        "Resource": ["arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"],
    }
    if condition:
        statement["Condition"] = condition
    return statement


def fast(account: Account) -> Account:
    account.configure(create_rps=1000, read_rps=1000, report_delay_seconds=0)
    return account


def report(member: Account, bucket: str, ca_arn: str | None = None) -> tuple[str, dict]:
    """A report of a new CA of the member's, into `bucket`: (its status, the create answer)."""
    ca_arn = ca_arn or member.seed(state="ACTIVE", issued=2, revoked=1)[0]["arn"]
    out = member.pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=ca_arn, S3BucketName=bucket, AuditReportResponseFormat="JSON"
    )
    status = member.pca.describe_certificate_authority_audit_report(
        CertificateAuthorityArn=ca_arn, AuditReportId=out["AuditReportId"]
    )
    assert status["S3BucketName"] == bucket and status["S3Key"] == out["S3Key"]
    return status["AuditReportStatus"], out


def assert_written(central: Account, bucket: str, member: Account, out: dict) -> None:
    listed = central.s3.list_objects_v2(Bucket=bucket, Prefix=out["S3Key"].rsplit("/", 1)[0] + "/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [out["S3Key"]]
    body = central.s3.get_object(Bucket=bucket, Key=out["S3Key"])["Body"].read()
    rows = json.loads(body)
    assert len(rows) == 2 and all(r["awsAccountId"] == member.id for r in rows)


def assert_nothing_written(central: Account, bucket: str) -> None:
    assert central.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_member_report_lands_in_the_central_bucket_when_its_account_is_listed(stack):
    central, member, other = Account(), fast(Account()), Account()
    bucket = central.bucket(statements=[service_statement({"StringEquals": {"aws:SourceAccount": [other.id, member.id]}})])
    status, out = report(member, bucket)
    assert status == "SUCCESS"
    assert_written(central, bucket, member, out)
    # The member account has no such bucket of its own: the report is the central account's.
    assert member.s3.list_buckets()["Buckets"] == []


def test_member_report_fails_and_writes_nothing_when_the_policy_names_other_accounts(stack):
    central, member = Account(), fast(Account())
    bucket = central.bucket(statements=[service_statement({"StringEquals": {"aws:SourceAccount": new_account_id()}})])
    status, _ = report(member, bucket)
    assert status == "FAILED"
    assert_nothing_written(central, bucket)


def test_source_arn_with_wildcards(stack):
    central, member = Account(), fast(Account())
    pattern = f"arn:aws:acm-pca:*:{member.id}:certificate-authority/*"
    bucket = central.bucket(statements=[service_statement({"ArnLike": {"aws:SourceArn": [pattern]}})])
    assert report(member, bucket)[0] == "SUCCESS"
    other = fast(Account())
    assert report(other, bucket)[0] == "FAILED"
    # Only the member's report was written.
    assert central.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_source_arn_equals_one_ca(stack):
    central, member = Account(), fast(Account())
    first, second = member.seed(state="ACTIVE", count=2, issued=2)
    bucket = central.bucket(statements=[service_statement({"ArnEquals": {"aws:SourceArn": first["arn"]}})])
    assert report(member, bucket, first["arn"])[0] == "SUCCESS"
    assert report(member, bucket, second["arn"])[0] == "FAILED"


def organization(management: Account, *names: str) -> tuple[str, list[str]]:
    """An organization with `management` at its head and a new member account per name:
    (the organization's id, the members' account ids)."""
    org = management.client("organizations")
    org_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    members = [org.create_account(AccountName=n, Email=f"{n}@example.com")["CreateAccountStatus"]["AccountId"] for n in names]
    return org_id, members


def test_member_report_allowed_by_source_org_id(stack):
    central = Account()
    org_id, (member_id,) = organization(central, "member")
    member = fast(Account(account_id=member_id))
    # Any account finds its organization's id with DescribeOrganization.
    assert member.client("organizations").describe_organization()["Organization"]["Id"] == org_id
    bucket = central.bucket(statements=[service_statement({"StringEquals": {"aws:SourceOrgID": org_id}})])
    status, out = report(member, bucket)
    assert status == "SUCCESS"
    assert_written(central, bucket, member, out)
    # An account outside the organization has no aws:SourceOrgID: refused, nothing written.
    outsider = fast(Account())
    before = central.s3.list_objects_v2(Bucket=bucket)["KeyCount"]
    assert report(outsider, bucket)[0] == "FAILED"
    assert central.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == before


def test_deny_statement_wins(stack):
    central = Account()
    org_id, (member_id,) = organization(central, "member")
    member, outsider = fast(Account(account_id=member_id)), fast(Account())
    bucket = central.bucket(
        statements=[
            service_statement(),
            service_statement({"StringNotEquals": {"aws:SourceOrgID": org_id}}, effect="Deny"),
        ]
    )
    assert report(member, bucket)[0] == "SUCCESS"
    assert report(outsider, bucket)[0] == "FAILED"


def test_bucket_in_no_account_is_not_found(stack):
    member = fast(Account())
    ca = member.seed(state="ACTIVE")[0]
    with pytest.raises(ClientError) as e:
        member.pca.create_certificate_authority_audit_report(
            CertificateAuthorityArn=ca["arn"], S3BucketName="no-account-has-this-one", AuditReportResponseFormat="CSV"
        )
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_the_whole_round_through_the_member_role(stack):
    """What the function does: assume the member role, list the member's CAs, ask for a report
    into the central bucket, follow it up with member keys, and list the bucket with central keys."""
    central, member = Account(), fast(Account())
    role_arn = make_role(member, trust(f"arn:aws:iam::{central.id}:root", external_id="org-scale"))
    ca = member.seed(state="ACTIVE", issued=2, revoked=1)[0]
    bucket = central.bucket(statements=[service_statement({"StringEquals": {"aws:SourceAccount": member.id}})])
    pca = assume(central, role_arn, "org-scale").client("acm-pca")
    listed = pca.list_certificate_authorities(ResourceOwner="SELF")["CertificateAuthorities"]
    assert [c["Arn"] for c in listed] == [ca["arn"]]
    out = pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=ca["arn"], S3BucketName=bucket, AuditReportResponseFormat="JSON"
    )
    status = pca.describe_certificate_authority_audit_report(CertificateAuthorityArn=ca["arn"], AuditReportId=out["AuditReportId"])
    assert status["AuditReportStatus"] == "SUCCESS"
    assert_written(central, bucket, member, out)


# --- Organizations and SQS ------------------------------------------------------------------------


def test_organizations_discovery_through_nested_ous(stack):
    management = Account()
    org_id, (a, b, c) = organization(management, "a", "b", "c")
    # A global service: a client of us-east-1 with the stack's endpoint.
    org = boto3.Session(
        aws_access_key_id=management.session.get_credentials().access_key,
        aws_secret_access_key=management.session.get_credentials().secret_key,
        aws_session_token=management.session.get_credentials().token,
    ).client("organizations", region_name="us-east-1")
    root = org.list_roots()["Roots"][0]["Id"]
    prod = org.create_organizational_unit(ParentId=root, Name="prod")["OrganizationalUnit"]["Id"]
    eu = org.create_organizational_unit(ParentId=prod, Name="eu")["OrganizationalUnit"]["Id"]
    org.move_account(AccountId=a, SourceParentId=root, DestinationParentId=prod)
    org.move_account(AccountId=b, SourceParentId=root, DestinationParentId=eu)

    def accounts_under(parent: str) -> set[str]:
        found = set()
        for page in org.get_paginator("list_accounts_for_parent").paginate(ParentId=parent):
            found |= {acct["Id"] for acct in page["Accounts"] if acct["Status"] == "ACTIVE"}
        for page in org.get_paginator("list_children").paginate(ParentId=parent, ChildType="ORGANIZATIONAL_UNIT"):
            for child in page["Children"]:
                found |= accounts_under(child["Id"])
        return found

    assert accounts_under(prod) == {a, b}
    assert accounts_under(eu) == {b}
    everyone = {acct["Id"] for page in org.get_paginator("list_accounts").paginate() for acct in page["Accounts"]}
    assert everyone == {management.id, a, b, c} == accounts_under(root)
    # Accounts made by Organizations have OrganizationAccountAccessRole, trusting the management account.
    role = f"arn:aws:iam::{b}:role/OrganizationAccountAccessRole"
    assert assume(management, role).client("sts").get_caller_identity()["Account"] == b
    outsider = Account()
    assert_access_denied(denied(outsider, role), outsider, role)
    # And a member role the tests create there is assumed like any other.
    member_role = make_role(Account(account_id=c), trust(management.id, external_id="ext"))
    assert assume(management, member_role, "ext").client("sts").get_caller_identity()["Account"] == c


def test_sqs_fan_out(stack):
    central = Account()
    sqs = central.client("sqs")
    url = sqs.create_queue(QueueName="pca-audit-work", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    sent = sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": json.dumps({"account": i})} for i in range(10)]
    )
    assert len(sent["Successful"]) == 10 and not sent.get("Failed")
    bodies = []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        for message in got:
            bodies.append(json.loads(message["Body"])["account"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(bodies) == list(range(10))
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []
    # Queues are the account's own.
    assert Account().client("sqs").list_queues().get("QueueUrls", []) == []


def test_faults_on_organizations_and_sts(stack):
    management = Account()
    organization(management)
    org = management.client("organizations")
    rule = control("POST", "/faults", {"service": "organizations", "account_id": management.id, "rate": 1, "kind": "throttle"})
    try:
        with pytest.raises(ClientError) as e:
            org.list_accounts()
        assert e.value.response["Error"]["Code"] == "TooManyRequestsException"
    finally:
        control("DELETE", f"/faults/{rule['id']}")
    org.list_accounts()
    rule = control("POST", "/faults", {"service": "sts", "operation": "AssumeRole", "account_id": management.id, "rate": 1, "kind": "throttle"})
    try:
        sts = management.client("sts")
        with pytest.raises(ClientError) as e:
            sts.assume_role(RoleArn=f"arn:aws:iam::{management.id}:role/x", RoleSessionName="throttled")
        assert e.value.response["Error"]["Code"] == "Throttling"
        # Only that operation.
        assert sts.get_caller_identity()["Account"] == management.id
    finally:
        control("DELETE", f"/faults/{rule['id']}")


# --- seeding ----------------------------------------------------------------------------------


def test_seed_types_and_tags_in_an_account_and_region(stack):
    member = Account(region="eu-west-1")
    root = member.seed(state="ACTIVE", type="ROOT", tags={"audit": "yes", "team": "pki"})[0]
    sub = member.seed(region="eu-west-1", state="DISABLED", type="SUBORDINATE", tags={"audit": "no"})[0]
    pca = member.client("acm-pca")
    listed = {c["Arn"]: c for c in pca.list_certificate_authorities()["CertificateAuthorities"]}
    assert listed[root["arn"]]["Type"] == "ROOT" and listed[sub["arn"]]["Type"] == "SUBORDINATE"
    assert root["arn"].startswith(f"arn:aws:acm-pca:eu-west-1:{member.id}:")
    assert sorted(pca.list_tags(CertificateAuthorityArn=root["arn"])["Tags"], key=lambda t: t["Key"]) == [
        {"Key": "audit", "Value": "yes"},
        {"Key": "team", "Value": "pki"},
    ]
    assert pca.list_tags(CertificateAuthorityArn=sub["arn"])["Tags"] == [{"Key": "audit", "Value": "no"}]
    # Nothing in another region of the account.
    assert member.client("acm-pca", "us-east-1").list_certificate_authorities()["CertificateAuthorities"] == []
