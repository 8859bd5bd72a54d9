"""template.yaml's own bucket settings, bucket policy, key policy and function role, rendered
as CloudFormation would deploy them and put into the stack: the emulator then judges them as
the service would (SSE-KMS key policy and S3 Bucket Key; the write the service checks on the
caller). The rendering is infra_tests' (conditions), plus the intrinsic functions resolved for
one account, region and stack id."""

import importlib.util
import json
import re
import urllib.error
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from .conftest import ROOT, Account, control

_spec = importlib.util.spec_from_file_location("infra_template_tests", ROOT / "infra_tests" / "test_template.py")
infra = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(infra)


def deploy(template: dict, account: str, region: str, parameters: dict) -> dict:
    """The rendered template with Ref, Fn::Sub, Fn::GetAtt, Fn::Select, Fn::Split and Fn::Join
    resolved for this account and region and a fresh stack id. Resources' physical names: the
    bucket's own computed name, `<logical id>` for the rest (ARNs of their own service)."""
    rendered = infra.render(template, parameters)
    stack_id = f"arn:aws:cloudformation:{region}:{account}:stack/pca-audit-scheduler/{uuid.uuid4()}"
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    values.update(parameters)
    values.update(
        {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::StackId": stack_id,
            "AWS::StackName": "pca-audit-scheduler",
        }
    )
    resources = rendered["Resources"]

    def ref(name: str) -> str:
        if name in values:
            return values[name]
        if name == "ReportBucket":
            return resolve(resources["ReportBucket"]["Properties"]["BucketName"])
        return name

    def get_att(name: str, attribute: str) -> str:
        if name == "ReportBucket" and attribute == "Arn":
            return f"arn:aws:s3:::{ref('ReportBucket')}"
        if resources.get(name, {}).get("Type") == "AWS::IAM::Role" and attribute == "Arn":
            # A role's ARN as IAM gives it (the name is the logical id here): the bucket
            # policy names the function's role by it (aws:PrincipalArn).
            return f"arn:aws:iam::{account}:role/{name}"
        return f"arn:aws:{name.lower()}:{region}:{account}:{name}"

    def sub(text: str, extra: dict) -> str:
        def one(match):
            name = match.group(1)
            if name in extra:
                return extra[name]
            if "." in name and not name.startswith("AWS::"):
                return get_att(*name.split(".", 1))
            return ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(node):
        if isinstance(node, dict) and len(node) == 1:
            ((function, args),) = node.items()
            if function == "Ref":
                return ref(args)
            if function == "Fn::GetAtt":
                return get_att(*(args if isinstance(args, list) else args.split(".", 1)))
            if function == "Fn::Sub":
                if isinstance(args, str):
                    return sub(args, {})
                return sub(args[0], {k: resolve(v) for k, v in args[1].items()})
            if function == "Fn::Select":
                return resolve(args[1])[int(resolve(args[0]))]
            if function == "Fn::Split":
                return resolve(args[1]).split(args[0])
            if function == "Fn::Join":
                return args[0].join(resolve(v) for v in args[1])
        if isinstance(node, dict):
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(resources)


@pytest.fixture(scope="module")
def template():
    from cfnlint.decode import decode

    tpl, matches = decode(str(ROOT / "template.yaml"))
    assert not matches
    return tpl


def key_policy(resources: dict) -> dict:
    return resources["ReportKey"]["Properties"]["KeyPolicy"]


