"""The web UI's publish page posts the file from the browser straight to the presigned POST:
on the running local stack, the uploads bucket answers the page's origin (the gateway's) as
S3 answers a browser, and no other origin."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

from tests.e2e.conftest import RunningStack, bearer, new_account

EVIL = "https://evil.example"


def _model_file() -> bytes:
    rows = np.random.default_rng(5).normal(size=(40, 3))
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(rows, rows[:, 0] > 0), buffer)
    return buffer.getvalue()


def _create(http: httpx.Client, token: str) -> dict[str, Any]:
    created = http.post("/models", json={"name": "cors", "price": 1}, headers=bearer(token))
    assert created.status_code == 201, created.text
    return dict(created.json())


def _preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}, timeout=30
    )


def _post(upload: dict[str, Any], origin: str) -> httpx.Response:
    return httpx.post(
        upload["url"],
        data=upload["fields"],
        files={"file": ("model.joblib", _model_file())},
        headers={"Origin": origin},
        timeout=60,
    )


def _settled_status(http: httpx.Client, token: str, model_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = str(http.get(f"/models/{model_id}", headers=bearer(token)).json()["status"])
        if status != "pending" or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_the_page_posts_the_file_to_the_bucket_cross_origin(
    http: httpx.Client, stack: RunningStack
) -> None:
    publisher = new_account(http, role="publisher", prefix="pub")
    created = _create(http, publisher.token)
    page = stack.url  # the web UI shares the API's origin
    for origin in (page, page.replace("127.0.0.1", "localhost")):
        preflight = _preflight(created["upload"]["url"], origin)
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == origin
        assert preflight.headers["access-control-allow-methods"] == "POST"
    posted = _post(created["upload"], page)
    assert posted.status_code == 204, posted.text
    assert posted.headers["access-control-allow-origin"] == page
    assert "Origin" in posted.headers["vary"]
    # The upload registers as any other: the page then shows the model turning ready.
    assert _settled_status(http, publisher.token, created["model_id"]) == "ready"


def test_another_origin_gets_no_cors_grant(http: httpx.Client) -> None:
    publisher = new_account(http, role="publisher", prefix="pub")
    upload = _create(http, publisher.token)["upload"]
    refused = _preflight(upload["url"], EVIL)
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    # S3 stores what a valid presigned form sends (the policy is the guard, not CORS), but
    # the answer grants the foreign page nothing to read.
    posted = _post(upload, EVIL)
    assert posted.status_code == 204, posted.text
    assert "access-control-allow-origin" not in posted.headers
