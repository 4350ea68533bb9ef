"""Devices and device-bound downloads: keys kept 0600, big parts cached by SHA-256, the
sealed part opened only by this device's key and hardware, and the allowlist on load."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from creditml_client import (
    Client,
    DeviceNotRegistered,
    IntegrityFailed,
    ModelLoadFailed,
    fingerprint,
)
from creditml_client._shared import crypto, device_seal
from tests.client.conftest import FACTS
from tests.client.fake_api import FakeApi

pytestmark = pytest.mark.unit

BIG_URL = "http://s3.test/models/m1/1.big?X-Amz-Signature=secret"


class _Keys:
    """A data-key source standing in for KMS."""

    def __init__(self) -> None:
        self.key = os.urandom(32)

    def generate(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        return self.key, b"wrapped"

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        return self.key


class FakeDownloads:
    """POST /devices and POST /models/m1/downloads as the server does them, for a model
    file sealed with the real split-storage code."""

    def __init__(self, api: FakeApi, model_file: bytes) -> None:
        keys = _Keys()
        parts = crypto.seal(model_file, "m1", 1, keys, small_size_kb=1)
        self.big = parts.big
        self.secret = device_seal.DownloadSecret(
            small=parts.small,
            data_key=keys.key,
            nonce=parts.nonce,
            digest=parts.digest,
            big_sha256=hashlib.sha256(parts.big).hexdigest(),
            big_size=len(parts.big),
        )
        self.devices: dict[str, dict[str, Any]] = {}
        self.seal_to: bytes | None = None  # another public key, to simulate another device
        api.script("POST /devices", *[self.register] * 5)
        api.script("POST /models/m1/downloads", *[self.download] * 5)
        api.script("GET /models/m1/1.big", *[self.big_part] * 5)

    def register(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        device_id = f"d{len(self.devices) + 1}"
        self.devices[device_id] = body
        return httpx.Response(
            201, json={"id": device_id, "name": body["name"], "created_at": "2026-01-01T00:00:00Z"}
        )

    def download(self, request: httpx.Request) -> httpx.Response:
        device_id = json.loads(request.content)["device_id"]
        device = self.devices[device_id]
        public = self.seal_to or device_seal.decode_public_key(device["public_key"])
        binding = device_seal.DeviceBinding("m1", 1, device_id, device["fingerprint"])
        sealed = device_seal.seal_for_device(self.secret, public, binding)
        return httpx.Response(
            200,
            json={
                "model_id": "m1",
                "version": 1,
                "big_url": BIG_URL,
                "big_sha256": self.secret.big_sha256,
                "big_size": self.secret.big_size,
                "sealed": sealed,
                "cost": 0,
                "balance": 7,
            },
        )

    def big_part(self, request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers  # never the API's credentials
        return httpx.Response(200, content=self.big)


MODEL = {"coefficients": [0.5, -1.25, 3.0], "intercept": 0.1}


@pytest.fixture
def downloads(api: FakeApi) -> FakeDownloads:
    return FakeDownloads(api, pickle.dumps(MODEL, protocol=4))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_register_device_keeps_the_private_key_0600(
    api: FakeApi, client: Client, downloads: FakeDownloads, tmp_path: Path
) -> None:
    device = client.register_device("laptop")

    assert device["id"] == "d1"
    sent = downloads.devices["d1"]
    assert len(base64.b64decode(sent["public_key"])) == 32
    assert sent["fingerprint"] == fingerprint(FACTS)
    config = tmp_path / "config"
    [key_file] = (config / "keys").iterdir()
    [record] = (config / "devices").iterdir()
    assert _mode(key_file) == 0o600
    assert _mode(record) == 0o600
    assert _mode(config / "keys") == 0o700
    assert _mode(config / "devices") == 0o700
    assert _mode(config) == 0o700  # the folder made for them too, not only the last one
    assert b"PRIVATE KEY" in key_file.read_bytes()
    assert client.device() == {"id": "d1", "name": "laptop", "fingerprint": fingerprint(FACTS)}


def test_registering_again_replaces_the_device_and_its_key(
    api: FakeApi, client: Client, downloads: FakeDownloads, tmp_path: Path
) -> None:
    client.register_device("old")
    client.register_device("new")

    device = client.device()
    assert device is not None
    assert device["id"] == "d2"
    assert len(list((tmp_path / "config" / "keys").iterdir())) == 1
    # The replaced device is removed on the server too: its key is gone, it opens nothing
    assert [str(r.url).rsplit("/", 1)[1] for r in api.calls("DELETE /devices/d1")] == ["d1"]


def test_a_replaced_device_that_cannot_be_removed_does_not_fail_the_registration(
    api: FakeApi, client: Client, downloads: FakeDownloads
) -> None:
    client.register_device("old")
    api.script("DELETE /devices/d1", httpx.Response(404, json={"code": "device_not_found"}))
    assert client.register_device("new")["id"] == "d2"


def test_a_failed_registration_leaves_no_key(api: FakeApi, client: Client, tmp_path: Path) -> None:
    api.script(
        "POST /devices", httpx.Response(422, json={"code": "validation_error", "errors": []})
    )

    with pytest.raises(Exception, match="validation_error"):
        client.register_device("laptop")

    assert list((tmp_path / "config" / "keys").iterdir()) == []
    assert client.device() is None


def test_download_without_a_device_is_device_not_registered(api: FakeApi, client: Client) -> None:
    with pytest.raises(DeviceNotRegistered):
        client.download("m1")

    assert api.calls("POST /models/m1/downloads") == []


def test_download_caches_the_big_part_by_sha256(
    api: FakeApi, client: Client, downloads: FakeDownloads, tmp_path: Path
) -> None:
    client.register_device("laptop")
    progress: list[tuple[int, int]] = []

    first = client.download("m1", progress=lambda done, total: progress.append((done, total)))
    second = client.download("m1")

    big_path = tmp_path / "cache" / "big" / downloads.secret.big_sha256
    assert first["cached"] is False
    assert second["cached"] is True
    assert first["big_path"] == second["big_path"] == str(big_path)
    assert big_path.read_bytes() == downloads.big
    assert _mode(big_path) == 0o600
    assert len(api.calls("GET /models/m1/1.big")) == 1  # the second download did not fetch
    assert progress[-1] == (len(downloads.big), len(downloads.big))
    posts = api.calls("POST /models/m1/downloads")
    assert [json.loads(p.content) for p in posts] == [{"device_id": "d1"}] * 2
    assert len({p.headers["idempotency-key"] for p in posts}) == 2
    assert {"sealed", "cost", "balance", "big_sha256"} <= first.keys()


def test_a_big_part_with_other_bytes_is_refused_and_not_cached(
    api: FakeApi, client: Client, downloads: FakeDownloads, tmp_path: Path
) -> None:
    client.register_device("laptop")
    api.scripted["GET /models/m1/1.big"].clear()
    api.script("GET /models/m1/1.big", httpx.Response(200, content=b"x" * len(downloads.big)))

    with pytest.raises(IntegrityFailed):
        client.download("m1")

    assert list((tmp_path / "cache" / "big").iterdir()) == []


def test_load_model_opens_assembles_and_loads_through_the_allowlist(
    api: FakeApi, client: Client, downloads: FakeDownloads
) -> None:
    client.register_device("laptop")

    assert client.load_model("m1") == MODEL
    assert client.load_model("m1") == MODEL  # second time from the cached big part

    assert len(api.calls("GET /models/m1/1.big")) == 1
    assert len(api.calls("POST /models/m1/downloads")) == 2


def test_a_damaged_cached_big_part_is_fetched_again(
    api: FakeApi, client: Client, downloads: FakeDownloads, tmp_path: Path
) -> None:
    client.register_device("laptop")
    client.download("m1")
    cached = tmp_path / "cache" / "big" / downloads.secret.big_sha256
    cached.write_bytes(b"\0" * len(downloads.big))  # same size, other bytes

    assert client.load_model("m1") == MODEL
    assert cached.read_bytes() == downloads.big


def test_changed_hardware_cannot_open_the_download(
    make_client: Callable[..., Client], downloads: FakeDownloads
) -> None:
    facts = dict(FACTS)
    client = make_client(hardware=lambda: facts)
    client.register_device("laptop")
    facts["cpu"] = "Another CPU"  # the disk moved to another machine

    with pytest.raises(ModelLoadFailed, match="does not open on this device"):
        client.load_model("m1")


def test_another_devices_key_cannot_open_the_download(
    client: Client, downloads: FakeDownloads
) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    client.register_device("laptop")
    downloads.seal_to = X25519PrivateKey.generate().public_key().public_bytes_raw()

    with pytest.raises(ModelLoadFailed):
        client.load_model("m1")


class _Hostile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.remove, (str(self.target),))


def test_load_model_never_runs_what_the_allowlist_refuses(
    api: FakeApi, make_client: Callable[..., Client], tmp_path: Path
) -> None:
    marker = tmp_path / "still-here"
    marker.write_text("x")
    FakeDownloads(api, pickle.dumps(_Hostile(marker), protocol=4))
    client = make_client()
    client.register_device("laptop")

    with pytest.raises(ModelLoadFailed, match="refused"):
        client.load_model("m1")

    assert marker.exists()


def test_delete_device_forgets_the_remembered_one(
    api: FakeApi, client: Client, downloads: FakeDownloads, tmp_path: Path
) -> None:
    client.register_device("laptop")
    api.script("DELETE /devices/d1", httpx.Response(204))

    client.delete_device("d1")

    assert client.device() is None
    assert list((tmp_path / "config" / "keys").iterdir()) == []
    with pytest.raises(DeviceNotRegistered):
        client.download("m1")


def test_devices_are_remembered_per_user(
    api: FakeApi, make_client: Callable[..., Client], downloads: FakeDownloads
) -> None:
    make_client().register_device("laptop")
    other = make_client()
    api.script(
        "GET /users/me", httpx.Response(200, json={"id": "u2", "email": "o@b.c", "role": "user"})
    )

    assert other.device() is None
