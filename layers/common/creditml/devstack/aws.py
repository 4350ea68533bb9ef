"""An embedded AWS: moto's server behind one lock, and the template's resources created in it.

moto keeps no per-item locks, so two concurrent conditional writes could both pass their
condition. DynamoDB evaluates each conditional write atomically; serializing every request
to the embedded server restores that guarantee locally. Handlers still run concurrently:
only the storage calls take turns, exactly where DynamoDB itself serializes.

The server keeps connections alive (werkzeug's development server closes every one, so each
SDK call paid for a new connection and a new thread), and moto's per-request lookup of its
own service folders on disk is done once (`_cache_moto_modules`).
"""

from __future__ import annotations

import io
import secrets
import string
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from moto import backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from creditml.devstack import queries, transactions
from creditml.devstack.cors import BucketCors, template_rules
from creditml.devstack.lambdas import LocalLambda
from creditml.devstack.template import HTTP_API, Resolver, Template
from creditml.observability import telemetry
from creditml.storage.clients import client_config

logger = telemetry("devstack").logger
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
StartResponse = Callable[..., Any]


class _SerializedApp:
    """WSGI middleware that lets one request at a time into moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self._lock:
            # Drain the response inside the lock: moto may build it lazily.
            return [b"".join(self._app(environ, start_response))]


class _KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's request handler (the same WSGI environ), answering HTTP/1.1 with a
    Content-Length and keeping the connection open for the client's next request.

    The request body is read whole before the app runs (by Content-Length, or de-chunked),
    so nothing of it can be mistaken for the next request; the response is the app's body
    in one write.
    """

    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: with Nagle's algorithm on, the body would wait for
    # the client's delayed ACK (~40 ms on loopback) on every call.
    disable_nagle_algorithm = True

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        if environ.pop("wsgi.input_terminated", False):  # chunked: read to its end
            body = environ["wsgi.input"].read()
            del environ["HTTP_TRANSFER_ENCODING"]  # from here on, a body of known length
        else:
            body = self.rfile.read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            answer[:] = [status, headers]
            return None

        try:
            chunks = self.server.app(environ, start_response)
            payload = b"".join(chunks)
            getattr(chunks, "close", lambda: None)()
        except Exception:  # answered as a server error; the connection is not reused
            logger.exception("embedded AWS request failed", extra={"method": self.command})
            answer[:] = ["500 Internal Server Error", []]
            payload, self.close_connection = b"", True
        self._respond(answer[0], answer[1], payload)

    def _respond(self, status: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        length = str(len(payload))
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length" and self.command == "HEAD":
                length = value  # the size of what a GET would answer
            elif lower not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No line per SDK call (werkzeug logs each at INFO)."""


def _cache_moto_modules() -> None:
    """moto's server lists its package folder on disk (a stat per service) for every
    request, to tell a service name from a host name; the list never changes."""
    names = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: names


class EmbeddedAws:
    """moto's server on a loopback port, serialized, with Lambda's Invoke API for the
    template's functions (`lambdas.serve`) and S3's CORS from each bucket's rules
    (`cors`); `endpoint` is its URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        transactions.install()
        queries.install()
        _cache_moto_modules()
        # Lambda's Invoke API in front of the lock: invoked functions call AWS themselves.
        self.lambdas = LocalLambda(
            _SerializedApp(BucketCors(DomainDispatcherApplication(create_backend_app)))
        )
        self._server: BaseWSGIServer = make_server(
            host, port, self.lambdas, threaded=True, request_handler=_KeepAliveHandler
        )
        self.endpoint = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="embedded-aws", daemon=True
        )

    def start(self) -> EmbeddedAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.lambdas.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=1)


@dataclass
class Provisioned:
    """Physical names (what Ref gives) and attributes (what GetAtt gives) of resources."""

    physical: dict[str, str]
    attributes: dict[str, dict[str, str]]


def _table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"


_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
)


def _create_table(client: Any, name: str, props: Mapping[str, Any]) -> str | None:
    """Create table `name` from its template properties; returns its stream's ARN, if any."""
    kwargs = {key: props[key] for key in _TABLE_KEYS if key in props}
    if "StreamSpecification" in kwargs:
        # CloudFormation's StreamSpecification has only the view type; the API's also
        # wants StreamEnabled.
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **kwargs["StreamSpecification"]}
    created = client.create_table(TableName=name, **kwargs)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    stream_arn: str | None = created.get("LatestStreamArn")
    return stream_arn


def _create_queue(client: Any, name: str, props: Mapping[str, Any]) -> dict[str, str]:
    """Create SQS queue `name` (what `!GetAtt Queue.Arn` names: failure destinations)."""
    attributes = {}
    if props.get("FifoQueue"):
        name = name if name.endswith(".fifo") else f"{name}.fifo"
        attributes["FifoQueue"] = "true"
    url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return {"Arn": arn["Attributes"]["QueueArn"], "QueueName": name, "QueueUrl": url}