def set_up(account: Account, resources: dict, bucket_key: bool | None = None, policy: dict | None = None) -> str:
    """The template's bucket in the account: its name, policy and default encryption, with the
    template's key (its policy, or this one) made in moto's KMS when the template has one."""
    props = resources["ReportBucket"]["Properties"]
    name = props["BucketName"]
    account.s3.create_bucket(Bucket=name)
    account.s3.put_bucket_policy(Bucket=name, Policy=json.dumps(resources["ReportBucketPolicy"]["Properties"]["PolicyDocument"]))
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rule = dict(rule)
    default = dict(rule["ServerSideEncryptionByDefault"])
    if "ReportKey" in resources:
        kms = account.client("kms")
        made = kms.create_key(Policy=json.dumps(policy or key_policy(resources)), Description="report key")
        default["KMSMasterKeyID"] = made["KeyMetadata"]["Arn"]
    rule["ApplyServerSideEncryptionByDefault"] = default
    del rule["ServerSideEncryptionByDefault"]
    if bucket_key is not None:
        rule["BucketKeyEnabled"] = bucket_key
    account.s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [rule]})
    return name


def report_status(account: Account, ca_arn: str, bucket: str) -> tuple[str, list[str]]:
    out = account.pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=ca_arn, S3BucketName=bucket, AuditReportResponseFormat="JSON"
    )
    control("POST", "/finish-reports", {"account_id": account.id})
    status = account.pca.describe_certificate_authority_audit_report(
        CertificateAuthorityArn=ca_arn, AuditReportId=out["AuditReportId"]
    )["AuditReportStatus"]
    keys = [o["Key"] for o in account.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return status, keys


@pytest.mark.parametrize(
    "encryption, bucket_key",
    [("SSE-S3", None), ("SSE-KMS", None), ("SSE-KMS", False)],
    ids=["SSE-S3", "SSE-KMS with the template's Bucket Key", "SSE-KMS without Bucket Key"],
)
def test_the_templates_bucket_and_key_take_reports(fast, template, encryption, bucket_key):
    resources = deploy(template, fast.id, fast.region, {"ReportEncryption": encryption})
    props = resources["ReportBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    # What is tested is what the template sets: the Bucket Key with SSE-KMS.
    assert props.get("BucketKeyEnabled") is (True if encryption == "SSE-KMS" else None)
    bucket = set_up(fast, resources, bucket_key)
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    status, keys = report_status(fast, ca["arn"], bucket)
    assert status == "SUCCESS"
    assert len(keys) == 1 and keys[0].startswith("audit-report/")


def test_the_old_key_policy_fails_every_report_with_a_bucket_key(fast, template):
    """Before issue 11 the key policy allowed only the encryption context BUCKET/*: with the
    template's Bucket Key, S3 passes the bucket's ARN, and the report ends FAILED."""
    resources = deploy(template, fast.id, fast.region, {"ReportEncryption": "SSE-KMS"})
    old = json.loads(json.dumps(key_policy(resources)))
    (statement,) = [s for s in old["Statement"] if s["Sid"] == "AcmPcaEncryptsReports"]
    statement["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"] = (
        f"arn:aws:s3:::{resources['ReportBucket']['Properties']['BucketName']}/*"
    )
    bucket = set_up(fast, resources, policy=old)
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    assert report_status(fast, ca["arn"], bucket) == ("FAILED", [])
    # The same old policy without a Bucket Key would have worked: the Bucket Key is the cause.
    other = deploy(template, fast.id, fast.region, {"ReportEncryption": "SSE-KMS"})
    (statement,) = [s for s in old["Statement"] if s["Sid"] == "AcmPcaEncryptsReports"]
    statement["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"] = (
        f"arn:aws:s3:::{other['ReportBucket']['Properties']['BucketName']}/*"
    )
    bucket = set_up(fast, other, bucket_key=False, policy=old)
    second = fast.seed(state="ACTIVE", issued=1)[0]
    assert report_status(fast, second["arn"], bucket)[0] == "SUCCESS"


@pytest.mark.parametrize("how", ["aws/s3 key", "missing key", "aws:kms without key id"])
def test_keys_private_ca_cannot_use_fail_the_report(fast, how):
    bucket = fast.bucket()
    kms = fast.client("kms")
    default = {"SSEAlgorithm": "aws:kms"}
    if how == "aws/s3 key":
        # moto makes the AWS managed key when it is first described, as AWS does on first use.
        default["KMSMasterKeyID"] = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["Arn"]
    elif how == "missing key":
        default["KMSMasterKeyID"] = f"arn:aws:kms:{fast.region}:{fast.id}:key/{uuid.uuid4()}"
    fast.s3.put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": default}]}
    )
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    assert report_status(fast, ca["arn"], bucket) == ("FAILED", [])


# --- the write the service checks on the caller -------------------------------------------------


def role_session(account: Account, name: str, policies: dict[str, dict]) -> boto3.Session:
    """A role of the account with these inline policies, and a session of it (assumed with the
    harness key, which the stack lets into any role)."""
    iam = account.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    for policy_name, document in policies.items():
        iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document))
    creds = boto3.client("sts", region_name=account.region).assume_role(RoleArn=arn, RoleSessionName="fn")["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=account.region,
    )


