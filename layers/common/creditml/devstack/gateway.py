"""An API Gateway HTTP API emulation: real HTTP in, payload-format-2.0 events to the real
Lambda handlers, their responses back out. Routes come from template.yaml."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from creditml.devstack.runtime import invoke
from creditml.devstack.template import Route, Template
from creditml.observability import telemetry

logger = telemetry("devstack").logger
# Lambda's synchronous invocation payload limit; API Gateway answers 413 past it.
MAX_EVENT_BYTES = 6 * 1024 * 1024
# How many handlers run at once (the local stand-in for Lambda's concurrency); further
# requests wait for a slot. Bounded so the AWS clients' pools can be sized to it. Each slot
# is a long-lived thread, like a warm container: its SDK clients and event loop are reused.
MAX_CONCURRENT_INVOCATIONS = 64
_TEXT_TYPES = (
    "application/json",
    "application/problem+json",
    "text/",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/javascript",
)


def _is_text(content_type: str) -> bool:
    return any(content_type.startswith(kind) for kind in _TEXT_TYPES)


def build_event(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    route: Route,
    path_parameters: Mapping[str, str],
    source_ip: str = "127.0.0.1",
    domain: str = "localhost",
) -> dict[str, Any]:
    """An HTTP API payload v2 event, shaped as API Gateway sends it."""
    lower = {name.lower(): value for name, value in headers.items()}
    # Set by API Gateway whatever the client sent: how the browser reached it (plain HTTP
    # here; HTTPS deployed, where the web UI's cookies are marked Secure) and from where.
    lower["x-forwarded-proto"] = "http"
    lower["x-forwarded-for"] = source_ip
    cookies = [part.strip() for part in lower.pop("cookie", "").split(";") if part.strip()]
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": lower,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lower.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route.key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        if _is_text(lower.get("content-type", "application/json")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def _problem(status: int, code: str, title: str) -> tuple[int, dict[str, str], bytes]:
    body = {
        "type": f"https://errors.creditml.dev/{code}",
        "title": title,
        "status": status,
        "detail": title,
        "code": code,
    }
    return status, {"content-type": "application/problem+json"}, json.dumps(body).encode()


class Gateway(ThreadingHTTPServer):
    """Serves the template's routes on a loopback (or given) address, one thread a request."""

    daemon_threads = True
    # Concurrency tests open dozens of connections at once; the default backlog is 5.
    request_queue_size = 256

    def __init__(
        self,
        template: Template,
        host: str,
        port: int,
        concurrency: int = MAX_CONCURRENT_INVOCATIONS,
    ) -> None:
        self.template = template
        self.concurrency = concurrency
        self.stopping = False
        self._containers = ThreadPoolExecutor(concurrency, thread_name_prefix="lambda")
        super().__init__((host, port), _RequestHandler)

    def shutdown(self) -> None:
        """Stop accepting connections. Requests that still come on kept-alive connections
        are answered 503 and their connection closed (the functions' pool is going away)."""
        self.stopping = True
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        self._containers.shutdown(wait=False, cancel_futures=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, client: str
    ) -> tuple[int, dict[str, str], bytes]:
        if self.stopping:
            return _problem(503, "stack_stopping", "The local stack is stopping")
        parts = urlsplit(target)
        found = self.template.route_for(method, parts.path)
        if found is None:
            return _problem(404, "not_found", "Not found")
        route, params = found
        host = headers.get("Host", "localhost")
        event = build_event(
            method, parts.path, parts.query, headers, body, route, params, client, host
        )
        if len(json.dumps(event)) > MAX_EVENT_BYTES:
            return _problem(413, "payload_too_large", "Request body too large")
        try:
            spec = self.template.functions[route.function]
            response = self._containers.submit(invoke, spec, event).result()
        except Exception:
            logger.exception("Handler failed", extra={"route": route.key})
            return _problem(502, "bad_gateway", "The function failed")
        return to_http_response(response)


def to_http_response(response: Any) -> tuple[int, dict[str, str], bytes]:
    """Map a handler's result to HTTP as HTTP API payload v2 does."""
    if not isinstance(response, dict) or "statusCode" not in response:
        text = response if isinstance(response, str) else json.dumps(response)
        return 200, {"content-type": "application/json"}, text.encode()
    headers = {str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()}
    if response.get("cookies"):
        headers["set-cookie"] = "\n".join(response["cookies"])
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
    return int(response["statusCode"]), headers, body


class _RequestHandler(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body waits for
    # the client's delayed ACK of the headers (~40 ms on Linux loopback) on every request.
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_EVENT_BYTES:
            status, headers, body = _problem(413, "payload_too_large", "Request body too large")
            self.close_connection = True
        else:
            request_body = self.rfile.read(length) if length else b""
            status, headers, body = self.server.dispatch(
                self.command,
                self.path,
                dict(self.headers.items()),
                request_body,
                self.client_address[0],
            )
            self.close_connection = self.close_connection or self.server.stopping
        self.send_response(status)
        for name, value in headers.items():
            if name in ("content-length", "connection", "transfer-encoding"):
                continue
            for line in value.split("\n") if name == "set-cookie" else [value]:
                self.send_header(name, line)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        logger.debug(
            "request",
            extra={
                "method": self.command,
                "path": self.path.split("?")[0],
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    # Every method goes to the template's routes (an unclaimed one to the `ANY /{proxy+}`
    # catch-all, which answers 405 with Allow), as API Gateway does; without a do_TRACE the
    # stdlib would answer 501 itself.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle
    do_TRACE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's per-request stderr line (logged above at debug instead)."""
