"""POST/GET/DELETE /devices under moto through the models handler: each user sees and
deletes only their own devices; keys and fingerprints are checked; a cap per user."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from creditml.composition import forget_components
from creditml.models.device_seal import encode_public_key
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login

MODELS = "ModelsFunction"
FINGERPRINT = hashlib.sha256(b"hardware facts").hexdigest()


def public_key() -> str:
    return encode_public_key(X25519PrivateKey.generate().public_key().public_bytes_raw())


def register(api: Api, token: str, **body: Any) -> tuple[int, Any]:
    sent = {"name": "laptop", "public_key": public_key(), "fingerprint": FINGERPRINT, **body}
    return api.call(MODELS, with_body(load_event("devices_register", access_token=token), sent))


def listed(api: Api, token: str) -> list[dict[str, Any]]:
    status, page = api.call(MODELS, load_event("devices_list", access_token=token))
    assert status == 200, page
    return list(page["items"])


def delete(api: Api, token: str, device_id: str) -> tuple[int, Any]:
    event = load_event("devices_delete", access_token=token)
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/devices/{device_id}"
    event["pathParameters"] = {"id": device_id}
    return api.call(MODELS, event)


@pytest.fixture
def alice(api: Api) -> str:
    return str(register_and_login(api, "alice@example.com")["access"])


@pytest.fixture
def bob(api: Api) -> str:
    return str(register_and_login(api, "bob@example.com")["access"])


def test_register_list_and_delete_own_devices(api: Api, alice: str, bob: str) -> None:
    status, device = register(api, alice, name="work laptop")
    assert status == 201, device
    # The answer keeps to what the contract names: no key, no fingerprint
    assert set(device) == {"id", "name", "created_at"}
    assert device["name"] == "work laptop"
    assert [d["id"] for d in listed(api, alice)] == [device["id"]]
    assert listed(api, bob) == []

    status, problem = delete(api, bob, device["id"])
    assert (status, problem["code"]) == (404, "device_not_found")
    assert delete(api, alice, device["id"])[0] == 204
    assert listed(api, alice) == []
    assert delete(api, alice, device["id"])[1]["code"] == "device_not_found"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("public_key", "not base64!"),
        ("public_key", encode_public_key(b"\x01" * 31)),  # 31 bytes
        ("fingerprint", FINGERPRINT.upper()),
        ("fingerprint", FINGERPRINT[:-1]),
        ("name", ""),
    ],
)
def test_bad_keys_fingerprints_and_names_are_422(
    api: Api, alice: str, field: str, value: str
) -> None:
    status, problem = register(api, alice, **{field: value})
    assert status == 422, problem
    assert problem["code"] == "validation_error"
    assert any(field in str(error["field"]) for error in problem["errors"])
    assert listed(api, alice) == []


def test_a_user_has_at_most_the_configured_number_of_devices(
    api: Api, alice: str, bob: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_DEVICES_PER_USER", "2")
    forget_components()
    assert register(api, alice)[0] == 201
    assert register(api, alice)[0] == 201
    status, problem = register(api, alice)
    assert (status, problem["code"], problem["maximum"]) == (409, "device_limit_reached", 2)
    assert register(api, bob)[0] == 201  # per user
    # Deleting one makes room again
    assert delete(api, alice, listed(api, alice)[0]["id"])[0] == 204
    assert register(api, alice)[0] == 201
