"""Every failure becomes RFC 9457 problem details with a stable code (no sockets: the ASGI
app is driven in-process)."""

from typing import Annotated

import pytest
from fastapi import APIRouter, Body
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from creditml.api.app import create_app
from creditml.errors import EmailTaken, InsufficientCredits, LedgerBusy, RateLimited

router = APIRouter()


class Payload(BaseModel):
    amount: Annotated[int, Field(gt=0)]


@router.post("/echo")
def echo(body: Payload) -> Payload:
    return body


@router.get("/taken")
def taken() -> None:
    raise EmailTaken()


@router.get("/poor")
def poor() -> None:
    raise InsufficientCredits(balance=3, required=5)


@router.get("/busy")
def busy() -> None:
    raise LedgerBusy()


@router.get("/throttled")
def throttled() -> None:
    raise RateLimited(retry_after=7)


@router.get("/throttled-plainly")
def throttled_plainly() -> None:
    raise HTTPException(429)


@router.get("/boom")
def boom() -> None:
    raise RuntimeError("secret internal detail: db password hunter2")


@router.post("/raw")
def raw(body: Annotated[dict[str, int], Body()]) -> dict[str, int]:
    return body


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(router), raise_server_exceptions=False)


def _assert_problem(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    assert str(body["type"]).endswith(code)
    return body


def test_domain_error_maps_to_its_status_and_code(client: TestClient) -> None:
    _assert_problem(client.get("/taken"), 409, "email_taken")


def test_extra_members_reach_the_body(client: TestClient) -> None:
    body = _assert_problem(client.get("/poor"), 402, "insufficient_credits")
    assert (body["balance"], body["required"]) == (3, 5)


def test_validation_error_names_the_field(client: TestClient) -> None:
    body = _assert_problem(client.post("/echo", json={"amount": 0}), 422, "validation_error")
    assert body["errors"][0]["field"] == "body.amount"  # type: ignore[index]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/echo", content=b'{"amount": ', headers={"content-type": "application/json"}
    )
    _assert_problem(response, 400, "malformed_json")


def test_body_not_sent_as_json_is_415(client: TestClient) -> None:
    response = client.post(
        "/echo", content=b'{"amount": 1}', headers={"content-type": "text/plain"}
    )
    _assert_problem(response, 415, "unsupported_media_type")


def test_unknown_path_and_method_are_problems(client: TestClient) -> None:
    _assert_problem(client.get("/nowhere"), 404, "not_found")
    response = client.delete("/echo")
    _assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_unexpected_error_is_500_without_details(client: TestClient) -> None:
    response = client.get("/boom")
    body = _assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in str(body)


def test_service_unavailable_says_when_to_retry(client: TestClient) -> None:
    response = client.get("/busy")
    _assert_problem(response, 503, "ledger_busy")
    assert response.headers["retry-after"] == "1"
    # Only 503 carries it: a 402 must never look like a throttle.
    assert "retry-after" not in client.get("/poor").headers


def test_every_429_says_when_to_retry(client: TestClient) -> None:
    response = client.get("/throttled")
    assert _assert_problem(response, 429, "rate_limited")["retry_after"] == 7
    assert response.headers["retry-after"] == "7"
    response = client.get("/throttled-plainly")
    _assert_problem(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "1"
