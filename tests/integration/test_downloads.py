"""Downloads under moto through the models handler: owners free, others only at the model's
download price, once per (user, device, version), through the same ledger as predictions;
the sealed part opens only with the device's key and fingerprint, and with the big part
gives back exactly the uploaded file."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from creditml.auth.roles import Role
from creditml.billing.entries import EntryKind
from creditml.cli import main
from creditml.composition.core import ledger_repository
from creditml.devstack import runtime
from creditml.devstack.aws import REGION
from creditml.devstack.gateway import to_http_response
from creditml.devstack.streams import compile_filters, matches
from creditml.devstack.template import Template
from creditml.models.device_seal import (
    DeviceBinding,
    SealError,
    assemble,
    encode_public_key,
    open_for_device,
)
from creditml.settings import get_settings
from creditml.storage.usage import debit_from_image
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import (
    create_model,
    grant,
    model_file,
    publish,
    upload_and_register,
)
from tests.integration.test_usage import aggregate, stream_records, usage

MODELS = "ModelsFunction"
FINGERPRINT = hashlib.sha256(b"cpu=x86_64;board=1234;disk=abcd").hexdigest()
PRICE = 7


class Device:
    """A device as the client keeps it: its private key, fingerprint and registered id."""

    def __init__(self, api: Api, token: str, fingerprint: str = FINGERPRINT) -> None:
        self.key = X25519PrivateKey.generate()
        self.fingerprint = fingerprint
        body = {
            "name": "laptop",
            "public_key": encode_public_key(self.key.public_key().public_bytes_raw()),
            "fingerprint": fingerprint,
        }
        status, device = api.call(
            MODELS, with_body(load_event("devices_register", access_token=token), body)
        )
        assert status == 201, device
        self.id = str(device["id"])


def download_raw(
    api: Api,
    token: str,
    model_id: str,
    device_id: str,
    key: str | None = None,
    version: int | None = None,
) -> tuple[int, dict[str, str], Any]:
    body: dict[str, Any] = {"device_id": device_id}
    if version is not None:
        body["version"] = version
    event = load_event(
        "models_download",
        access_token=token,
        model_id=model_id,
        idempotency_key=key or str(uuid.uuid4()),
    )
    response = runtime.invoke(api._template.functions[MODELS], with_body(event, body))
    status, headers, raw = to_http_response(response)
    return status, dict(headers), json.loads(raw or b"null")


def download(api: Api, token: str, model_id: str, device_id: str, **kw: Any) -> tuple[int, Any]:
    status, _, body = download_raw(api, token, model_id, device_id, **kw)
    return status, body


def set_download_price(api: Api, token: str, model_id: str, price: int | None) -> dict[str, Any]:
    event = load_event("models_update", access_token=token, model_id=model_id)
    status, model = api.call(MODELS, with_body(event, {"download_price": price}))
    assert status == 200, model
    return dict(model)


def fetch_big(url: str) -> bytes:
    """What the presigned GET gives (read through the SDK: moto's in-process mock does not
    serve plain HTTP; the e2e tests download over HTTP)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert "X-Amz-Signature" in query, url
    assert query["X-Amz-Expires"] == ["300"]
    bucket = get_settings().models_bucket
    key = parts.path.lstrip("/").removeprefix(f"{bucket}/")
    s3 = boto3.client("s3", region_name=REGION)
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def opened(answer: dict[str, Any], device: Device, fingerprint: str | None = None) -> bytes:
    """The model file a device rebuilds from a download answer."""
    binding = DeviceBinding(
        answer["model_id"], answer["version"], device.id, fingerprint or device.fingerprint
    )
    secret = open_for_device(answer["sealed"], device.key, binding)
    return assemble(secret, fetch_big(answer["big_url"]), answer["model_id"], answer["version"])


@pytest.fixture
def owner(api: Api) -> dict[str, Any]:
    return register_and_login(api, "owner@example.com", role=Role.PUBLISHER)


@pytest.fixture
def buyer(api: Api) -> dict[str, Any]:
    person = register_and_login(api, "buyer@example.com")
    grant(api, person["id"], 100)
    return person


