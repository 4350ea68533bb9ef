"""Typed errors with their fields, request shapes, listings and publishing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from creditml_client import (
    ApiError,
    Client,
    CreditMLError,
    Forbidden,
    InsufficientCredits,
    NotFound,
    PublishFailed,
    ValidationFailed,
)
from tests.client.fake_api import FakeApi, problem

pytestmark = pytest.mark.unit

UPLOAD_URL = "http://s3.test/uploads"


def test_402_is_insufficient_credits_with_balance_and_required(
    api: FakeApi, client: Client
) -> None:
    api.script(
        "POST /models/m1/predictions", problem(402, "insufficient_credits", balance=2, required=9)
    )

    with pytest.raises(InsufficientCredits) as caught:
        client.predict("m1", [[1.0]])

    error = caught.value
    assert (error.balance, error.required) == (2, 9)
    assert (error.status, error.code) == (402, "insufficient_credits")
    assert error.detail == "insufficient_credits happened"
    assert error.body["required"] == 9
    assert isinstance(error, ApiError)
    assert isinstance(error, CreditMLError)


def test_422_is_validation_failed_with_the_errors(api: FakeApi, client: Client) -> None:
    errors = [{"field": "body.inputs.0.1", "message": "not a number", "type": "invalid_input"}]
    api.script("POST /models/m1/predictions", problem(422, "validation_error", errors=errors))

    with pytest.raises(ValidationFailed) as caught:
        client.predict("m1", [[1.0, "x"]])

    assert caught.value.errors == errors
    assert caught.value.code == "validation_error"


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (404, "model_not_found", NotFound),
        (403, "forbidden", Forbidden),
        (409, "model_not_ready", ApiError),
    ],
)
def test_status_maps_to_its_error_type(
    api: FakeApi, client: Client, status: int, code: str, error_type: type[ApiError]
) -> None:
    api.script("GET /models/m1", problem(status, code))

    with pytest.raises(error_type) as caught:
        client.model("m1")

    assert type(caught.value) is error_type
    assert (caught.value.status, caught.value.code) == (status, code)


def test_an_error_without_a_problem_body_still_has_a_code(api: FakeApi, client: Client) -> None:
    api.script("GET /models/m1", httpx.Response(404, text="<html>gateway says no</html>"))

    with pytest.raises(NotFound) as caught:
        client.model("m1")

    assert caught.value.code == "http_404"
    assert caught.value.body == {}


def test_predict_sends_rows_and_accepts_anything_with_tolist(api: FakeApi, client: Client) -> None:
    class Array:
        def tolist(self) -> list[list[float]]:
            return [[5.1, 3.5, 1.4, 0.2]]

    api.script("POST /models/m1/predictions", httpx.Response(200, json={"prediction_id": "p"}))

    client.predict("m1", Array())

    assert json.loads(api.calls("POST /models/m1/predictions")[0].content) == {
        "inputs": [[5.1, 3.5, 1.4, 0.2]]
    }


def test_ids_cannot_escape_their_path_segment(api: FakeApi, client: Client) -> None:

    with pytest.raises(NotFound):
        client.model("../users/me")

    assert api.requests[-1].url.raw_path == b"/models/..%2Fusers%2Fme"


def test_models_follows_every_page(api: FakeApi, client: Client) -> None:
    api.script(
        "GET /models",
        httpx.Response(200, json={"items": [{"id": "a"}], "next_cursor": "c1"}),
        httpx.Response(200, json={"items": [{"id": "b"}], "next_cursor": None}),
    )

    assert [model["id"] for model in client.models()] == ["a", "b"]
    assert api.calls("GET /models")[1].url.params["cursor"] == "c1"


def test_usage_maps_from_underscore_and_drops_unset(api: FakeApi, client: Client) -> None:
    api.script("GET /reports/usage", httpx.Response(200, json={"items": []}))

    client.usage(from_="2026-01-01", to="2026-01-31", group_by="model", scope=None)

    assert dict(api.calls("GET /reports/usage")[0].url.params) == {
        "from": "2026-01-01",
        "to": "2026-01-31",
        "group_by": "model",
    }


def test_update_model_sends_an_explicit_null(api: FakeApi, client: Client) -> None:
    api.script("PATCH /models/m1", httpx.Response(200, json={"id": "m1"}))

    client.update_model("m1", download_price=None, price=4)

    assert json.loads(api.calls("PATCH /models/m1")[0].content) == {
        "download_price": None,
        "price": 4,
    }


def test_revoke_api_key_accepts_204(api: FakeApi, client: Client) -> None:
    api.script("DELETE /api-keys/k1", httpx.Response(204))

    assert client.revoke_api_key("k1") is None


# -- publish -------------------------------------------------------------------------


def _created(max_bytes: int = 10_000_000) -> httpx.Response:
    upload = {
        "url": UPLOAD_URL,
        "fields": {"key": "uploads/m1/1", "policy": "cG9saWN5"},
        "expires_in": 900,
        "max_bytes": max_bytes,
    }
    return httpx.Response(
        201, json={"model_id": "m1", "version": 1, "status": "pending", "upload": upload}
    )


def _model(status: str, reason: str | None = None) -> httpx.Response:
    version = {"version": 1, "status": status, "reason": reason}
    return httpx.Response(
        200, json={"id": "m1", "status": status, "reason": reason, "versions": [version]}
    )


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.joblib"
    path.write_bytes(bytes(range(256)) * 3000)  # 768,000 bytes: several chunks
    return path


def _s3_received(request: httpx.Request, received: dict[str, Any]) -> httpx.Response:
    received["content"] = request.content
    received["headers"] = request.headers
    return httpx.Response(204)


def test_publish_uploads_with_progress_and_waits_until_ready(
    api: FakeApi, client: Client, model_file: Path
) -> None:
    received: dict[str, Any] = {}
    api.script("POST /models", _created())
    api.script("POST /uploads", lambda request: _s3_received(request, received))
    api.script("GET /models/m1", _model("pending"), _model("pending"), _model("ready"))
    progress: list[tuple[int, int]] = []

    model = client.publish(
        "iris", model_file, 5, progress=lambda done, total: progress.append((done, total))
    )

    assert model["status"] == "ready"
    size = model_file.stat().st_size
    assert progress[-1] == (size, size)
    assert len(progress) > 2
    assert progress == sorted(progress)
    # The presigned POST: the form fields, then the file; no API credentials.
    headers, content = received["headers"], received["content"]
    assert "authorization" not in headers
    assert int(headers["content-length"]) == len(content)
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert (
        content.index(b'name="key"')
        < content.index(b'name="policy"')
        < content.index(b'name="file"')
    )
    assert model_file.read_bytes() in content
    assert json.loads(api.calls("POST /models")[0].content) == {"name": "iris", "price": 5}


def test_publish_raises_the_rejection_reason(
    api: FakeApi, client: Client, model_file: Path
) -> None:
    api.script("POST /models", _created())
    api.script("POST /uploads", httpx.Response(204))
    api.script("GET /models/m1", _model("rejected", "the file names os.system"))

    with pytest.raises(PublishFailed) as caught:
        client.publish("iris", model_file, 5)

    assert caught.value.code == "model_rejected"
    assert caught.value.detail == "the file names os.system"
    assert caught.value.model["status"] == "rejected"


def test_publish_gives_up_waiting_after_its_timeout(
    api: FakeApi, client: Client, model_file: Path
) -> None:
    api.script("POST /models", _created())
    api.script("POST /uploads", httpx.Response(204))
    api.script("GET /models/m1", *[_model("pending")] * 100)

    with pytest.raises(PublishFailed) as caught:
        client.publish("iris", model_file, 5, timeout=3)

    assert caught.value.code == "publish_timeout"


def test_publish_refuses_a_file_over_the_upload_limit(
    api: FakeApi, client: Client, model_file: Path
) -> None:
    api.script("POST /models", _created(max_bytes=1000))

    with pytest.raises(PublishFailed) as caught:
        client.publish("iris", model_file, 5)

    assert caught.value.code == "file_too_large"
    assert api.calls("POST /uploads") == []


def test_publish_reports_the_storage_error(api: FakeApi, client: Client, model_file: Path) -> None:
    api.script("POST /models", _created())
    xml = "<Error><Code>AccessDenied</Code><Message>Policy expired</Message></Error>"
    api.script("POST /uploads", httpx.Response(403, text=xml))

    with pytest.raises(PublishFailed) as caught:
        client.publish("iris", model_file, 5)

    assert (caught.value.status, caught.value.code, caught.value.detail) == (
        403,
        "upload_failed",
        "Policy expired",
    )


def test_publish_of_a_missing_file_creates_nothing(
    api: FakeApi, client: Client, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        client.publish("iris", tmp_path / "nope.joblib", 5)

    assert api.requests == []