def function_policies(resources: dict) -> dict[str, dict]:
    role = resources["AuditFunctionRole"]["Properties"]
    return {p["PolicyName"]: p["PolicyDocument"] for p in role["Policies"]}


def test_the_function_role_passes_the_callers_write_check_and_a_role_without_it_is_refused(fast, template):
    resources = deploy(template, fast.id, fast.region, {})
    bucket = set_up(fast, resources)
    fast.configure(check_caller_write=1)
    first, second, third, fourth = fast.seed(state="ACTIVE", count=4, issued=1)

    def create(session, ca):
        return session.client("acm-pca", config=fast.config).create_certificate_authority_audit_report(
            CertificateAuthorityArn=ca["arn"], S3BucketName=bucket, AuditReportResponseFormat="JSON"
        )

    policies = function_policies(resources)
    assert create(role_session(fast, "fn-template", policies), first)["AuditReportId"]

    # Without the statement the service checks on the caller: refused, and no report.
    lacking = json.loads(json.dumps(policies))
    lacking["audit-calls"]["Statement"] = [
        s for s in lacking["audit-calls"]["Statement"] if s.get("Sid") != "ReportWriteCheckedOnCaller"
    ]
    with pytest.raises(ClientError) as e:
        create(role_session(fast, "fn-lacking", lacking), second)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert f"on resource: arn:aws:s3:::{bucket}/" in e.value.response["Error"]["Message"]

    # The statement as it was before issue 11 (audit-report/* only) does not cover the
    # permission test objects the check may write: refused as well.
    narrow = json.loads(json.dumps(policies))
    for s in narrow["audit-calls"]["Statement"]:
        if s.get("Sid") == "ReportWriteCheckedOnCaller":
            s["Resource"] = f"arn:aws:s3:::{bucket}/audit-report/*"
    with pytest.raises(ClientError) as e:
        create(role_session(fast, "fn-narrow", narrow), third)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    # A session of a role that is not in IAM at all (the harness's) is refused once checked.
    with pytest.raises(ClientError) as e:
        create(fast.session, fourth)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    outcomes = {c["ca_arn"]: c["outcome"] for c in fast.calls()}
    assert outcomes == {
        first["arn"]: "Accepted",
        second["arn"]: "AccessDeniedException",
        third["arn"]: "AccessDeniedException",
        fourth["arn"]: "AccessDeniedException",
    }
    control("POST", "/finish-reports", {"account_id": fast.id})
    keys = [o["Key"] for o in fast.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1 and first["arn"].rsplit("/", 1)[1] in keys[0]


def test_the_callers_write_check_is_off_unless_the_account_asks(fast):
    """Off by default: the harness's sessions (roles not in moto's IAM) keep working."""
    assert control("GET", f"/config?account_id={fast.id}")["check_caller_write"] == 0
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    assert fast.pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=ca["arn"], S3BucketName=fast.bucket(), AuditReportResponseFormat="JSON"
    )["AuditReportId"]


# --- only the service writes reports (issue 20) ----------------------------------------------

from local import audit_reports  # noqa: E402


