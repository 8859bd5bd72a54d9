"""scripts/coverage, the auditor's command, run as an auditor runs it: with the real AWS CLI v2
(scripts/aws-cli) and nothing else on PATH but the system's own tools, against the function
under cargo-lambda's runtime emulator (which serves Lambda's Invoke API) and the local stack
(S3, DynamoDB, ACM PCA with its audit reports), in an account of its own.

One difference from AWS, and the path it leaves untested: Lambda answers a function error
with status 200 and the error as the payload (the command checks the payload for
`errorType`); cargo-lambda's emulator answers 500, so a refusal by the function is not tried
here. The refusal itself is tested in the Rust suite (tests/integration/coverage.rs)."""

import json
import os
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from local.ledger_table import create_ledger_table
from local.tests.conftest import Account, stack  # noqa: F401  (the fixture, shared)

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "pca-audit-scheduler"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def aws_cli() -> str:
    out = subprocess.run([str(ROOT / "scripts/aws-cli")], capture_output=True, text=True)
    if out.returncode == 3:
        pytest.skip(f"NOT CHECKED: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


class Deployment:
    """An account's ledger table and report bucket, and the function running against them under
    cargo-lambda's emulator, reached as Lambda is: by the Invoke API at `endpoint`."""

    def __init__(self, account: Account, tmp: Path):
        self.account = account
        self.table = f"ledger-{account.id}"
        create_ledger_table(account.client("dynamodb"), self.table)
        self.bucket = account.bucket()
        # The service's quota and window as AWS has them; reports written a second after.
        account.configure(report_delay_seconds=1)
        creds = account.session.get_credentials().get_frozen_credentials()
        self.keys = {
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            "AWS_SESSION_TOKEN": creds.token,
            "AWS_REGION": account.region,
        }
        env_file = tmp / "function.env"
        env_file.write_text(
            "".join(
                f"{k}='{v}'\n"  # quoted: a session token holds / + =
                for k, v in {
                    **self.keys,
                    "AWS_ENDPOINT_URL_DYNAMODB": os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
                    "AWS_ENDPOINT_URL_S3": os.environ["AWS_ENDPOINT_URL_S3"],
                    "AWS_ENDPOINT_URL_ACM_PCA": os.environ["AWS_ENDPOINT_URL_ACM_PCA"],
                    "LEDGER_TABLE": self.table,
                    "REPORT_BUCKET": self.bucket,
                    "REPORT_BUCKET_OWNER": account.id,
                    "AWS_LAMBDA_LOG_FORMAT": "JSON",
                }.items()
            )
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        subprocess.run(["cargo", "build", "--quiet", "--locked", "--bin", FUNCTION], cwd=ROOT, check=True)
        self.log = open(tmp / "function.log", "w")
        self.watch = subprocess.Popen(
            [str(ROOT / ".venv/bin/cargo-lambda"), "lambda", "watch", "--quiet", "--ignore-changes", "--timeout", "900",
             "--invoke-address", "127.0.0.1", "--invoke-port", str(port), "--env-file", str(env_file)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        for _ in range(240):
            if self.watch.poll() is not None:
                break
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.5)
        raise AssertionError(f"cargo lambda watch did not listen on {port}: {(tmp / 'function.log').read_text()}")

    def seed(self, count: int) -> list[str]:
        return [ca["arn"] for ca in self.account.seed(state="ACTIVE", count=count, issued=1, revoked=0)]

    def scheduled_run(self) -> dict:
        client = boto3.client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name=self.account.region,
            config=Config(read_timeout=900, retries={"total_max_attempts": 1}),
            **{k.lower(): v for k, v in self.keys.items() if k != "AWS_REGION"},
        )
        answer = client.invoke(FunctionName=FUNCTION, Payload=(ROOT / "events/scheduled.json").read_bytes())
        return json.load(answer["Payload"])

    def coverage(self, cli: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
        """scripts/coverage as an auditor runs it: the CLI's folder and the system's tools on
        PATH, the account's keys, the Lambda and S3 endpoints of this machine."""
        return subprocess.run(
            [str(ROOT / "scripts/coverage"), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={
                "PATH": f"{Path(cli).parent}:/usr/bin:/bin",
                "HOME": str(cwd),
                **self.keys,
                "AWS_ENDPOINT_URL_LAMBDA": self.endpoint,
                "AWS_ENDPOINT_URL_S3": os.environ["AWS_ENDPOINT_URL_S3"],
                "FUNCTION": FUNCTION,
                **env,
            },
        )

    def object(self, key: str) -> bytes:
        return self.account.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def stop(self):
        os.killpg(self.watch.pid, 15)
        self.watch.wait(timeout=30)
        self.log.close()


@pytest.fixture
def deployment(stack, tmp_path):  # noqa: F811
    deployed = Deployment(Account(), tmp_path)
    yield deployed
    deployed.stop()


def verdicts(stdout: str) -> dict[str, str]:
    """Each CA's line of the command's output, by ARN."""
    lines = [line.split(None, 2) for line in stdout.splitlines() if line.startswith(("covered ", "GAPS "))]
    return {arn: f"{verdict} {rest}" for verdict, arn, rest in lines}


def manifests(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.csv"))


def test_a_covered_period_then_a_gap_exits_0_then_1_and_keeps_both_manifests(deployment, aws_cli, tmp_path):
    audited = deployment.seed(2)
    start = now()
    summary = deployment.scheduled_run()
    assert summary["counts"]["reportsSucceeded"] == 2, summary
    time.sleep(1)
    auditor = tmp_path / "auditor"
    auditor.mkdir()

    out = deployment.coverage(aws_cli, auditor, start, now())
    assert out.returncode == 0, out.stdout + out.stderr
    assert verdicts(out.stdout) == {arn: "covered 1 report(s)" for arn in audited}, out.stdout
    assert "CAs         2: 2 covered, 0 with gaps" in out.stdout, out.stdout
    # The manifest downloaded is the one the function wrote, byte for byte.
    (first,) = manifests(auditor)
    key = next(line.split("s3://", 1)[1].rstrip(")") for line in out.stdout.splitlines() if line.startswith("manifest"))
    assert key.split("/", 1)[0] == deployment.bucket
    assert first.read_bytes() == deployment.object(key.split("/", 1)[1])
    assert first.with_suffix(".json").is_file()

    # A CA created after the run: listed now, no report in the period.
    (new,) = deployment.seed(1)
    out = deployment.coverage(aws_cli, auditor, start, now())
    assert out.returncode == 1, out.stdout + out.stderr
    assert verdicts(out.stdout) == {
        **{arn: "covered 1 report(s)" for arn in audited},
        new: "GAPS 1 gap(s): neverAudited",
    }, out.stdout
    # The second request's manifest sits beside the first; the first is unchanged.
    assert len(manifests(auditor)) == 2
    assert first in manifests(auditor)


def test_verify_objects_holds_each_report_to_its_pinned_version(deployment, aws_cli, tmp_path):
    audited = deployment.seed(1)
    start = now()
    assert deployment.scheduled_run()["counts"]["reportsSucceeded"] == 1
    time.sleep(1)
    out = deployment.coverage(aws_cli, tmp_path, start, now(), VERIFY="1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verified    1 report objects held to their pinned versions" in out.stdout, out.stdout
    assert verdicts(out.stdout) == {audited[0]: "covered 1 report(s)"}


@pytest.mark.parametrize(
    "args, says",
    [
        ([], "usage: scripts/coverage FROM TO"),
        (["2026-07-01"], "usage: scripts/coverage FROM TO"),
        (["2026-07-01", "2026-09-30; rm -rf ~"], "'2026-09-30; rm -rf ~' is neither a date nor an RFC 3339 UTC instant"),
        (["", "2026-09-30"], "'' is neither a date nor an RFC 3339 UTC instant"),
    ],
)
def test_arguments_that_are_not_a_period_are_refused_before_anything_is_called(args, says, tmp_path):
    out = subprocess.run([str(ROOT / "scripts/coverage"), *args], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert out.returncode == 2
    assert says in out.stderr
    assert not list(tmp_path.iterdir())


def test_an_aws_cli_v1_is_refused_by_name(tmp_path):
    """Version 1 sends --payload as it is and knows no --cli-binary-format: the command must say
    so rather than fail inside the CLI. (An `aws` that only answers --version as v1 does.)"""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "aws").write_text("#!/bin/sh\necho 'aws-cli/1.46.2 Python/3.11.2 Linux/6.1 botocore/1.42.2' >&2\n")
    (fake / "aws").chmod(0o755)
    out = subprocess.run([str(ROOT / "scripts/coverage"), "2026-07-01", "2026-09-30"], cwd=tmp_path,
                         capture_output=True, text=True, env={"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert out.returncode == 1
    assert "the AWS CLI v2 is needed; this aws says: aws-cli/1.46.2" in out.stderr


def test_no_aws_cli_is_named(tmp_path):
    out = subprocess.run([str(ROOT / "scripts/coverage"), "2026-07-01", "2026-09-30"], cwd=tmp_path,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    if Path("/usr/bin/aws").exists() or Path("/bin/aws").exists():
        pytest.skip("this machine has an aws in /usr/bin")
    assert out.returncode == 1
    assert "the AWS CLI v2 (aws) is needed" in out.stderr
