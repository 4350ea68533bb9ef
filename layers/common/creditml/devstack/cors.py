"""S3's CORS for the embedded AWS's buckets, from each bucket's own CORS configuration.

The web UI posts a publisher's file from the browser straight to the uploads bucket's
presigned POST, so what S3 lets a page do cross-origin must hold locally too. moto's server
does not get it right: flask-cors grants every origin on every response, and moto ignores a
bucket's rules on POST uploads. This WSGI middleware, in front of moto, decides instead from
the bucket's stored CORS rules (PutBucketCors; the local stack puts the template's), as S3
does, for path-style bucket URLs (what presigned URLs on the embedded endpoint are):

  OPTIONS (preflight)  400 without Origin or with no valid Access-Control-Request-Method;
                       403 when the bucket has no CORS rules, or when no rule allows the
                       origin, the method and every requested header; otherwise 200 with
                       the first such rule's Access-Control-Allow-* headers
  any other request    runs as usual; if it has an Origin that the first rule allowing its
  with an Origin       origin and method grants, the answer carries that rule's
                       Access-Control-Allow-Origin (and -Methods, -Expose-Headers,
                       -Max-Age, -Allow-Credentials), otherwise no CORS header at all

Answers to a request with an Origin for a bucket with CORS rules say
`Vary: Origin, Access-Control-Request-Headers, Access-Control-Request-Method`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from moto.s3.models import s3_backends

StartResponse = Callable[..., Any]
# The only methods a CORS rule of S3 may allow.
S3_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ALLOWED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution"
    " of Origin, request method / Access-Control-Request-Method or"
    " Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)
# CloudFormation's names of a CorsRule's properties -> PutBucketCors's.
_API_NAMES = {
    "Id": "ID",
    "AllowedMethods": "AllowedMethods",
    "AllowedOrigins": "AllowedOrigins",
    "AllowedHeaders": "AllowedHeaders",
    "ExposedHeaders": "ExposeHeaders",
    "MaxAge": "MaxAgeSeconds",
}


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """S3's matching of an AllowedOrigin / AllowedHeader: `*` stands for any characters."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


@dataclass(frozen=True)
class CorsRule:
    """One CORSRule of a bucket (PutBucketCors's fields)."""

    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None

    def origin_match(self, origin: str) -> str | None:
        """The AllowedOrigin that admits `origin`, if any."""
        return next((item for item in self.allowed_origins if _wildcard(item, origin)), None)

    def allows(self, origin: str, method: str, headers: Sequence[str] = ()) -> bool:
        return (
            self.origin_match(origin) is not None
            and method in self.allowed_methods
            and all(
                any(
                    _wildcard(allowed, header, ignore_case=True) for allowed in self.allowed_headers
                )
                for header in headers
            )
        )

    def headers(self, origin: str, requested: Sequence[str] = ()) -> dict[str, str]:
        """What S3 answers for a request this rule allows (`requested`: a preflight's
        Access-Control-Request-Headers)."""
        wildcard = self.origin_match(origin) == "*"
        found = {
            "Access-Control-Allow-Origin": "*" if wildcard else origin,
            "Access-Control-Allow-Methods": ", ".join(self.allowed_methods),
        }
        if requested:
            found["Access-Control-Allow-Headers"] = ", ".join(requested)
        if self.expose_headers:
            found["Access-Control-Expose-Headers"] = ", ".join(self.expose_headers)
        if self.max_age_seconds is not None:
            found["Access-Control-Max-Age"] = str(self.max_age_seconds)
        if not wildcard:
            found["Access-Control-Allow-Credentials"] = "true"
        return found


def first_allowing(
    rules: Sequence[CorsRule], origin: str, method: str, headers: Sequence[str] = ()
) -> CorsRule | None:
    """The rule S3 applies: the first that allows the origin, method and headers."""
    return next((rule for rule in rules if rule.allows(origin, method, headers)), None)


