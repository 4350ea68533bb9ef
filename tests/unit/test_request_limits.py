"""The request guard every function's app has (creditml.api.app.RequestGuard): unsupported
methods are 405 with Allow, JSON-body routes refuse other media types (415), bodies over the
limit (413) and JSON nested too deeply (422), all before anything is parsed, and none of it
reaches the route (no sockets: the ASGI app is driven in-process)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Body, Request, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from creditml.api.app import MAX_JSON_DEPTH, create_app, is_json_media_type, json_depth

LIMIT = 4096
router = APIRouter()
reached: list[str] = []


class Payload(BaseModel):
    value: Any = None


@router.post("/things")
def create(body: Payload) -> dict[str, str]:
    reached.append("create")
    return {"ok": "created"}


@router.get("/things")
def listing() -> dict[str, str]:
    return {"ok": "listed"}


@router.patch("/things/{id}")
def update(id: str, body: Annotated[dict[str, Any], Body()]) -> dict[str, str]:
    reached.append("update")
    return {"ok": id}


@router.delete("/things/{id}", status_code=204, response_class=Response)
def remove(id: str) -> Response:
    return Response(status_code=204)


@router.post("/things/{id}/copies")
def copy(id: str) -> dict[str, str]:
    """No body: a POST without one (and without a Content-Type) is fine."""
    return {"ok": id}


@router.post(
    "/raw",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {}}}}},
)
async def raw(request: Request) -> dict[str, int]:
    """Parses its own body, like POST /models/{id}/predictions."""
    reached.append("raw")
    return {"bytes": len(await request.body())}


@pytest.fixture(autouse=True)
def _forget_calls() -> None:
    reached.clear()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(router, max_body_bytes=LIMIT), raise_server_exceptions=False)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- 405 with Allow, 404 --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/things", "GET, POST"),
        ("PUT", "/things", "GET, POST"),
        ("TRACE", "/things/7", "DELETE, PATCH"),
        ("GET", "/things/7", "DELETE, PATCH"),
        ("OPTIONS", "/raw", "POST"),
    ],
)
def test_an_unserved_method_is_405_naming_the_paths_methods(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path, content=b'{"value": 1}')
    body = _problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow
    assert method in body["detail"]
    assert reached == []


@pytest.mark.parametrize("method", ["GET", "TRACE", "PUT", "POST"])
def test_an_unknown_path_stays_404(client: TestClient, method: str) -> None:
    _problem(client.request(method, "/nowhere/at/all"), 404, "not_found")


# --- 415 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json; charset=latin-1",
    ],
)
@pytest.mark.parametrize("path", ["/things", "/things/7", "/raw"])
def test_a_json_body_route_refuses_other_media_types(
    client: TestClient, path: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    method = "PATCH" if path == "/things/7" else "POST"
    response = client.request(method, path, content=b'{"value": 1}', headers=headers)
    _problem(response, 415, "unsupported_media_type")
    assert reached == []  # changes nothing


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json; charset="UTF-8"',
        "application/merge-patch+json",
        "application/problem+json; charset=utf-8",
    ],
)
def test_json_media_types_are_accepted(client: TestClient, content_type: str) -> None:
    assert is_json_media_type(content_type)
    response = client.post(
        "/things", content=b'{"value": 1}', headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    assert reached == ["create"]


def test_routes_without_a_body_need_no_content_type(client: TestClient) -> None:
    assert client.post("/things/7/copies").status_code == 200
    assert client.get("/things").status_code == 200
    assert client.delete("/things/7").status_code == 204


# --- 413 ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/things", "/raw"])
def test_a_body_over_the_limit_is_413(client: TestClient, path: str) -> None:
    fits = json.dumps({"value": "x" * (LIMIT - 20)}).encode()
    assert len(fits) <= LIMIT
    assert client.post(path, content=fits, headers={"content-type": "application/json"}).is_success
    over = json.dumps({"value": "x" * LIMIT}).encode()
    response = client.post(path, content=over, headers={"content-type": "application/json"})
    assert _problem(response, 413, "payload_too_large")["maximum"] == LIMIT
    assert reached == [path.strip("/").replace("things", "create")]


def test_the_body_limit_defaults_to_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from creditml.settings import reset_settings

    monkeypatch.setenv("MAX_REQUEST_BYTES", "100")
    reset_settings()
    try:
        client = TestClient(create_app(router))
        response = client.post("/raw", json={"value": "x" * 100})
        assert _problem(response, 413, "payload_too_large")["maximum"] == 100
    finally:
        monkeypatch.delenv("MAX_REQUEST_BYTES")
        reset_settings()


# --- nesting depth --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/things", "/raw"])
def test_sixty_thousand_open_brackets_are_refused_not_a_500(client: TestClient, path: str) -> None:
    # 60 KB: under both size limits of the default settings (a declared model's body and a
    # self-parsed one), deep enough to exhaust the parser's recursion.
    client = TestClient(create_app(router), raise_server_exceptions=False)
    response = client.post(
        path, content=b"[" * 60_000, headers={"content-type": "application/json"}
    )
    assert _problem(response, 422, "nesting_too_deep")["maximum"] == MAX_JSON_DEPTH
    assert reached == []


def test_nesting_up_to_the_limit_passes_and_one_more_level_is_refused(client: TestClient) -> None:
    inner = _nested(MAX_JSON_DEPTH - 1)  # inside {"value": ...}: depth MAX_JSON_DEPTH
    body = b'{"value": ' + inner + b"}"
    response = client.post("/things", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    deeper = b'{"value": ' + _nested(MAX_JSON_DEPTH) + b"}"
    response = client.post("/things", content=deeper, headers={"content-type": "application/json"})
    _problem(response, 422, "nesting_too_deep")


def test_brackets_inside_strings_do_not_count(client: TestClient) -> None:
    value = "[" * 500 + '\\"{' * 500 + "\\\\"
    body = json.dumps({"value": [value, {"k[": "]]]"}]}).encode()
    response = client.post("/things", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b"12", 0),
        (b"[]", 1),
        (b'{"a": [1, [2, {"b": []}]], "c": {}}', 5),
        (b'["[[[", "\\"[[", {"x": "\\\\"}]', 2),
        (b'["\\\\", ["\\\\\\"]"]]', 2),
        (json.dumps({"inputs": [[0.5] * 30] * 1000}).encode(), 3),
        (json.dumps({"inputs": [{"a": 1, "b[": 2}] * 1000}).encode(), 3),
    ],
)
def test_json_depth_agrees_with_the_parser(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth
    if body:
        assert _parsed_depth(json.loads(body)) == depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [(b"[" * 100_000, 100_000), (b"[]" * 50_000, 1), (b'{"a": ]', 1), (b'"[[[', 3)],
)
def test_json_depth_of_malformed_bodies(body: bytes, depth: int) -> None:
    # Within the limit, the parser then refuses the body as malformed (400).
    assert json_depth(body) == depth


def _parsed_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_parsed_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_parsed_depth(item) for item in value.values()), default=0)
    return 0


def test_the_scan_stops_at_the_first_position_too_deep() -> None:
    # 6 MB of `[`: only the first chunk is summed, and the answer is already "too deep".
    deepest = json_depth(b"[" * (6 * 1024 * 1024), stop_above=MAX_JSON_DEPTH)
    assert MAX_JSON_DEPTH < deepest <= 64 * 1024
    assert json_depth(b"[]" * 100_000 + b"[[[]]]", stop_above=2) == 3


def test_the_scan_stops_where_the_parser_would_refuse_an_unopened_close() -> None:
    assert json_depth(b"][" * 1_000_000, stop_above=MAX_JSON_DEPTH) == 0


def test_declared_model_bodies_are_small_and_self_parsed_bodies_take_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an explicit limit, a route whose body is a declared model takes at most
    MAX_MODEL_BODY_BYTES (so a hostile body costs little to scan there), while a route that
    reads its own body (predictions) takes up to MAX_REQUEST_BYTES."""
    from creditml.api.app import MAX_MODEL_BODY_BYTES
    from creditml.settings import get_settings

    monkeypatch.setenv("MAX_REQUEST_BYTES", str(4 * MAX_MODEL_BODY_BYTES))
    get_settings.cache_clear()
    try:
        default = TestClient(create_app(router), raise_server_exceptions=False)
        big = json.dumps({"value": "x" * (2 * MAX_MODEL_BODY_BYTES)}).encode()
        headers = {"content-type": "application/json"}
        response = default.post("/things", content=big, headers=headers)
        assert _problem(response, 413, "payload_too_large")["maximum"] == MAX_MODEL_BODY_BYTES
        assert default.post("/raw", content=big, headers=headers).json() == {"bytes": len(big)}
        assert reached == ["raw"]
    finally:
        get_settings.cache_clear()
