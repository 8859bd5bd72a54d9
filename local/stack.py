"""The stack's Python process: moto's server (S3, STS with trust policies enforced, ACM PCA
with the audit-report operations, IAM, Organizations, SQS...), the control API under /_pca_local, fault injection for every service, and the
fault-injecting proxy in front of DynamoDB Local.

    python -m local.stack --port 5000 --dynamodb-port 8001 --dynamodb-upstream 8000
"""

import argparse
import http.client
import http.server
import io
import json
import logging
import random
import re
import socket
import threading
import time
import uuid
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from . import audit_reports, security_hub, settings, trust
from . import seed as seeding

PREFIX = "/_pca_local"
SERVICES = ("dynamodb", "s3", "acm-pca", "sts", "iam", "organizations", "sqs", "kms", "events", "securityhub")
# Services speaking the query protocol: errors are XML documents.
QUERY_SERVICES = ("sts", "iam")
KINDS = ("throttle", "500", "slow", "reset", "accept-then-500", "accept-then-reset", "hang")
# How long a `hang` holds a request unanswered: longer than any Lambda invocation (15 minutes),
# so the client's own timeout is what ends it, as for a connection that stopped answering.
HANG_MS = 16 * 60 * 1000
# Kinds where the service handles the request (and acts on it) and the answer is lost: an HTTP
# 500 InternalFailure in its place, or the connection closed without one. A client cannot tell
# these from a request the service never saw: what a lost answer to a create looks like.
ACCEPT_KINDS = ("accept-then-500", "accept-then-reset")


# --- faults on demand ---------------------------------------------------------------------------


class Faults:
    """Rules that make a share of one service's (or operation's) calls fail or slow down."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: dict[str, dict] = {}

    def add(self, rule: dict) -> dict:
        service = rule.get("service")
        if service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}")
        kind = str(rule.get("kind", ""))
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if kind == "reset" and service != "dynamodb":
            # Dropping a moto request before it is handled is not offered (accept-then-reset
            # drops it after).
            raise ValueError("kind reset (connection dropped unanswered) is for dynamodb only")
        rate = float(rule.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        made = {
            "id": uuid.uuid4().hex[:12],
            "service": service,
            "operation": rule.get("operation"),
            "account_id": rule.get("account_id"),
            "table": rule.get("table"),
            "rate": rate,
            "kind": kind,
            "delay_ms": int(rule.get("delay_ms", HANG_MS if kind == "hang" else 2000)),
            "injected": 0,
            "seen": 0,
        }
        made["_random"] = random.Random(rule.get("seed"))
        with self.lock:
            self.rules[made["id"]] = made
        return self.public(made)

    @staticmethod
    def public(rule: dict) -> dict:
        return {k: v for k, v in rule.items() if not k.startswith("_")}

    def list(self) -> list[dict]:
        with self.lock:
            return [self.public(r) for r in self.rules.values()]

    def clear(self, rule_id: str | None = None) -> None:
        with self.lock:
            if rule_id is None:
                self.rules.clear()
            else:
                self.rules.pop(rule_id, None)

    def pick(self, service: str, operation: str, account_id: str | None, table: str | None) -> dict | None:
        """The first matching rule that fires for this call, if any."""
        with self.lock:
            for rule in self.rules.values():
                if rule["service"] != service:
                    continue
                if rule["operation"] and rule["operation"] != operation:
                    continue
                if rule["account_id"] and rule["account_id"] != account_id:
                    continue
                if rule["table"] and rule["table"] not in (table if isinstance(table, (set, list, tuple)) else {table}):
                    continue
                rule["seen"] += 1
                if rule["_random"].random() < rule["rate"]:
                    rule["injected"] += 1
                    return dict(rule)
        return None


FAULTS = Faults()


class Requests:
    """How many calls each service and operation received, for benchmarks to report."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, service: str, operation: str) -> None:
        with self.lock:
            self.counts[(service, operation)] = self.counts.get((service, operation), 0) + 1

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [{"service": s, "operation": o, "count": n} for (s, o), n in sorted(self.counts.items())]

    def clear(self) -> None:
        with self.lock:
            self.counts.clear()


REQUESTS = Requests()