@pytest.fixture(scope="module")
def member_template():
    from cfnlint.decode import decode

    tpl, matches = decode(str(ROOT / "member-role.yaml"))
    assert not matches
    return tpl


def bucket_policy_of(resources: dict) -> dict:
    return resources["ReportBucketPolicy"]["Properties"]["PolicyDocument"]


def member_policies(member_template, account: str, bucket: str, central_role: str, **parameters) -> dict[str, dict]:
    resources = deploy(
        member_template, account, "us-east-1",
        {"ReportBucketName": bucket, "CentralFunctionRoleArn": central_role, **parameters},
    )
    return {p["PolicyName"]: p["PolicyDocument"] for p in resources["MemberRole"]["Properties"]["Policies"]}


ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def verdicts(template, member_template, grant: str) -> dict[tuple[str, str, str], str | None]:
    """Who may do what on a report's key, a permission test object and a CRL key of the
    template's bucket, as IAM would judge it: Private CA (for this account's CA), the function's
    role, an admin of the bucket's account (identity policy s3:*), and an audited account's
    member role."""
    central, member = "111111111111", "222222222222"
    resources = deploy(template, central, "us-east-1", {"AuditAccounts": f"{central},{member}", "CallerWriteGrant": grant})
    document = bucket_policy_of(resources)
    bucket = resources["ReportBucket"]["Properties"]["BucketName"]
    function_role = f"arn:aws:iam::{central}:role/AuditFunctionRole"
    callers = {
        "function role": (central, function_role, list(function_policies(resources).values())),
        "admin": (central, f"arn:aws:iam::{central}:role/Admin", [ADMIN]),
        "member role": (
            member,
            f"arn:aws:iam::{member}:role/PcaAuditSchedulerMember",
            list(member_policies(member_template, member, bucket, function_role, CallerWriteGrant=grant).values()),
        ),
    }
    ca = f"arn:aws:acm-pca:us-east-1:{central}:certificate-authority/0f0e0d0c-0000-4000-8000-000000000000"
    keys = {"report": "audit-report/0f0e0d0c-0000-4000-8000-000000000000/1b2c.json", "test key": "acm-pca-permission-test-key", "crl": "crl/x.crl"}
    out = {}
    for what, key in keys.items():
        for action in ("s3:PutObject", "s3:DeleteObject"):
            out[("Private CA", action, what)] = audit_reports.policy.evaluate(
                document, action=action, resource=f"arn:aws:s3:::{bucket}/{key}",
                principal=audit_reports.names_service, context=audit_reports.service_context(central, ca),
            )
            for who, (account, role, documents) in callers.items():
                out[(who, action, what)] = audit_reports.principal_verdict(
                    document, central, bucket, key, action,
                    account_id=account, role_arn=role, session_arn=None, identity_documents=documents,
                )
    return out


def test_only_private_ca_writes_or_deletes_reports_in_the_templates_bucket(template, member_template):
    got = verdicts(template, member_template, "PermissionTestKeys")
    assert got[("Private CA", "s3:PutObject", "report")] == "Allow"
    # Not bucket/*: a CRL of an audited CA cannot be written into the evidence bucket.
    assert got[("Private CA", "s3:PutObject", "crl")] is None
    for who in ("function role", "member role", "admin"):
        for action in ("s3:PutObject", "s3:DeleteObject"):
            assert got[(who, action, "report")] == "Deny", (who, action)
    # The service's check of the callers still passes on the permission test objects.
    assert got[("function role", "s3:PutObject", "test key")] == "Allow"
    assert got[("member role", "s3:PutObject", "test key")] == "Allow"
    # The Deny is for audit-report/ only: the admin keeps the rest of the bucket.
    assert got[("admin", "s3:PutObject", "crl")] == "Allow"


