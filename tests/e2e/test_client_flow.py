"""The Python client against the local stack over real HTTP: publish, predict, device-bound
split downloads (paid once per device and version), and API keys (DESIGN §11)."""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sklearn.ensemble import RandomForestClassifier

from creditml_client import Client
from creditml_client._shared.device_seal import DeviceBinding, SealError, open_for_device
from creditml_client.errors import AuthenticationFailed, Forbidden, ModelLoadFailed
from tests.e2e.conftest import PASSWORD, RunningStack, new_account

pytestmark = pytest.mark.e2e

ROWS = np.random.default_rng(7).normal(size=(25, 4))
REVOCATION_SECONDS = 60  # DESIGN §11: a revoked key stops working within 60 seconds


class CountingTransport(httpx.BaseTransport):
    """A real HTTP transport that remembers every request it sent."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@dataclass
class Published:
    model_id: str
    original: Any
    file: Path
    owner_email: str


def _model_file(folder: Path) -> tuple[Any, Path]:
    features = np.random.default_rng(3).normal(size=(400, 4))
    labels = (features[:, 0] + features[:, 1] ** 2 > 0.5).astype(int)
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(features, labels)
    path = folder / "forest.joblib"
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    path.write_bytes(buffer.getvalue())
    return model, path


def _client(stack: RunningStack, email: str, folder: Path, **options: Any) -> Client:
    """A client with config and cache folders of its own (one "machine" per folder)."""
    return Client(
        stack.url,
        email=email,
        password=PASSWORD,
        config_dir=folder / "config",
        cache_dir=folder / "cache",
        **options,
    )


@pytest.fixture(scope="module")
def published(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """A forest published through the client by a fresh publisher."""
    folder = tmp_path_factory.mktemp("publisher")
    original, path = _model_file(folder)
    with stack.client() as http:
        publisher = new_account(http, role="publisher", prefix="client-pub")
    progress: list[tuple[int, int]] = []
    with _client(stack, publisher.email, folder) as client:
        model = client.publish(
            "client forest",
            path,
            price=2,
            description="published by the Python client",
            progress=lambda done, total: progress.append((done, total)),
        )
    assert model["status"] == "ready", model
    assert progress, "publish reported no progress"
    assert progress[-1][0] == progress[-1][1] >= path.stat().st_size
    return Published(str(model["id"]), original, path, publisher.email)


def test_a_user_predicts_with_the_client_and_gets_the_models_answers(
    stack: RunningStack, published: Published, tmp_path: Path
) -> None:
    with stack.client() as http:
        user = new_account(http, credits=100, prefix="client-user")
    with _client(stack, user.email, tmp_path) as client:
        receipt = client.predict(published.model_id, ROWS[:5].tolist())
        assert receipt["outputs"] == published.original.predict(ROWS[:5]).tolist()
        assert receipt["cost"] == 10
        assert client.balance() == 90
        history = client.predictions()
        assert [p["id"] for p in history["items"]] == [receipt["prediction_id"]]


def test_the_owner_downloads_to_a_device_and_gets_the_same_predictions(
    stack: RunningStack, published: Published, tmp_path: Path
) -> None:
    transport = CountingTransport()
    with _client(stack, published.owner_email, tmp_path, transport=transport) as client:
        client.register_device("owner laptop")
        first = client.download(published.model_id)
        assert first["cost"] == 0  # owners download their own models free
        assert first["cached"] is False
        big_gets = [r for r in transport.sent if not str(r.url).startswith(stack.url)]
        assert [r.method for r in big_gets] == ["GET"]  # the big part, once
        model = client.load_model(published.model_id)
        assert type(model) is type(published.original)
        assert np.array_equal(model.predict(ROWS), published.original.predict(ROWS))
        assert np.array_equal(model.predict_proba(ROWS), published.original.predict_proba(ROWS))
        # Later loads fetch only the sealed part: the big part comes from the cache
        sent_before = len(transport.sent)
        again = client.load_model(published.model_id)
        later = transport.sent[sent_before:]
        assert all(str(r.url).startswith(stack.url) for r in later), [str(r.url) for r in later]
        assert np.array_equal(again.predict(ROWS), published.original.predict(ROWS))
    cached = list((tmp_path / "cache").rglob(first["big_sha256"]))
    assert len(cached) == 1
    assert cached[0].stat().st_size == first["big_size"]


def test_the_sealed_part_opens_on_no_other_device_and_no_other_hardware(
    stack: RunningStack, published: Published, tmp_path: Path
) -> None:
    with _client(stack, published.owner_email, tmp_path) as client:
        device = client.register_device("owner desktop")
        answer = client.download(published.model_id)
    binding = DeviceBinding(published.model_id, int(answer["version"]), str(device["id"]), "0" * 64)
    # Another device's key cannot open it (whatever fingerprint it claims)
    with pytest.raises(SealError):
        open_for_device(answer["sealed"], X25519PrivateKey.generate(), binding)
    # The same device on changed hardware cannot either: the fingerprint enters the key
    other_hardware = {"machine_id": uuid.uuid4().hex, "machine": "x86_64", "cpu": "other"}
    with (
        _client(stack, published.owner_email, tmp_path, hardware=lambda: other_hardware) as moved,
        pytest.raises(ModelLoadFailed, match="does not open"),
    ):
        moved.load_model(published.model_id)
    # And back on the registered hardware it opens
    with _client(stack, published.owner_email, tmp_path) as client:
        assert client.load_model(published.model_id) is not None


def test_a_non_owner_pays_once_per_device_and_version_after_the_owner_sets_a_price(
    stack: RunningStack, published: Published, tmp_path: Path
) -> None:
    with stack.client() as http:
        buyer = new_account(http, credits=50, prefix="client-buyer")
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    with _client(stack, buyer.email, laptop) as client:
        client.register_device("laptop")
        # Not downloadable until its owner sets a download price
        with pytest.raises(Forbidden) as refused:
            client.download(published.model_id)
        assert refused.value.code == "download_not_allowed"
        assert client.balance() == 50
        with _client(stack, published.owner_email, tmp_path / "owner") as owner:
            assert owner.update_model(published.model_id, download_price=7)["download_price"] == 7
        paid = client.download(published.model_id)
        assert (paid["cost"], paid["balance"]) == (7, 43)
        again = client.download(published.model_id)  # same device and version: no charge
        assert again["cost"] == 0
        assert client.balance() == 43
        model = client.load_model(published.model_id)
        assert np.array_equal(model.predict(ROWS), published.original.predict(ROWS))
    with _client(stack, buyer.email, phone) as client:
        client.register_device("phone")
        other_device = client.download(published.model_id)  # another device pays again
        assert (other_device["cost"], other_device["balance"]) == (7, 36)
        kinds = [entry["kind"] for entry in client.transactions()["items"]]
        assert kinds.count("download") == 2, kinds


def test_an_api_key_works_and_stops_working_after_revocation(
    stack: RunningStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with stack.client() as http:
        user = new_account(http, credits=5, prefix="client-key")
    with _client(stack, user.email, tmp_path) as client:
        created = client.create_api_key("batch job")
        assert created["key"].startswith("cml_")
        listed = client.api_keys()
        assert [k["id"] for k in listed] == [created["id"]]
        assert "key" not in listed[0]
        with Client(stack.url, api_key=created["key"]) as program:
            assert program.balance() == 5
            assert program.me()["email"] == user.email
            client.revoke_api_key(created["id"])
            revoked_at = time.monotonic()
            while True:
                try:
                    program.balance()
                except AuthenticationFailed:
                    break
                assert time.monotonic() - revoked_at < REVOCATION_SECONDS + 5
                time.sleep(0.5)
        with capsys.disabled():
            print(f"\nAPI key refused {time.monotonic() - revoked_at:.1f} s after revocation")  # noqa: T201
        assert client.api_keys() == []