def fault_response(service: str, kind: str) -> tuple[int, list, bytes]:
    """The error each service really sends for throttling or an internal failure."""
    if service == "s3":
        code, status = ("SlowDown", 503) if kind == "throttle" else ("InternalError", 500)
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected fault</Message></Error>'
        return status, [("Content-Type", "application/xml")], body.encode()
    if service in QUERY_SERVICES:
        code, status = ("Throttling", 400) if kind == "throttle" else ("InternalFailure", 500)
        kind_of = "Sender" if status == 400 else "Receiver"
        body = (
            f"<ErrorResponse><Error><Type>{kind_of}</Type><Code>{code}</Code><Message>injected fault</Message></Error>"
            "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
        )
        return status, [("Content-Type", "text/xml")], body.encode()
    headers = []
    if kind == "throttle":
        status = 400
        code = {
            "dynamodb": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
            "organizations": "TooManyRequestsException",
            "sqs": "com.amazonaws.sqs#RequestThrottled",
        }.get(service, "ThrottlingException")
        if service == "sqs":
            # SQS's JSON protocol also names the error as its query protocol did.
            headers.append(("x-amzn-query-error", "RequestThrottled;Sender"))
    else:
        code, status = "InternalFailure", 500
    body = json.dumps({"__type": code, "message": "injected fault"}).encode()
    plain = code.split("#")[-1]
    content_type = "application/x-amz-json-1.0" if service in ("dynamodb", "sqs") else "application/x-amz-json-1.1"
    return status, [("Content-Type", content_type), ("x-amzn-ErrorType", plain)] + headers, body


CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/")


def request_service(environ: dict) -> tuple[str | None, str | None]:
    """(service, access key) from the request's SigV4 Authorization header."""
    match = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return None, None
    return match.group(2), match.group(1)


def query_action(environ: dict) -> str | None:
    """The Action of a query-protocol request (STS, IAM), from the query string or the form
    body; the body is put back for moto to read."""
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if action:
        return action[0]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not length:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return action[0] if action else None


def account_of(access_key: str | None) -> str | None:
    if not access_key:
        return None
    from moto.iam.models import get_account_id_from

    return get_account_id_from(access_key)


# --- the control API ----------------------------------------------------------------------------


def control(method: str, path: str, query: dict, body: dict) -> tuple[int, object]:
    route = path[len(PREFIX) :].rstrip("/") or "/"
    if route == "/health":
        return 200, {"ok": True}
    if route == "/config":
        account = body.pop("account_id", None) if method == "POST" else query.get("account_id")
        if method == "GET":
            return 200, settings.get(account or "")
        if method == "POST":
            return 200, settings.update(body, account)
        if method == "DELETE":
            settings.reset()
            return 200, settings.get("")
    if route == "/audit-calls" and method == "GET":
        with audit_reports._lock:
            calls = list(audit_reports.CALLS)
        for key in ("account_id", "region", "ca_arn"):
            if query.get(key):
                calls = [c for c in calls if c[key] == query[key]]
        return 200, {"calls": calls}
    if route == "/requests":
        if method == "GET":
            with audit_reports._lock:
                throttled = [{"operation": op, "count": n} for op, n in sorted(audit_reports.THROTTLED.items())]
            return 200, {"requests": REQUESTS.snapshot(), "throttled": throttled}
        if method == "DELETE":
            REQUESTS.clear()
            with audit_reports._lock:
                audit_reports.THROTTLED.clear()
            return 200, {"requests": []}
    if route == "/faults":
        if method == "POST":
            return 200, FAULTS.add(body)
        if method == "GET":
            return 200, {"faults": FAULTS.list()}
        if method == "DELETE":
            FAULTS.clear()
            return 200, {"faults": []}
    if route.startswith("/faults/") and method == "DELETE":
        FAULTS.clear(route.split("/")[-1])
        return 200, {"faults": FAULTS.list()}
    if route == "/finish-reports" and method == "POST":
        return 200, {"finished": audit_reports.finish_now(body.get("account_id"))}
    if route == "/seed" and method == "POST":
        made = seeding.seed(body.get("account_id", "123456789012"), body.get("region", "us-east-1"), body.get("cas", []))
        return 200, {"certificate_authorities": made}
    if route == "/certificates" and method == "POST":
        return 200, seeding.issue_more(body.get("arn", ""), int(body.get("issued", 0)), int(body.get("revoked", 0)))
    if route == "/ca-state" and method == "POST":
        arn = body.get("arn", "")
        parts = arn.split(":")
        if len(parts) < 6 or body.get("state") not in seeding.STATES:
            raise ValueError("need an acm-pca CA arn and a state")
        from moto.acmpca.models import acmpca_backends

        backend = acmpca_backends[parts[4]][parts[3]]
        backend.describe_certificate_authority(arn).status = body["state"]
        return 200, {"arn": arn, "state": body["state"]}
    if route == "/certificate-count" and method == "POST":
        arn, count = body.get("arn", ""), body.get("count")
        parts = arn.split(":")
        if len(parts) < 6 or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("need an acm-pca CA arn and a count (an integer >= 0)")
        from moto.acmpca.models import acmpca_backends

        # The CA must exist: a count for a CA that is not there would silently do nothing.
        try:
            acmpca_backends[parts[4]][parts[3]].describe_certificate_authority(arn)
        except Exception as e:
            raise ValueError(f"no certificate authority {arn}") from e
        audit_reports.set_certificate_count(arn, count)
        return 200, {"arn": arn, "count": count}
    if route == "/reset" and method == "POST":
        settings.reset()
        audit_reports.reset()
        FAULTS.clear()
        return 200, {"ok": True}
    return 404, {"error": f"no route {method} {path}"}


