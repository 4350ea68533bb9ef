"""/docs through the local gateway (template.yaml's routes, the docs function's real
handler, bodies decoded as API Gateway does): Swagger UI comes from the files vendored in
the layer, never from another origin, under a Content-Security-Policy that allows no
inline script."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from creditml.api.routes.docs import MEDIA_TYPES, SWAGGER_UI_DIR
from creditml.devstack.gateway import Gateway
from creditml.devstack.stack import aws_environment
from creditml.devstack.template import Template
from tests.integration.conftest import serving

Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture(scope="module")
def gateway(template: Template) -> Iterator[Gateway]:
    # The docs function reads files and calls no AWS service: the base variables and its
    # literal ones (no embedded AWS: a call to one would fail) serve every test here.
    literal = {
        name: value
        for name, value in template.functions["DocsFunction"].environment.items()
        if isinstance(value, str)
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {**aws_environment("unused"), **literal}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        with serving(template) as server:
            yield server


def _get(gateway: Gateway, path: str) -> Answer:
    host, port = gateway.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


class _References(HTMLParser):
    """Every URL a page loads (script src, link href, img src) and any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            if named.get(attribute):
                self.urls.append(str(named[attribute]))
        self._in_script = tag == "script"
        if tag == "script" and not named.get("src"):
            self.inline_scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def _page(gateway: Gateway) -> tuple[dict[str, str], _References]:
    status, headers, body = _get(gateway, "/docs")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    references = _References()
    references.feed(body.decode("utf-8"))
    return headers, references


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


def test_the_page_loads_everything_from_its_own_origin(gateway: Gateway) -> None:
    _, references = _page(gateway)
    # Given the vendored stylesheet, bundle, starter script and icon...
    assert len(references.urls) == len(MEDIA_TYPES)
    for url in references.urls:
        # ...each is a path on this origin: no scheme, no host, not protocol-relative.
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith("/docs/assets/"), url
    assert references.inline_scripts == []


def test_the_page_carries_a_policy_without_inline_scripts(gateway: Gateway) -> None:
    headers, _ = _page(gateway)
    policy = _policy(headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]  # "Try it out" calls this API only
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["default-src"] + policy["script-src"]
    assert headers["cache-control"] == "no-cache"
    assert headers["x-content-type-options"] == "nosniff"


def test_each_asset_is_served_byte_for_byte_with_its_type(gateway: Gateway) -> None:
    _, references = _page(gateway)
    served = {}
    for url in references.urls:
        status, headers, body = _get(gateway, url)
        assert status == 200, url
        assert "immutable" in headers["cache-control"]
        assert headers["x-content-type-options"] == "nosniff"
        # The served name is the vendored one with a hash of the content before the suffix.
        stem, _, suffix = url.removeprefix("/docs/assets/").rpartition(".")
        served[f"{stem.rpartition('.')[0]}.{suffix}"] = (headers["content-type"], body)
    assert set(served) == set(MEDIA_TYPES)
    for name, (content_type, body) in served.items():
        assert content_type == MEDIA_TYPES[name], name
        assert body == (SWAGGER_UI_DIR / name).read_bytes(), name


def test_the_starter_script_reads_the_document_the_page_names(gateway: Gateway) -> None:
    status, _, body = _get(gateway, "/docs")
    assert status == 200
    assert 'data-openapi-url="/openapi.json"' in body.decode()
    assert _get(gateway, "/openapi.json")[0] == 200


@pytest.mark.parametrize(
    "name",
    [
        "swagger-ui-bundle.js",  # the vendored name, without the content hash
        "swagger-ui.000000000000.css",  # a stale or made-up hash
        "README.md",  # vendored alongside, but not served
        "LICENSE",
        "..%2F..%2Froutes%2Fdocs.py",
        "%2e%2e",
    ],
)
def test_anything_else_under_assets_is_a_404_problem(gateway: Gateway, name: str) -> None:
    status, headers, body = _get(gateway, f"/docs/assets/{name}")
    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "not_found"


def test_the_template_routes_assets_to_the_docs_function(template: Template) -> None:
    found = template.route_for("GET", "/docs/assets/swagger-ui.0123456789ab.css")
    assert found is not None
    route, parameters = found
    assert (route.key, route.function) == ("GET /docs/assets/{name}", "DocsFunction")
    assert parameters == {"name": "swagger-ui.0123456789ab.css"}
