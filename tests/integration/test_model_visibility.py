"""No existence oracle: every route that takes a model id answers a model the caller may not
see (another publisher's pending, rejected, expired or archived model) exactly as it answers
an id that never existed. A model the caller may see but not change refuses writes with 403."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from creditml.auth.roles import Role
from tests.conftest import load_event
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import create_model, publish, upload_and_register
from tests.integration.test_upload_lifecycle import _pass_deadline

# (function, event) of every route that takes a model id.
ROUTES = {
    "GET /models/{id}": ("ModelsFunction", "models_get"),
    "PATCH /models/{id}": ("ModelsFunction", "models_update"),
    "DELETE /models/{id}": ("ModelsFunction", "models_archive"),
    "POST /models/{id}/versions": ("ModelsFunction", "models_new_version"),
    "POST /models/{id}/predictions": ("PredictFunction", "predictions_create"),
}
WRITES = {"PATCH /models/{id}", "DELETE /models/{id}", "POST /models/{id}/versions"}


def _pending(api: Api, owner: str) -> str:
    return str(create_model(api, owner, {"name": "wip", "price": 1})[1]["model_id"])


def _rejected(api: Api, owner: str) -> str:
    model_id = _pending(api, owner)
    assert upload_and_register(api, model_id, 1, b"")["registrations"][0]["outcome"] == "rejected"
    return model_id


def _expired(api: Api, owner: str) -> str:
    model_id = _pending(api, owner)
    _pass_deadline(model_id)
    return model_id


def _archived(api: Api, owner: str) -> str:
    model_id = publish(api, owner)
    event = load_event("models_archive", access_token=owner, model_id=model_id)
    assert api.call("ModelsFunction", event)[0] == 204
    return model_id


INVISIBLE: dict[str, Callable[[Api, str], str]] = {
    "pending": _pending,
    "rejected": _rejected,
    "expired": _expired,
    "archived": _archived,
}


def _answer(api: Api, route: str, token: str, model_id: str) -> tuple[int, Any]:
    function, event = ROUTES[route]
    filled = load_event(
        event, access_token=token, model_id=model_id, idempotency_key=str(uuid.uuid4())
    )
    return api.call(function, filled)


@pytest.fixture
def owner(api: Api) -> str:
    return str(register_and_login(api, "owner@example.com", role=Role.PUBLISHER)["access"])


@pytest.mark.parametrize("kind", list(INVISIBLE))
@pytest.mark.parametrize("route", list(ROUTES))
def test_an_invisible_model_is_answered_as_one_that_never_existed(
    api: Api, owner: str, route: str, kind: str
) -> None:
    # Given another publisher's model that a plain user and a publisher may not see
    hidden = INVISIBLE[kind](api, owner)
    for role in (Role.USER, Role.PUBLISHER):
        caller = register_and_login(api, f"{role}@example.com", role=role)["access"]
        # When the caller uses it on the route, and an id that never existed
        never = _answer(api, route, caller, str(uuid.uuid4()))
        answer = _answer(api, route, caller, hidden)
        # Then both answers are the same 404, body and all
        assert never[0] == 404, never
        assert answer == never, role


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_visible_model_of_another_refuses_writes_only(api: Api, owner: str, route: str) -> None:
    caller = register_and_login(api, "other@example.com", role=Role.PUBLISHER)["access"]
    model_id = publish(api, owner)
    status, body = _answer(api, route, caller, model_id)
    if route in WRITES:
        assert (status, body["code"]) == (403, "forbidden")
    else:  # the caller has no credits: the model exists for them, and costs
        assert status in (200, 402), body


def test_a_demoted_publisher_can_no_longer_write_with_the_token_they_hold(
    api: Api, owner: str
) -> None:
    from creditml.settings import get_settings
    from creditml.storage.users import UserRepository

    # Given a publisher with a ready model, demoted to user while their token says publisher
    publisher = register_and_login(api, "demoted@example.com", role=Role.PUBLISHER)
    model_id = publish(api, publisher["access"])
    UserRepository(get_settings().users_table).set_role(publisher["id"], Role.USER)
    # Then every write is refused, and reads still work
    for route in sorted(WRITES):
        status, body = _answer(api, route, publisher["access"], model_id)
        assert (status, body["code"]) == (403, "forbidden"), route
    status, created = create_model(api, publisher["access"])
    assert (status, created["code"]) == (403, "forbidden")
    assert _answer(api, "GET /models/{id}", publisher["access"], model_id)[0] == 200
