"""Tests of the local stack against a running one: the one `scripts/test` started (its
settings in the environment), or one this session starts and stops itself."""

import json
import os
import random
import subprocess
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from local.bucket_policy import bucket_policy

ROOT = Path(__file__).resolve().parents[2]


def _load_env(text: str) -> dict:
    env = {}
    for line in text.splitlines():
        line = line.strip().removeprefix("export ")
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


@pytest.fixture(scope="session")
def stack():
    started = False
    if "PCA_LOCAL_CONTROL_URL" not in os.environ:
        out = subprocess.run([str(ROOT / "scripts/local-stack"), "up"], check=True, capture_output=True, text=True)
        os.environ.update(_load_env(out.stdout))
        started = True
    yield os.environ["PCA_LOCAL_CONTROL_URL"]
    if started:
        subprocess.run([str(ROOT / "scripts/local-stack"), "down"], check=True)


def control(method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        os.environ["PCA_LOCAL_CONTROL_URL"] + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def new_account_id() -> str:
    return f"{random.randrange(10**11, 10**12):012d}"


class Account:
    """A fresh account of the stack (moto keeps separate state per account), or the one given,
    reached with the keys of a role assumed in it with the harness's long-term key (which the
    stack lets into any account). Its session is itself an assumed-role session, as the
    function's is in AWS: what it assumes in turn is held to the target role's trust policy."""

    ROLE = "test"
    SESSION = "local-stack-test"

    def __init__(self, region: str = "us-east-1", account_id: str | None = None):
        self.id = account_id or new_account_id()
        self.region = region
        self.arn = f"arn:aws:sts::{self.id}:assumed-role/{self.ROLE}/{self.SESSION}"
        sts = boto3.client("sts", region_name=region)
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{self.id}:role/{self.ROLE}", RoleSessionName=self.SESSION)["Credentials"]
        self.session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )
        # No retries: the tests look at each answer the stack gives.
        self.config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
        self.pca = self.client("acm-pca")
        self.s3 = self.client("s3")

    def client(self, name: str, region: str | None = None):
        return self.session.client(name, region_name=region or self.region, config=self.config)

    def configure(self, **values):
        return control("POST", "/config", {"account_id": self.id, **values})

    def seed(self, region: str | None = None, **group):
        body = {"account_id": self.id, "region": region or self.region, "cas": [group]}
        return control("POST", "/seed", body)["certificate_authorities"]

    def bucket(self, policy: bool = True, statements: list[dict] | None = None) -> str:
        """A new bucket; by default with the plain service policy, or with these statements
        (`{bucket}` in a Resource stands for the bucket's name)."""
        name = f"reports-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=name)
        if statements is not None:
            text = json.dumps({"Version": "2012-10-17", "Statement": statements}).replace("{bucket}", name)
            self.s3.put_bucket_policy(Bucket=name, Policy=text)
        elif policy:
            self.s3.put_bucket_policy(Bucket=name, Policy=bucket_policy(name))
        return name

    def calls(self):
        return control("GET", f"/audit-calls?account_id={self.id}")["calls"]


@pytest.fixture
def account(stack):
    return Account()


@pytest.fixture
def fast(account):
    """An account whose quotas and report delay are out of the way."""
    account.configure(create_rps=1000, read_rps=1000, report_delay_seconds=0)
    return account