def stored_rules(bucket: str) -> tuple[CorsRule, ...] | None:
    """The CORS rules moto stores for `bucket` (empty: none), None when there is no such
    bucket. Call it inside the embedded AWS's lock (the middleware's place)."""
    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None:
        return None
    partition, account = owner
    found = s3_backends[account][partition].buckets.get(bucket)
    if found is None:
        return None
    return tuple(
        CorsRule(
            allowed_methods=tuple(rule.allowed_methods or ()),
            allowed_origins=tuple(rule.allowed_origins or ()),
            allowed_headers=tuple(rule.allowed_headers or ()),
            expose_headers=tuple(rule.exposed_headers or ()),
            max_age_seconds=None if rule.max_age_seconds is None else int(rule.max_age_seconds),
        )
        for rule in found.cors
    )


def _bucket_of(environ: Mapping[str, Any]) -> str:
    """The bucket a path-style S3 URL names (`/bucket` or `/bucket/key`)."""
    path = str(environ.get("PATH_INFO", ""))
    return unquote(path.lstrip("/").split("/", 1)[0])


def _is_cors_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("access-control-") or lowered == "vary"


def _requested_headers(environ: Mapping[str, Any]) -> list[str]:
    raw = str(environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", ""))
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


class BucketCors:
    """WSGI middleware: S3's CORS answers for buckets, from `rules_for(bucket)` (the
    bucket's rules; None when there is no such bucket)."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        rules_for: Callable[[str], Sequence[CorsRule] | None] = stored_rules,
    ) -> None:
        self._app = app
        self._rules_for = rules_for

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        method = str(environ.get("REQUEST_METHOD", ""))
        if origin is None and method != "OPTIONS":  # not a browser's cross-origin request
            return self._app(environ, start_response)
        rules = self._rules_for(_bucket_of(environ))
        if rules is not None and method == "OPTIONS":
            return self._preflight(environ, rules, start_response)
        granted: dict[str, str] = {}
        if rules and origin is not None:
            rule = first_allowing(rules, origin, method)
            granted = {**(rule.headers(origin) if rule else {}), "Vary": VARY}

        def respond(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            # Only the bucket's rules grant anything (not moto's allow-all default).
            kept = [(name, value) for name, value in headers if not _is_cors_header(name)]
            return start_response(status, kept + list(granted.items()), *exc_info)

        return self._app(environ, respond)

    def _preflight(
        self, environ: Mapping[str, Any], rules: Sequence[CorsRule], start_response: StartResponse
    ) -> list[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
        requested = _requested_headers(environ)
        if origin is None:
            return _error(
                start_response,
                "400 Bad Request",
                "BadRequest",
                "Insufficient information. Origin request header needed.",
            )
        if method not in S3_METHODS:
            return _error(
                start_response,
                "400 Bad Request",
                "BadRequest",
                f"Invalid Access-Control-Request-Method: {method or 'null'}",
            )
        if not rules:
            return _error(
                start_response,
                "403 Forbidden",
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            )
        rule = first_allowing(rules, str(origin), str(method), requested)
        if rule is None:
            return _error(start_response, "403 Forbidden", "AccessForbidden", NOT_ALLOWED)
        headers = {**rule.headers(str(origin), requested), "Vary": VARY, "Content-Length": "0"}
        start_response("200 OK", list(headers.items()))
        return [b""]


def _error(start_response: StartResponse, status: str, code: str, message: str) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()
    start_response(
        status,
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def local_origins(host: str, port: int) -> list[str]:
    """The origins a browser on this machine gives the local API at `host`:`port` (the
    embedded AWS listens on loopback only, so no other machine's page could upload)."""
    hosts = ["127.0.0.1", "localhost"]
    if host not in ("", "0.0.0.0", "::", *hosts):  # noqa: S104 - a bind-all host is no origin
        hosts.append(f"[{host}]" if ":" in host else host)
    return [f"http://{name}:{port}" for name in hosts]


def template_rules(
    config: Mapping[str, Any], stand_ins: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """A bucket's resolved CloudFormation CorsConfiguration as PutBucketCors's CORSRules.
    An AllowedOrigin that `stand_ins` maps (the deployed API's origin) becomes the origins
    it maps to (the local gateway's); a rule left with no origin is dropped."""
    rules = []
    for rule in config.get("CorsRules", []):
        converted = {_API_NAMES[name]: value for name, value in rule.items() if name in _API_NAMES}
        origins: list[str] = []
        for origin in rule.get("AllowedOrigins", []):
            origins.extend(stand_ins.get(origin, [origin]))
        if origins:
            rules.append({**converted, "AllowedOrigins": list(dict.fromkeys(origins))})
    return rules
