"""Steps of the local demo that talk to the local stack: make the ledger table and the report
bucket, seed CAs, and show what a run left behind. Run by scripts/demo with the stack's
settings in the environment."""

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import boto3

# The repository's root, for the local stack's shared test fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from local.bucket_policy import bucket_policy  # noqa: E402
from local.ledger_table import create_ledger_table  # noqa: E402

TABLE = "pca-audit-ledger"
BUCKET = "pca-audit-evidence"
ACCOUNT = "123456789012"
REGION = os.environ.get("AWS_REGION", "us-east-1")


def control(path, body):
    request = urllib.request.Request(
        os.environ["PCA_LOCAL_CONTROL_URL"] + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def setup():
    """The table as template.yaml declares it, and a bucket whose policy lets the service write."""
    create_ledger_table(boto3.client("dynamodb"), TABLE)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_policy(Bucket=BUCKET, Policy=bucket_policy(BUCKET, [ACCOUNT]))
    # Quick reports, the service's real quota and window.
    control("/config", {"account_id": ACCOUNT, "report_delay_seconds": 1})
    seeded = control(
        "/seed",
        {
            "account_id": ACCOUNT,
            "region": REGION,
            "cas": [
                {"state": "ACTIVE", "count": 3, "issued": 3, "revoked": 1},
                {"state": "DISABLED", "count": 1, "issued": 1, "revoked": 0},
                {"state": "PENDING_CERTIFICATE", "count": 1, "issued": 0, "revoked": 0},
            ],
        },
    )["certificate_authorities"]
    print(f"ledger table {TABLE}, bucket {BUCKET}, {len(seeded)} CAs:")
    for ca in seeded:
        print(f"  {ca['state']:<20} {ca['arn']}")
    with open(".local-stack/function.env", "w") as f:
        for key in (
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_ACM_PCA",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ):
            f.write(f"{key}={os.environ[key]}\n")
        f.write(f"LEDGER_TABLE={TABLE}\nREPORT_BUCKET={BUCKET}\nAWS_LAMBDA_LOG_FORMAT=JSON\n")


def summary(path):
    """Prints a run's summary, one line per CA."""
    text = open(path).read()
    try:
        result = json.loads(text)
    except json.JSONDecodeError:
        print(text)
        return
    if "counts" not in result:
        print(json.dumps(result, indent=2))
        return
    print(f"run {result['runId']}: {json.dumps(result['counts'])}")
    for ca in result["certificateAuthorities"]:
        detail = ca.get("s3Key") or ca.get("detail") or ca.get("errorMessage") or ""
        when = f" (next eligible {ca['nextEligibleAt']})" if ca.get("nextEligibleAt") else ""
        report = ca.get("report")
        checked = ""
        if report:
            size = f", {report['sizeBytes']} bytes in the bucket" if report.get("sizeBytes") else ""
            checked = f"  [report {report['status']}{size}]"
        print(f"  {ca['outcome']:<10} {ca['certificateAuthorityArn'].rsplit('/', 1)[1]}  {detail}{when}{checked}")


def evidence():
    """The S3 keys the ledger recorded, and the first lines of one report."""
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    windows = [i for i in items if i["record"]["S"] == "window" and "last_s3_key" in i]
    print(f"ledger: {len(windows)} CAs with a recorded report, {len(items) - len(windows)} other items")
    for item in windows:
        print(f"  {item['last_requested_at']['S']}  s3://{item['last_s3_bucket']['S']}/{item['last_s3_key']['S']}")
    if not windows:
        return
    s3 = boto3.client("s3")
    time.sleep(1.5)  # the reports are written a moment after they are requested
    # The largest report shows the most: issued and revoked certificates.
    sizes = {}
    for item in windows:
        key = item["last_s3_key"]["S"]
        try:
            sizes[key] = s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
        except s3.exceptions.ClientError:
            sizes[key] = 0
    key = max(sizes, key=sizes.get)
    for _ in range(50):
        try:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            break
        except s3.exceptions.NoSuchKey:
            time.sleep(0.2)
    else:
        print(f"  report {key} has not appeared")
        return
    report = json.loads(body)
    print(f"s3://{BUCKET}/{key}: {len(report)} certificates, the first two:")
    print(json.dumps(report[:2], indent=2))


def coverage_event(path, start, end):
    """A coverage request of the period start..end, as an auditor sends one."""
    with open(path, "w") as f:
        json.dump({"coverage": {"from": start, "to": end}}, f)


def new_ca():
    """An ACTIVE CA created after the runs, as someone might create one between two runs."""
    (ca,) = control(
        "/seed",
        {"account_id": ACCOUNT, "region": REGION, "cas": [{"state": "ACTIVE", "count": 1, "issued": 1, "revoked": 0}]},
    )["certificate_authorities"]
    print(f"  {ca['state']:<20} {ca['arn']}")


def coverage(path, rows=True):
    """The coverage answer's counts, each CA's verdict, and the manifest (its first rows)."""
    with open(path) as f:
        text = f.read()
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        print(text)
        return
    if "counts" not in answer:
        print(json.dumps(answer, indent=2))
        return
    c = answer["counts"]
    print(f"{c['certificateAuthorities']} CAs: {c['covered']} covered, {c['withGaps']} with gaps ({c['gaps']} gaps), {c['reports']} reports")
    for ca in answer["certificateAuthorities"]:
        gaps = ", ".join(f"{g['kind']} {g['from']}..{g['to']}" for g in ca["gaps"])
        print(f"  {ca['coverage']:<8} {ca['certificateAuthorityArn'].rsplit('/', 1)[1]}  {gaps}")
    m = answer["manifest"]
    if not rows:
        print(f"manifest s3://{m['bucket']}/{m['csvKey']}")
        return
    body = boto3.client("s3").get_object(Bucket=m["bucket"], Key=m["csvKey"])["Body"].read().decode()
    print(f"s3://{m['bucket']}/{m['csvKey']}, the first rows:")
    for line in body.splitlines()[:4]:
        print(f"  {line}")


if __name__ == "__main__":
    {
        "setup": setup,
        "summary": lambda: summary(sys.argv[2]),
        "evidence": evidence,
        "coverage-event": lambda: coverage_event(*sys.argv[2:5]),
        "new-ca": new_ca,
        "coverage": lambda: coverage(sys.argv[2], rows=sys.argv[3:] != ["brief"]),
    }[sys.argv[1]]()