def test_caller_write_grant_audit_reports_lets_exactly_the_callers_write_reports(template, member_template):
    got = verdicts(template, member_template, "AuditReports")
    assert got[("Private CA", "s3:PutObject", "report")] == "Allow"
    assert got[("function role", "s3:PutObject", "report")] == "Allow"
    assert got[("member role", "s3:PutObject", "report")] == "Allow"
    # Nothing grants the callers a delete; the admin is still refused by the Deny.
    assert got[("function role", "s3:DeleteObject", "report")] is None
    assert got[("admin", "s3:PutObject", "report")] == "Deny"
    assert got[("admin", "s3:DeleteObject", "report")] == "Deny"


def test_a_report_written_under_the_templates_full_policy_ends_success_with_its_checksum(fast, template):
    resources = deploy(template, fast.id, fast.region, {})
    assert "OnlyPrivateCaWritesReports" in {s["Sid"] for s in bucket_policy_of(resources)["Statement"]}
    bucket = set_up(fast, resources)
    ca = fast.seed(state="ACTIVE", issued=2)[0]
    status, keys = report_status(fast, ca["arn"], bucket)
    assert status == "SUCCESS" and len(keys) == 1
    # S3 keeps a full-object CRC64NVME for an upload that names no checksum. Read without
    # DenyInsecureTransport: moto's own S3 applies a bucket policy's Deny to object reads
    # without the aws:SecureTransport key in its context, so it would refuse every read.
    policy = bucket_policy_of(resources)
    readable = {**policy, "Statement": [s for s in policy["Statement"] if s["Sid"] != "DenyInsecureTransport"]}
    fast.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(readable))
    head = fast.s3.head_object(Bucket=bucket, Key=keys[0], ChecksumMode="ENABLED")
    got = fast.s3.get_object(Bucket=bucket, Key=keys[0], ChecksumMode="ENABLED")
    body = got["Body"].read()
    assert head["ChecksumCRC64NVME"] == got["ChecksumCRC64NVME"] == audit_reports.crc64nvme_base64(body)
    assert got["ChecksumType"] == "FULL_OBJECT"


def test_crc64nvme_is_the_nvme_crc():
    # The CRC-64/NVME check value (the CRC of "123456789").
    assert audit_reports.crc64nvme(b"123456789") == 0xAE8B14860A799888
    assert audit_reports.crc64nvme_base64(b"") == "AAAAAAAAAAA="


def create_with(session, account: Account, ca: dict, bucket: str) -> dict:
    return session.client("acm-pca", config=account.config).create_certificate_authority_audit_report(
        CertificateAuthorityArn=ca["arn"], S3BucketName=bucket, AuditReportResponseFormat="JSON"
    )


@pytest.mark.parametrize(
    ("grant", "level", "accepted"),
    [
        ("PermissionTestKeys", 1, True),
        # The wider reading of the caller check (the report's own key too): the narrow grant
        # is refused, loudly, naming the bucket, and the widened one passes.
        ("PermissionTestKeys", 2, False),
        ("AuditReports", 2, True),
    ],
)
def test_the_caller_check_at_each_reading_and_grant(fast, template, grant, level, accepted):
    resources = deploy(template, fast.id, fast.region, {"CallerWriteGrant": grant})
    bucket = set_up(fast, resources)
    fast.configure(check_caller_write=level)
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    session = role_session(fast, "AuditFunctionRole", function_policies(resources))
    if not accepted:
        with pytest.raises(ClientError) as e:
            create_with(session, fast, ca, bucket)
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
        message = e.value.response["Error"]["Message"]
        assert f"arn:aws:s3:::{bucket}/audit-report/" in message and "explicit deny" in message
        return
    out = create_with(session, fast, ca, bucket)
    control("POST", "/finish-reports", {"account_id": fast.id})
    status = fast.pca.describe_certificate_authority_audit_report(
        CertificateAuthorityArn=ca["arn"], AuditReportId=out["AuditReportId"]
    )["AuditReportStatus"]
    assert status == "SUCCESS"


def test_the_caller_check_setting_takes_only_its_three_values(fast):
    with pytest.raises(urllib.error.HTTPError) as e:
        fast.configure(check_caller_write=3)
    assert e.value.code == 400