# --- S3 bucket owner condition --------------------------------------------------------------

# A virtual-hosted-style request's bucket: <bucket>.s3.amazonaws.com, <bucket>.s3.<region>
# .amazonaws.com, <bucket>.s3-<region>.amazonaws.com (S3 user guide, "Virtual hosting of
# general purpose buckets"), or <bucket>.localhost as moto's server accepts.
VIRTUAL_HOST = re.compile(r"^(?P<bucket>.+?)\.(?:s3[.-][^:]*|localhost)(?::\d+)?$")


def s3_bucket_of(environ: dict) -> str | None:
    """The bucket an S3 request names: the Host's first label (virtual-hosted style) or the
    path's first segment (path style); None for a request without one (ListBuckets)."""
    match = VIRTUAL_HOST.match(environ.get("HTTP_HOST", ""))
    if match:
        return match.group("bucket")
    first = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)[0]
    return first or None


def _copy_source_bucket(environ: dict) -> str | None:
    # x-amz-copy-source: "<bucket>/<key>" (URL-encoded, maybe with a leading slash).
    from urllib.parse import unquote

    source = unquote(environ.get("HTTP_X_AMZ_COPY_SOURCE", "")).lstrip("/")
    return source.split("/", 1)[0] or None


def wrong_bucket_owner(environ: dict) -> str | None:
    """The bucket whose owner is not the one the request expects, or None.

    S3 user guide, "Verifying bucket ownership with bucket owner condition"
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html): a
    request carrying x-amz-expected-bucket-owner (x-amz-source-expected-bucket-owner for
    CopyObject's source bucket) fails with HTTP 403 Access Denied when the bucket belongs to
    another account. The owner is the moto account whose S3 holds the bucket. A bucket that
    does not exist is left to S3's own answer (NoSuchBucket). ASSUMED: a value that is not an
    account id is treated as a mismatch (403), the loud reading; the condition is carried in
    headers only (the SDKs send `ExpectedBucketOwner` as this header; no query form is
    documented)."""
    checks = (
        (environ.get("HTTP_X_AMZ_EXPECTED_BUCKET_OWNER"), s3_bucket_of(environ)),
        (environ.get("HTTP_X_AMZ_SOURCE_EXPECTED_BUCKET_OWNER"), _copy_source_bucket(environ)),
    )
    for expected, bucket in checks:
        if expected is None or not bucket:
            continue
        backend = audit_reports.bucket_backend(bucket)
        if backend is not None and backend.account_id != expected.strip():
            return bucket
    return None


def access_denied(environ: dict, start_response):
    """S3's 403 AccessDenied (no body for HEAD, as S3 answers HeadBucket and HeadObject)."""
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message>'
        f"<RequestId>{request_id}</RequestId><HostId>local</HostId></Error>"
    ).encode()
    if environ.get("REQUEST_METHOD") == "HEAD":
        body = b""
    start_response(
        "403 Forbidden",
        [("Content-Type", "application/xml"), ("x-amz-request-id", request_id), ("Content-Length", str(len(body)))],
    )
    return [body]