@pytest.fixture
def original() -> bytes:
    return model_file()


@pytest.fixture
def model_id(api: Api, owner: dict[str, Any], original: bytes) -> str:
    return publish(api, owner["access"], original)


def balance(user_id: str) -> int:
    return ledger_repository().balance(user_id)


def download_entries(user_id: str) -> list[Any]:
    return [
        entry
        for entry in ledger_repository().entries(user_id, 100, None)
        if entry.kind is EntryKind.DOWNLOAD
    ]


def test_the_owner_downloads_free_and_rebuilds_exactly_the_uploaded_file(
    api: Api, owner: dict[str, Any], model_id: str, original: bytes
) -> None:
    device = Device(api, owner["access"])
    status, answer = download(api, owner["access"], model_id, device.id)
    assert status == 200, answer
    assert answer["cost"] == 0
    assert answer["balance"] == 0
    assert answer["model_id"] == model_id
    assert answer["version"] == 1
    assert set(answer) == {
        "model_id", "version", "big_url", "big_sha256", "big_size", "sealed", "cost", "balance"
    }  # fmt: skip
    big = fetch_big(answer["big_url"])
    assert answer["big_size"] == len(big)
    assert answer["big_sha256"] == hashlib.sha256(big).hexdigest()
    assert opened(answer, device) == original
    assert download_entries(owner["id"]) == []


def test_another_devices_key_or_another_fingerprint_cannot_open_it(
    api: Api, owner: dict[str, Any], model_id: str
) -> None:
    device = Device(api, owner["access"])
    other = Device(api, owner["access"])
    answer = download(api, owner["access"], model_id, device.id)[1]
    with pytest.raises(SealError):  # the other device's key (with this device's binding)
        open_for_device(
            answer["sealed"], other.key, DeviceBinding(model_id, 1, device.id, FINGERPRINT)
        )
    with pytest.raises(SealError):  # other hardware
        opened(answer, device, fingerprint=hashlib.sha256(b"another machine").hexdigest())
    with pytest.raises(SealError):  # sealed to this device, claimed for the other
        open_for_device(
            answer["sealed"], device.key, DeviceBinding(model_id, 1, other.id, FINGERPRINT)
        )


def test_others_are_refused_until_a_download_price_is_set_then_pay_once_per_device_and_version(
    api: Api, owner: dict[str, Any], buyer: dict[str, Any], model_id: str, original: bytes
) -> None:
    laptop, desktop = Device(api, buyer["access"]), Device(api, buyer["access"])
    # Not downloadable by others by default
    status, problem = download(api, buyer["access"], model_id, laptop.id)
    assert (status, problem["code"]) == (403, "download_not_allowed")
    shown = api.call(
        MODELS, load_event("models_get", access_token=buyer["access"], model_id=model_id)
    )
    assert shown[1]["download_price"] is None
    assert set_download_price(api, owner["access"], model_id, PRICE)["download_price"] == PRICE

    # When the buyer downloads to one device, they pay once
    status, first = download(api, buyer["access"], model_id, laptop.id)
    assert status == 200, first
    assert (first["cost"], first["balance"]) == (PRICE, 100 - PRICE)
    assert opened(first, laptop) == original
    # a repeat for the same device and version costs nothing (another key)
    status, again = download(api, buyer["access"], model_id, laptop.id, version=1)
    assert (status, again["cost"], again["balance"]) == (200, 0, 100 - PRICE)
    assert opened(again, laptop) == original
    # another device pays again
    status, other = download(api, buyer["access"], model_id, desktop.id)
    assert (status, other["cost"], other["balance"]) == (200, PRICE, 100 - 2 * PRICE)

    entries = download_entries(buyer["id"])
    assert sorted(e.details["device_id"] for e in entries) == sorted([laptop.id, desktop.id])
    assert {(e.amount, e.details["model_id"], e.details["version"]) for e in entries} == {
        (-PRICE, model_id, 1)
    }
    assert balance(buyer["id"]) == 100 - 2 * PRICE
    assert main(["ledger", "verify"]) == 0

    # Setting the price back to null stops new sales, not what was bought
    assert set_download_price(api, owner["access"], model_id, None)["download_price"] is None
    assert download(api, buyer["access"], model_id, laptop.id)[1]["cost"] == 0
    third = Device(api, buyer["access"])
    assert download(api, buyer["access"], model_id, third.id)[1]["code"] == "download_not_allowed"


