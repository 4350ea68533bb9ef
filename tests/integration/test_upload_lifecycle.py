"""Every upload ends `ready`, `rejected` (with a reason) or `expired`, never stuck `pending`;
and only the upload a version issued (its token) can register it. Real handlers under moto."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from creditml.auth.roles import Role
from creditml.composition.models import model_repository, uploads
from creditml.composition.registration import data_keys, model_parts
from creditml.devstack import runtime
from creditml.devstack.template import Template
from creditml.models.registration import FAILED_REASON, Outcome, Registrar
from creditml.models.schema import ModelSchema
from creditml.models.service import upload_key
from creditml.settings import get_settings
from creditml.storage.model_parts import TOKEN_FIELD, Uploads
from creditml.storage.models import version_sk
from tests.conftest import load_event
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import create_model, deliver, model_file, upload_and_register
from tests.integration.test_import_guard import HEAVY, PROBE

MODELS = "ModelsFunction"


@pytest.fixture
def publisher(api: Api) -> dict[str, Any]:
    return register_and_login(api, "pub@example.com", role=Role.PUBLISHER)


def _get(api: Api, token: str, model_id: str) -> dict[str, Any]:
    status, body = api.call(MODELS, load_event("models_get", access_token=token, model_id=model_id))
    assert status == 200, body
    return dict(body)


def _listed(api: Api, token: str, model_id: str) -> dict[str, Any]:
    status, body = api.call(MODELS, load_event("models_list", access_token=token))
    assert status == 200, body
    return next(item for item in body["items"] if item["id"] == model_id)


def _version_item(model_id: str, version: int = 1) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(
        TableName=get_settings().models_table,
        Key={"model_id": {"S": model_id}, "sk": {"S": version_sk(version)}},
        ConsistentRead=True,
    )["Item"]
    return dict(item)


def _uploads_left() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=get_settings().uploads_bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def _put(model_id: str, data: bytes, fields: dict[str, str] | None, version: int = 1) -> str:
    key = upload_key(model_id, version)
    Uploads(get_settings().uploads_bucket).put(key, data, fields)
    return key


def _pass_deadline(model_id: str, version: int = 1) -> None:
    """Move a pending version's upload deadline into the past (as time passing would)."""
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
    boto3.client("dynamodb").update_item(
        TableName=get_settings().models_table,
        Key={"model_id": {"S": model_id}, "sk": {"S": version_sk(version)}},
        UpdateExpression="SET upload_deadline = :past",
        ExpressionAttributeValues={":past": {"S": past}},
    )


def _sweep(api: Api) -> dict[str, Any]:
    spec = api._template.functions["ExpireUploadsFunction"]
    result: dict[str, Any] = runtime.invoke(spec, load_event("expire_uploads"))
    return result


# Item 3: no outcome is `pending`.


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "the file is empty"), (model_file()[:200], "truncated")],
    ids=["empty", "truncated"],
)
def test_empty_and_truncated_files_are_rejected_with_a_reason(
    api: Api, publisher: dict[str, Any], data: bytes, reason: str
) -> None:
    created = create_model(api, publisher["access"])[1]
    result = upload_and_register(api, created["model_id"], 1, data, created["upload"]["fields"])
    assert result["registrations"][0]["outcome"] == "rejected"
    model = _get(api, publisher["access"], created["model_id"])
    assert model["status"] == "rejected"
    assert reason in model["reason"]
    assert _uploads_left() == []


class _Unexpected(Exception):
    pass


def _failing_registrar(error: Exception) -> Registrar:
    def vet(data: bytes) -> ModelSchema:
        raise error

    return Registrar(
        models=model_repository(),
        parts=model_parts(),
        uploads=uploads(),
        keys=data_keys(),
        vet=vet,
        small_size_kb=3,
        max_bytes=get_settings().max_model_bytes,
        max_attempts=3,
    )


def test_an_unexpected_error_is_retried_then_rejected_without_internals(
    api: Api, publisher: dict[str, Any]
) -> None:
    # Given a registrar whose vetting fails in a way that is not a rejection
    registrar = _failing_registrar(_Unexpected("/opt/python/secret.py line 7: boom"))
    created = create_model(api, publisher["access"])[1]
    model_id = created["model_id"]
    key = _put(model_id, model_file(), created["upload"]["fields"])
    # When the event source delivers the upload: the first two attempts raise (so it
    # retries), each counted on the version, which stays pending meanwhile
    for attempt in (1, 2):
        with pytest.raises(_Unexpected):
            registrar.register(key)
        assert _version_item(model_id)["attempts"] == {"N": str(attempt)}
        assert _get(api, publisher["access"], model_id)["status"] == "pending"
    # Then the last attempt rejects it with a reason that names nothing internal
    registration = registrar.register(key)
    assert (registration.outcome, registration.reason) == (Outcome.REJECTED, FAILED_REASON)
    model = _get(api, publisher["access"], model_id)
    assert (model["status"], model["reason"]) == ("rejected", FAILED_REASON)
    assert "boom" not in json.dumps(model)
    assert "secret" not in json.dumps(model)
    assert _uploads_left() == []
    # And a further delivery of the same event changes nothing
    assert registrar.register(key).outcome is Outcome.ALREADY_DONE