class Frontend:
    """WSGI in front of moto: the control API, then faults, then S3's bucket owner condition,
    then moto itself."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX):
            return self.control(environ, start_response, path)
        service, access_key = request_service(environ)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.split(".")[-1] if target else environ.get("REQUEST_METHOD", "")
        if service in QUERY_SERVICES:
            operation = query_action(environ) or operation
        if service:
            REQUESTS.count(service, operation)
        if service and FAULTS.rules:
            rule = FAULTS.pick(service, operation, account_of(access_key), None)
            if rule:
                if rule["kind"] == "slow":
                    time.sleep(rule["delay_ms"] / 1000)
                elif rule["kind"] == "hang":
                    # The request never reaches the service (nothing is done) and no answer
                    # comes: the client gives up at its own timeout. Then the connection closes.
                    time.sleep(rule["delay_ms"] / 1000)
                    raise ConnectionResetError("hang: no answer")
                elif rule["kind"] in ACCEPT_KINDS:
                    return self.accept_then_fail(environ, start_response, service, rule["kind"])
                else:
                    status, headers, body = fault_response(service, rule["kind"])
                    start_response(f"{status} Fault", headers + [("Content-Length", str(len(body)))])
                    return [body]
        if service == "s3" and wrong_bucket_owner(environ):
            return access_denied(environ, start_response)
        return self.app(environ, start_response)

    def accept_then_fail(self, environ, start_response, service: str, kind: str):
        """Lets moto handle the request in full (the service accepts it and acts on it), then
        loses the answer: a 500 InternalFailure in its place, or the connection closed."""
        body = self.app(environ, lambda status, headers, exc_info=None: (lambda data: None))
        try:
            for _ in body:
                pass
        finally:
            if hasattr(body, "close"):
                body.close()
        if kind == "accept-then-reset":
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            # werkzeug takes a ConnectionError as a connection the client dropped: no answer.
            raise ConnectionResetError("accept-then-reset: answer dropped")
        status, headers, data = fault_response(service, "500")
        start_response(f"{status} Fault", headers + [("Content-Length", str(len(data)))])
        return [data]

    def control(self, environ, start_response, path):
        method = environ["REQUEST_METHOD"]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            body = json.loads(raw) if raw.strip() else {}
            status, payload = control(method, path, query, body)
        except (ValueError, KeyError, TypeError) as e:
            status, payload = 400, {"error": str(e)}
        data = json.dumps(payload).encode()
        start_response(f"{status} OK" if status == 200 else f"{status} Error", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


# --- the DynamoDB proxy -------------------------------------------------------------------------


def tables_of(body: bytes) -> set:
    """The tables a DynamoDB request touches: `TableName`, the keys of a batch's
    `RequestItems`, and each item of a transaction."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return set()
    if not isinstance(request, dict):
        return set()
    tables = {request["TableName"]} if isinstance(request.get("TableName"), str) else set()
    if isinstance(request.get("RequestItems"), dict):
        tables |= set(request["RequestItems"])
    for item in request.get("TransactItems") or []:
        if isinstance(item, dict):
            for action in item.values():
                if isinstance(action, dict) and isinstance(action.get("TableName"), str):
                    tables.add(action["TableName"])
    return tables


def dynamodb_proxy(port: int, upstream: int) -> http.server.ThreadingHTTPServer:
    local = threading.local()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _drop(self) -> None:
            """Closes the connection without an answer, as an unreachable service would."""
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _answer(self, status: int, headers: list, data: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            operation = (self.headers.get("X-Amz-Target") or "").split(".")[-1]
            REQUESTS.count("dynamodb", operation)
            after = None
            if FAULTS.rules:
                rule = FAULTS.pick("dynamodb", operation, None, tables_of(body))
                if rule and rule["kind"] in ACCEPT_KINDS:
                    # Forwarded as usual; the answer is lost below.
                    after = rule["kind"]
                elif rule and rule["kind"] == "slow":
                    time.sleep(rule["delay_ms"] / 1000)
                elif rule and rule["kind"] == "reset":
                    # As if DynamoDB were unreachable: the connection closes with no answer.
                    self._drop()
                    return
                elif rule and rule["kind"] == "hang":
                    # Not forwarded, not answered: the client's timeout ends it.
                    time.sleep(rule["delay_ms"] / 1000)
                    self._drop()
                    return
                elif rule:
                    self._answer(*fault_response("dynamodb", rule["kind"]))
                    return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            for attempt in range(2):
                conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
                local.conn = conn
                try:
                    conn.request("POST", self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt:
                        self.send_error(502, "DynamoDB Local did not answer")
                        return
            if after == "accept-then-reset":
                self._drop()
                return
            if after == "accept-then-500":
                self._answer(*fault_response("dynamodb", "500"))
                return
            self.send_response(response.status)
            for k, v in response.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dynamodb-port", type=int, required=True)
    parser.add_argument("--dynamodb-upstream", type=int, required=True)
    args = parser.parse_args()

    # One log line per request would bury the stack's own messages.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    audit_reports.install()
    security_hub.install()
    trust.install()
    proxy = dynamodb_proxy(args.dynamodb_port, args.dynamodb_upstream)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    app = Frontend(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"moto on {args.port}, DynamoDB proxy on {args.dynamodb_port} -> {args.dynamodb_upstream}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
