"""A publisher publishes from the browser (the file goes straight to the presigned POST) and
watches the model page turn ready or rejected; user input renders as text."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
from playwright.sync_api import Dialog, Page, expect
from sklearn.linear_model import LogisticRegression

from tests.e2e.conftest import bearer, new_account, post_upload

READY_WITHIN_MS = 60_000
SCRIPT_NAME = "<script>alert(1)</script>"


def _model_file(folder: Path) -> Path:
    rows = np.random.default_rng(7).normal(size=(60, 2))
    model = LogisticRegression().fit(rows, (rows[:, 0] + rows[:, 1] > 0).astype(int))
    path = folder / "model.joblib"
    joblib.dump(model, path)
    return path


def _publish(page: Page, name: str, file: Path) -> None:
    page.goto("/ui/publish")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Description", exact=True).fill("Two features, browser test")
    page.get_by_label("Price", exact=True).fill("3")
    page.get_by_label("File", exact=True).set_input_files(file)
    page.get_by_role("button", name="Publish", exact=True).click()
    page.wait_for_url(re.compile(r"/ui/models/[^/?#]+$"), timeout=30_000)


def test_a_published_model_becomes_ready(as_role: Callable[..., Page], tmp_path: Path) -> None:
    page = as_role("publisher")
    name = f"ui-ready-{uuid.uuid4().hex[:8]}"
    _publish(page, name, _model_file(tmp_path))
    status = page.get_by_test_id("model-status")
    expect(status).to_have_text(re.compile(r"\bready\b"), timeout=READY_WITHIN_MS)
    expect(page.get_by_text(name).first).to_be_visible()
    for feature in ("x0", "x1"):  # no feature names: x0, x1
        expect(page.get_by_label(feature, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Predict", exact=True)).to_be_visible()


def test_a_file_that_is_not_a_model_is_rejected_with_its_reason(
    as_role: Callable[..., Page], tmp_path: Path
) -> None:
    page = as_role("publisher")
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(np.random.default_rng(1).bytes(2048))
    _publish(page, f"ui-junk-{uuid.uuid4().hex[:8]}", junk)
    status = page.get_by_test_id("model-status")
    expect(status).to_have_text(re.compile(r"\brejected\b"), timeout=READY_WITHIN_MS)
    reason = page.get_by_test_id("model-status").inner_text().replace("rejected", "", 1)
    assert re.search(r"\w{3,}", reason), f"no reason next to 'rejected': {reason!r}"


def _wait_ready(http: httpx.Client, token: str, model_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model: dict[str, Any] = http.get(f"/models/{model_id}", headers=bearer(token)).json()
        if model["status"] != "pending":
            assert model["status"] == "ready", model
            return
        time.sleep(0.2)
    raise AssertionError(f"{model_id} still pending")


def _publish_by_api(http: httpx.Client, token: str, name: str, file: Path) -> str:
    created = http.post(
        "/models",
        json={"name": name, "description": name, "price": 1},
        headers=bearer(token),
    )
    assert created.status_code == 201, created.text
    upload = created.json()["upload"]
    post_upload(upload, file.read_bytes())
    model_id = str(created.json()["model_id"])
    _wait_ready(http, token, model_id)
    return model_id


def test_a_model_named_like_a_script_renders_as_text(
    as_role: Callable[..., Page], http: httpx.Client, tmp_path: Path
) -> None:
    token = new_account(http, role="publisher", prefix="ui-script").token
    model_id = _publish_by_api(http, token, SCRIPT_NAME, _model_file(tmp_path))
    dialogs: list[str] = []
    page = as_role("user")

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    for path in ("/ui/models", f"/ui/models/{model_id}", "/ui/usage"):
        page.goto(path)
        if path != "/ui/usage":
            expect(page.get_by_text(SCRIPT_NAME).first, path).to_be_visible()
    assert not dialogs, f"a script ran: {dialogs}"


def test_the_owner_uploads_a_version_changes_price_and_description_and_archives(
    as_role: Callable[..., Page], tmp_path: Path
) -> None:
    page = as_role("publisher")
    name = f"ui-manage-{uuid.uuid4().hex[:8]}"
    file = _model_file(tmp_path)
    _publish(page, name, file)
    expect(page.get_by_test_id("model-status")).to_have_text(
        re.compile(r"\bready\b"), timeout=READY_WITHIN_MS
    )
    page.get_by_label("New version", exact=True).set_input_files(file)
    page.get_by_role("button", name="Upload version", exact=True).click()
    versions = page.get_by_role("table").filter(has_text="Registered (UTC)")
    expect(versions.get_by_role("row")).to_have_count(3)  # a header and two versions
    expect(
        page.get_by_text("Version serving").locator("xpath=following-sibling::dd[1]")
    ).to_have_text("2", timeout=READY_WITHIN_MS)
    page.get_by_label("Price", exact=True).fill("7")
    page.get_by_role("button", name="Change price", exact=True).click()
    expect(page.get_by_text("7 credits per row")).to_be_visible()
    page.get_by_label("Description", exact=True).fill("Now with a better description")
    page.get_by_role("button", name="Save description", exact=True).click()
    expect(page.get_by_text("Now with a better description").first).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Archive", exact=True).click()
    expect(page.get_by_test_id("model-status")).to_have_text("archived")