def test_a_pending_version_past_its_deadline_shows_expired_before_and_after_the_sweep(
    api: Api, publisher: dict[str, Any]
) -> None:
    token = publisher["access"]
    lost = create_model(api, token, {"name": "lost", "price": 1})[1]["model_id"]
    waiting = create_model(api, token, {"name": "waiting", "price": 1})[1]["model_id"]
    _pass_deadline(lost)
    # Before any sweep: GET and the list say expired; a version still in time is pending
    shown = _get(api, token, lost)
    assert (shown["status"], shown["versions"][0]["status"]) == ("expired", "expired")
    assert shown["reason"]
    assert _listed(api, token, lost)["status"] == "expired"
    assert _get(api, token, waiting)["status"] == "pending"
    assert _version_item(lost)["status"] == {"S": "pending"}
    # The sweep records it (once), and leaves the version still in time alone
    assert _sweep(api) == {"expired": 1}
    assert _version_item(lost)["status"] == {"S": "expired"}
    assert "awaiting_upload" not in _version_item(lost)
    assert _sweep(api) == {"expired": 0}
    assert _get(api, token, lost)["status"] == "expired"
    assert _get(api, token, waiting)["status"] == "pending"


@pytest.mark.parametrize("swept", [True, False], ids=["after-sweep", "before-sweep"])
def test_a_late_upload_is_refused(api: Api, publisher: dict[str, Any], swept: bool) -> None:
    created = create_model(api, publisher["access"])[1]
    model_id = created["model_id"]
    _pass_deadline(model_id)
    if swept:
        _sweep(api)
    # moto accepts the expired POST (AWS would not); registration refuses what it brings
    key = _put(model_id, model_file(), created["upload"]["fields"])
    assert deliver(api, key)["registrations"][0]["outcome"] == "expired"
    assert _version_item(model_id)["status"] == {"S": "expired"}
    assert _get(api, publisher["access"], model_id)["status"] == "expired"
    assert _uploads_left() == []
    assert boto3.client("dynamodb").scan(TableName=get_settings().model_parts_table)["Count"] == 0


# Item 4: an upload registers only the version whose token it carries.


def test_the_presigned_post_carries_a_token_the_table_keeps_only_hashed(
    api: Api, publisher: dict[str, Any]
) -> None:
    created = create_model(api, publisher["access"])[1]
    fields = created["upload"]["fields"]
    token = fields[TOKEN_FIELD]
    assert len(token) >= 40
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {TOKEN_FIELD: token} in policy["conditions"]
    assert {"key": upload_key(created["model_id"], 1)} in policy["conditions"]
    table = boto3.client("dynamodb").scan(TableName=get_settings().models_table)["Items"]
    assert token not in json.dumps(table)
    assert "upload_token_hash" in _version_item(created["model_id"])
    # Each version gets a token of its own
    again = create_model(api, publisher["access"])[1]["upload"]["fields"][TOKEN_FIELD]
    assert again != token


@pytest.mark.parametrize("attacker_fields", ["own", "none"])
def test_an_upload_rewritten_to_another_publishers_key_is_ignored(
    api: Api, publisher: dict[str, Any], attacker_fields: str
) -> None:
    # Given a victim's pending version and an attacker (another publisher) with a form
    victim = create_model(api, publisher["access"], {"name": "victim", "price": 1})[1]
    attacker = register_and_login(api, "mallory@example.com", role=Role.PUBLISHER)
    own = create_model(api, attacker["access"], {"name": "decoy", "price": 1})[1]
    fields = own["upload"]["fields"] if attacker_fields == "own" else None
    # When the attacker uploads to the victim's key (moto ignores the POST policy)
    key = _put(victim["model_id"], b"garbage, not a model", fields)
    result = deliver(api, key)
    # Then registration ignores it: the victim's version stays pending, not rejected
    assert result["registrations"][0]["outcome"] == "ignored"
    model = _get(api, publisher["access"], victim["model_id"])
    assert (model["status"], model["reason"]) == ("pending", None)
    assert "attempts" not in _version_item(victim["model_id"])
    assert _uploads_left() == []
    # And the victim's own upload still registers
    again = upload_and_register(
        api, victim["model_id"], 1, model_file(), victim["upload"]["fields"]
    )
    assert again["registrations"][0]["outcome"] == "ready"
    # The attacker's own version was not touched either
    assert _get(api, attacker["access"], own["model_id"])["status"] == "pending"


def test_a_new_versions_token_is_its_own(api: Api, publisher: dict[str, Any]) -> None:
    created = create_model(api, publisher["access"])[1]
    model_id = created["model_id"]
    event = load_event("models_new_version", access_token=publisher["access"], model_id=model_id)
    status, second = api.call(MODELS, event)
    assert status == 201
    # Version 1's form does not register version 2, and the reverse
    key = _put(model_id, model_file(), created["upload"]["fields"], version=2)
    assert deliver(api, key)["registrations"][0]["outcome"] == "ignored"
    key = _put(model_id, model_file(), second["upload"]["fields"], version=1)
    assert deliver(api, key)["registrations"][0]["outcome"] == "ignored"
    result = upload_and_register(api, model_id, 2, model_file(), second["upload"]["fields"])
    assert result["registrations"][0]["outcome"] == "ready"


def test_the_sweep_function_loads_no_ml_libraries(template: Template) -> None:
    # It runs without the ML layer (template.yaml attaches none).
    path = template.functions["ExpireUploadsFunction"].module_path
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == ""