def test_a_member_role_passes_the_check_on_the_central_bucket_only_for_a_listed_account(stack, template, member_template):
    central, member, stranger = Account(), Account(), Account()
    for account in (central, member, stranger):
        account.configure(create_rps=1000, read_rps=1000, report_delay_seconds=0, check_caller_write=1)
    resources = deploy(template, central.id, central.region, {"AuditAccounts": f"{central.id},{member.id}"})
    # The bucket policy names the member account itself (no "*" held by aws:PrincipalAccount).
    (check,) = [s for s in bucket_policy_of(resources)["Statement"] if s["Sid"] == "MemberRolesPassTheWriteCheck"]
    assert check["Principal"] == {"AWS": [central.id, member.id]}
    bucket = set_up(central, resources)
    function_role = f"arn:aws:iam::{central.id}:role/AuditFunctionRole"
    outcomes = {}
    for account in (member, stranger):
        ca = account.seed(state="ACTIVE", issued=1)[0]
        session = role_session(account, "PcaAuditSchedulerMember", member_policies(member_template, account.id, bucket, function_role))
        try:
            out = create_with(session, account, ca, bucket)
        except ClientError as e:
            outcomes[account.id] = e.response["Error"]["Code"]
            continue
        control("POST", "/finish-reports", {"account_id": account.id})
        outcomes[account.id] = account.pca.describe_certificate_authority_audit_report(
            CertificateAuthorityArn=ca["arn"], AuditReportId=out["AuditReportId"]
        )["AuditReportStatus"]
    # The listed account's member role passes the check (the bucket names its account; the
    # role's session is of that account) and Private CA writes its report; an account the
    # bucket does not name is refused at the create.
    assert outcomes == {member.id: "SUCCESS", stranger.id: "AccessDeniedException"}


def test_the_stacks_s3_refuses_any_clients_write_under_audit_report_with_the_policy(fast):
    """local/bucket_policy.json's Deny, through the stack's S3: moto's S3 applies a bucket
    policy's Deny to object requests, and an SDK client (an IAM principal, no
    aws:PrincipalServiceName) is refused as AWS would refuse it; the rest of the bucket is not."""
    bucket = fast.bucket()
    with pytest.raises(ClientError) as e:
        fast.s3.put_object(Bucket=bucket, Key="audit-report/x/forged.json", Body=b"[]")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    fast.s3.put_object(Bucket=bucket, Key="evidence/coverage.csv", Body=b"x")
    # Private CA's own write still lands.
    ca = fast.seed(state="ACTIVE", issued=1)[0]
    status, keys = report_status(fast, ca["arn"], bucket)
    assert status == "SUCCESS" and any(k.startswith("audit-report/") for k in keys)


def test_the_member_role_lets_in_the_exact_function_role_only(stack, template, member_template):
    """member-role.yaml's trust, deployed with the exact CentralFunctionRoleArn its pattern now
    requires, through the stack's STS (trust policies enforced for assumed-role sessions): the
    central function's role gets in; another role of the central account does not."""
    central, member = Account(), Account()
    function_role = f"arn:aws:iam::{central.id}:role/AuditFunctionRole"
    resources = deploy(member_template, member.id, member.region,
                       {"ReportBucketName": "central-evidence", "CentralFunctionRoleArn": function_role})
    props = resources["MemberRole"]["Properties"]
    member.client("iam").create_role(RoleName=props["RoleName"], AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
    target = f"arn:aws:iam::{member.id}:role/{props['RoleName']}"

    def assume(session):
        return session.client("sts", region_name=central.region).assume_role(RoleArn=target, RoleSessionName="audit")

    assert assume(role_session(central, "AuditFunctionRole", {}))["Credentials"]["AccessKeyId"]
    with pytest.raises(ClientError) as e:
        assume(role_session(central, "AuditFunctionRole-Other", {}))
    assert e.value.response["Error"]["Code"] == "AccessDenied"