def test_a_new_version_is_bought_again(
    api: Api, owner: dict[str, Any], buyer: dict[str, Any], model_id: str
) -> None:
    set_download_price(api, owner["access"], model_id, PRICE)
    laptop = Device(api, buyer["access"])
    assert download(api, buyer["access"], model_id, laptop.id)[1]["cost"] == PRICE
    event = load_event("models_new_version", access_token=owner["access"], model_id=model_id)
    status, created = api.call(MODELS, event)
    assert status == 201, created
    upload_and_register(api, model_id, 2, model_file(), created["upload"]["fields"])
    status, second = download(api, buyer["access"], model_id, laptop.id)
    assert (status, second["version"], second["cost"]) == (200, 2, PRICE)
    assert download(api, buyer["access"], model_id, laptop.id, version=1)[1]["cost"] == 0


def test_insufficient_credits_is_402_and_changes_nothing(
    api: Api, owner: dict[str, Any], model_id: str
) -> None:
    poor = register_and_login(api, "poor@example.com")
    grant(api, poor["id"], PRICE - 1)
    set_download_price(api, owner["access"], model_id, PRICE)
    laptop = Device(api, poor["access"])
    status, problem = download(api, poor["access"], model_id, laptop.id)
    assert status == 402
    assert (problem["code"], problem["balance"], problem["required"]) == (
        "insufficient_credits",
        PRICE - 1,
        PRICE,
    )
    assert balance(poor["id"]) == PRICE - 1
    assert download_entries(poor["id"]) == []
    # Not bought: with credits, the same download is charged
    grant(api, poor["id"], 1)
    assert download(api, poor["access"], model_id, laptop.id)[1]["cost"] == PRICE
    assert main(["ledger", "verify"]) == 0


def test_the_same_key_replays_and_the_same_key_with_another_body_is_refused(
    api: Api, owner: dict[str, Any], buyer: dict[str, Any], model_id: str, original: bytes
) -> None:
    set_download_price(api, owner["access"], model_id, PRICE)
    laptop, desktop = Device(api, buyer["access"]), Device(api, buyer["access"])
    key = str(uuid.uuid4())
    status, headers, first = download_raw(api, buyer["access"], model_id, laptop.id, key=key)
    assert status == 200
    assert "idempotent-replayed" not in {h.lower() for h in headers}
    status, headers, replay = download_raw(api, buyer["access"], model_id, laptop.id, key=key)
    assert status == 200
    assert {k.lower(): v for k, v in headers.items()}["idempotent-replayed"] == "true"
    assert (replay["cost"], replay["balance"]) == (first["cost"], first["balance"])
    assert opened(replay, laptop) == original  # sealed afresh, to the same device
    assert len(download_entries(buyer["id"])) == 1
    status, problem = download(api, buyer["access"], model_id, desktop.id, key=key)
    assert (status, problem["code"]) == (409, "idempotency_key_reused")
    assert balance(buyer["id"]) == 100 - PRICE


def test_a_device_of_another_user_or_unknown_is_404(
    api: Api, owner: dict[str, Any], buyer: dict[str, Any], model_id: str
) -> None:
    theirs = Device(api, buyer["access"])
    for device_id in (theirs.id, str(uuid.uuid4())):
        status, problem = download(api, owner["access"], model_id, device_id)
        assert (status, problem["code"]) == (404, "device_not_found")


def test_versions_must_exist_and_be_ready(
    api: Api, owner: dict[str, Any], buyer: dict[str, Any], model_id: str
) -> None:
    mine = Device(api, owner["access"])
    status, problem = download(api, owner["access"], model_id, mine.id, version=9)
    assert (status, problem["code"]) == (404, "version_not_found")
    api.call(
        MODELS, load_event("models_new_version", access_token=owner["access"], model_id=model_id)
    )
    status, problem = download(api, owner["access"], model_id, mine.id, version=2)
    assert (status, problem["code"]) == (409, "version_not_ready")
    # A model that never served does not exist for others
    status, pending = create_model(api, owner["access"], {"name": "wip", "price": 1})
    theirs = Device(api, buyer["access"])
    status, problem = download(api, buyer["access"], pending["model_id"], theirs.id)
    assert (status, problem["code"]) == (404, "model_not_found")


