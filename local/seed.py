"""Seed data: CAs in every state, with issued and revoked certificates, made inside the
server process (hundreds a second) through the control API; `python -m local.seed` calls it.

moto gives every new CA a fresh 2048-bit RSA key, which is slow; the seeded CAs share a few
pre-made keys instead (they are an emulator's CAs, their keys protect nothing).
"""

import argparse
import base64
import datetime
import itertools
import json
import os
import sys
import threading
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.acmpca import models as acmpca_models
from moto.acmpca.models import acmpca_backends

STATES = ["ACTIVE", "DISABLED", "EXPIRED", "CREATING", "PENDING_CERTIFICATE", "FAILED", "DELETED"]
_lock = threading.Lock()
_keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(4)]
_key_cycle = itertools.cycle(_keys)
_leaf_key = _keys[0]


class _FastRsa:
    """Stands in for the `rsa` module moto's CA constructor uses, while seeding."""

    last = None

    @classmethod
    def generate_private_key(cls, public_exponent: int, key_size: int):
        cls.last = next(_key_cycle)
        return cls.last


def _self_signed(ca) -> bytes:
    key = ca.key
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(ca.issuer)
        .issuer_name(ca.issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _csr(common_name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]))
        .sign(_leaf_key, hashes.SHA256())
    )
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM))


def seed(account_id: str, region: str, groups: list[dict]) -> list[dict]:
    backend = acmpca_backends[account_id][region]
    made = []
    for group in groups:
        state = group.get("state", "ACTIVE")
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {STATES}")
        ca_type = group.get("type", "ROOT")
        if ca_type not in ("ROOT", "SUBORDINATE"):
            raise ValueError(f"type must be ROOT or SUBORDINATE, not {ca_type!r}")
        issued_n, revoked_n = int(group.get("issued", 0)), int(group.get("revoked", 0))
        if revoked_n > issued_n:
            raise ValueError("revoked cannot exceed issued")
        tags = [{"Key": k, "Value": v} for k, v in (group.get("tags") or {}).items()]
        for n in range(int(group.get("count", 1))):
            with _lock:
                original, acmpca_models.rsa = acmpca_models.rsa, _FastRsa
                try:
                    arn = backend.create_certificate_authority(
                        certificate_authority_configuration={
                            "KeyAlgorithm": "RSA_2048",
                            "SigningAlgorithm": "SHA256WITHRSA",
                            "Subject": {"CommonName": f"{state.lower()}-{n}.seed.internal", "Organization": "Seed"},
                        },
                        revocation_configuration=None,
                        certificate_authority_type=ca_type,
                        security_standard=None,
                        tags=tags,
                    )
                    key = _FastRsa.last
                finally:
                    acmpca_models.rsa = original
            ca = backend.certificate_authorities[arn]
            # The key object is at hand: spare moto decrypting it again (audit_reports caches it there).
            ca.__dict__["_loaded_key"] = key
            issued, revoked = [], []
            if state in ("ACTIVE", "DISABLED", "EXPIRED", "DELETED"):
                ca.import_certificate_authority_certificate(_self_signed(ca), None)
                for i in range(issued_n):
                    cert_arn = backend.issue_certificate(arn, _csr(f"host-{i}.seed.internal"), None)
                    issued.append(cert_arn)
                for cert_arn in issued[:revoked_n]:
                    pem = ca.issued_certificates[cert_arn]
                    serial = format(x509.load_pem_x509_certificate(pem).serial_number, "x")
                    backend.revoke_certificate(arn, serial, "KEY_COMPROMISE")
                    revoked.append(cert_arn)
            ca.status = state
            made.append({"arn": arn, "state": state, "type": ca_type, "issued": issued, "revoked": revoked})
    return made


def issue_more(arn: str, issued_n: int, revoked_n: int) -> dict:
    """`issued_n` more certificates of an existing CA, the first `revoked_n` of them revoked:
    what a CA signs between two audit reports (tests of READ_REPORTS)."""
    if revoked_n > issued_n:
        raise ValueError("revoked cannot exceed issued")
    parts = arn.split(":")
    if len(parts) < 6:
        raise ValueError("need an acm-pca CA arn")
    backend = acmpca_backends[parts[4]][parts[3]]
    ca = backend.describe_certificate_authority(arn)
    issued, revoked = [], []
    for i in range(issued_n):
        issued.append(backend.issue_certificate(arn, _csr(f"more-{i}.seed.internal"), None))
    for cert_arn in issued[:revoked_n]:
        serial = format(x509.load_pem_x509_certificate(ca.issued_certificates[cert_arn]).serial_number, "x")
        backend.revoke_certificate(arn, serial, "KEY_COMPROMISE")
        revoked.append(cert_arn)
    return {"arn": arn, "issued": issued, "revoked": revoked}


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed CAs into the running local stack.")
    parser.add_argument("--account-id", default="123456789012")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--issued", type=int, default=2, help="certificates issued per CA")
    parser.add_argument("--revoked", type=int, default=1, help="of which revoked")
    parser.add_argument("--type", default="ROOT", choices=["ROOT", "SUBORDINATE"])
    for state in STATES:
        parser.add_argument(f"--{state.lower().replace('_', '-')}", type=int, default=0, metavar="N")
    args = parser.parse_args()
    groups = []
    for state in STATES:
        count = getattr(args, state.lower())
        if count:
            with_certs = state in ("ACTIVE", "DISABLED", "EXPIRED", "DELETED")
            groups.append(
                {
                    "state": state,
                    "count": count,
                    "type": args.type,
                    "issued": args.issued if with_certs else 0,
                    "revoked": args.revoked if with_certs else 0,
                }
            )
    if not groups:
        parser.error("name at least one state, e.g. --active 10")
    body = json.dumps({"account_id": args.account_id, "region": args.region, "cas": groups}).encode()
    url = os.environ.get("PCA_LOCAL_CONTROL_URL")
    if not url:
        sys.exit("PCA_LOCAL_CONTROL_URL is not set: start the stack with scripts/local-stack up and source .local-stack/env")
    request = urllib.request.Request(url + "/seed", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        print(json.dumps(json.load(response), indent=2))


if __name__ == "__main__":
    main()