def _generate_secret(spec: Mapping[str, Any]) -> str:
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    length = int(spec.get("PasswordLength", 32))
    return "".join(secrets.choice(alphabet) for _ in range(length))


def pseudo_parameters(stack_name: str) -> dict[str, str]:
    return {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


def _api_stand_ins(
    template: Template, pseudo: Mapping[str, str], api_origins: Sequence[str]
) -> tuple[dict[str, str], dict[str, Sequence[str]]]:
    """Local ids of the template's HTTP APIs, and each one's deployed origin
    (https://<id>.execute-api.<region>.<suffix>) mapped to `api_origins`: the local
    gateway serves every API of the template."""
    ids = {logical_id: logical_id.lower() for logical_id in template.resources_of(HTTP_API)}
    region, suffix = pseudo["AWS::Region"], pseudo["AWS::URLSuffix"]
    origins = {
        f"https://{api_id}.execute-api.{region}.{suffix}": api_origins for api_id in ids.values()
    }
    return ids, origins


def provision(
    template: Template,
    prefix: str,
    session: boto3.Session | None = None,
    api_origins: Sequence[str] = (),
) -> Provisioned:
    """Create every table, bucket, KMS key, secret and queue of `template` (from its own
    definitions) in whatever AWS `session` reaches: the embedded server, or moto's
    in-process mock.
    `prefix` also stands for the stack name. A bucket's CORS rules name the deployed API's
    origin; locally they name `api_origins` instead (the gateway's; none: no such rule)."""
    session = session or boto3.Session(region_name=REGION)
    physical: dict[str, str] = {}
    attributes: dict[str, dict[str, str]] = {}
    pseudo = pseudo_parameters(prefix)
    apis, stand_ins = _api_stand_ins(template, pseudo, api_origins)
    names = Resolver(template, apis, {}, pseudo)
    dynamodb = session.client("dynamodb", config=client_config())
    for logical_id, resource in template.resources_of("AWS::DynamoDB::Table").items():
        name = f"{prefix}-{logical_id}"
        stream_arn = _create_table(dynamodb, name, resource.get("Properties", {}))
        physical[logical_id] = name
        attributes[logical_id] = {"Arn": _table_arn(name)}
        if stream_arn:
            attributes[logical_id]["StreamArn"] = stream_arn
    s3 = session.client("s3", config=client_config())
    for logical_id, resource in template.resources_of("AWS::S3::Bucket").items():
        props = resource.get("Properties", {})
        given = props.get("BucketName")
        name = str(names.resolve(given)) if given else f"{prefix}-{logical_id}".lower()
        s3.create_bucket(Bucket=name)
        rules = template_rules(names.resolve(props.get("CorsConfiguration", {})), stand_ins)
        if rules:
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
        physical[logical_id] = name
        attributes[logical_id] = {"Arn": f"arn:aws:s3:::{name}", "DomainName": name}
    kms = session.client("kms", config=client_config())
    for logical_id, resource in template.resources_of("AWS::KMS::Key").items():
        description = resource.get("Properties", {}).get("Description", logical_id)
        key = kms.create_key(Description=str(description))["KeyMetadata"]
        physical[logical_id] = key["KeyId"]
        attributes[logical_id] = {"Arn": key["Arn"], "KeyId": key["KeyId"]}
    secretsmanager = session.client("secretsmanager", config=client_config())
    for logical_id, resource in template.resources_of("AWS::SecretsManager::Secret").items():
        props = resource.get("Properties", {})
        value = props.get("SecretString") or _generate_secret(props.get("GenerateSecretString", {}))
        arn = secretsmanager.create_secret(Name=f"{prefix}/{logical_id}", SecretString=value)["ARN"]
        physical[logical_id] = arn
        attributes[logical_id] = {"Arn": arn}
    sqs = session.client("sqs", config=client_config())
    for logical_id, resource in template.resources_of("AWS::SQS::Queue").items():
        props = resource.get("Properties", {})
        given = props.get("QueueName")
        queue = _create_queue(
            sqs, str(names.resolve(given)) if given else f"{prefix}-{logical_id}", props
        )
        physical[logical_id] = queue["QueueUrl"]  # Ref of a queue is its URL
        attributes[logical_id] = queue
    return Provisioned(physical, attributes)


def function_environment(
    template: Template, provisioned: Provisioned, stack_name: str
) -> dict[str, str]:
    """The environment every function of the template gets, resolved locally.

    All functions share one process locally, so their variables are merged; a variable that
    two functions set differently cannot be emulated and is refused.
    """
    resolver = Resolver(
        template, provisioned.physical, provisioned.attributes, pseudo_parameters(stack_name)
    )
    merged: dict[str, str] = {}
    for spec in template.functions.values():
        for name, value in resolver.resolve(dict(spec.environment)).items():
            text = str(value)
            if merged.setdefault(name, text) != text:
                raise ValueError(f"functions disagree on environment variable {name}")
    return merged