def test_downloads_are_not_predictions_in_usage_reports_or_history(
    api: Api, owner: dict[str, Any], buyer: dict[str, Any], model_id: str, template: Template
) -> None:
    set_download_price(api, owner["access"], model_id, PRICE)
    assert download(api, buyer["access"], model_id, Device(api, buyer["access"]).id)[0] == 200

    records = stream_records()
    inserted = [r for r in records if r["eventName"] == "INSERT"]
    kinds = [r["dynamodb"]["NewImage"].get("kind", {}).get("S") for r in inserted]
    assert "download" in kinds
    # The aggregator's event source filter lets no download (nor the purchase claim) through
    spec = template.functions["UsageAggregatorFunction"]
    stream_event = next(e for e in spec.events.values() if e.get("Type") == "DynamoDB")
    filters = compile_filters(stream_event["Properties"]["FilterCriteria"], "aggregator")
    wired = json.loads(json.dumps(inserted, default=str))
    assert not any(matches(f, r) for f in filters for r in wired)
    # and the aggregator itself counts none of them, if it ever saw them
    assert all(debit_from_image(r["dynamodb"]["NewImage"]) is None for r in wired)
    assert aggregate(api, records) == {"batchItemFailures": []}
    status, report = usage(api, buyer["access"])
    assert status == 200, report
    assert report["totals"]["predictions"] == 0
    assert report["totals"]["credits"] == 0
    # nor the daily report's ledger scan, nor the prediction history
    day = ledger_repository().debits_on(datetime.now(UTC).date())
    assert model_id not in day.tallies
    status, history = api.call(
        "PredictFunction", load_event("predictions_list", access_token=buyer["access"])
    )
    assert (status, history["items"]) == (200, [])
    # while the ledger page lists it, and the books balance
    status, page = api.call(
        "BillingFunction", load_event("billing_transactions", access_token=buyer["access"])
    )
    assert page["items"][0]["kind"] == "download"
    assert page["items"][0]["details"]["model_id"] == model_id
    assert main(["ledger", "verify"]) == 0


def test_a_version_stored_before_big_parts_were_hashed_is_hashed_once(
    api: Api, owner: dict[str, Any], model_id: str, original: bytes
) -> None:
    table = boto3.client("dynamodb", region_name=REGION)
    key = {"model_id": {"S": model_id}, "version": {"N": "1"}}
    parts_table = get_settings().model_parts_table
    table.update_item(TableName=parts_table, Key=key, UpdateExpression="REMOVE big_sha256")
    device = Device(api, owner["access"])
    status, answer = download(api, owner["access"], model_id, device.id)
    assert status == 200, answer
    assert opened(answer, device) == original
    stored = table.get_item(TableName=parts_table, Key=key)["Item"]
    assert stored["big_sha256"]["S"] == answer["big_sha256"]


def test_admins_download_free_by_their_stored_role_not_a_remembered_one(
    api: Api, model_id: str
) -> None:
    """An admin's API key is remembered with its role for up to 60 s; the free download
    reads the role stored now, so a demoted admin stops downloading free at once."""
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    grant(api, admin["id"], 50)
    event = with_body(load_event("api_keys_create", access_token=admin["access"]), {"name": "ci"})
    status, created = api.call("AuthFunction", event)
    assert status == 201, created
    key = created["key"]
    device = Device(api, key)
    status, answer = download(api, key, model_id, device.id)
    assert (status, answer["cost"]) == (200, 0)
    from creditml.storage.users import UserRepository

    UserRepository(get_settings().users_table).set_role(admin["id"], Role.USER)
    status, refused = download(api, key, model_id, device.id)  # the key's cache still says admin
    assert (status, refused["code"]) == (403, "download_not_allowed")
    assert balance(admin["id"]) == 50
