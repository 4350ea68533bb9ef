"""Placeholder substitution in event files (creditml.devstack.events): the part `creditml
invoke` and the tests' `load_event` share."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from creditml.devstack.events import (
    PLACEHOLDERS,
    PlaceholderError,
    StackValues,
    fill_event,
    placeholders_in,
)
from creditml.devstack.template import Template
from tests.conftest import EVENTS, load_event

AWKWARD = 'quote " backslash \\ tab \t newline \n é ✓ </> <model-id>'


def _event(**fields: Any) -> str:
    return json.dumps({"version": "2.0", **fields}, indent=2)


def test_values_land_intact_in_plain_strings_and_in_json_bodies() -> None:
    text = _event(
        rawPath="/models/<model-id>",
        headers={"authorization": "Bearer <access-token>"},
        body=json.dumps({"refresh_token": "<refresh-token>", "n": 1}),
    )
    event = fill_event(text, {"model-id": "m/1", "access-token": AWKWARD, "refresh-token": AWKWARD})
    assert event["rawPath"] == "/models/m/1"
    assert event["headers"]["authorization"] == f"Bearer {AWKWARD}"
    assert json.loads(event["body"]) == {"refresh_token": AWKWARD, "n": 1}


def test_a_value_is_not_searched_for_placeholders_again() -> None:
    event = fill_event(
        _event(rawPath="<model-id>/<prediction-id>"),
        {
            "model-id": "<prediction-id>",
            "prediction-id": "p",
        },
    )
    assert event["rawPath"] == "<prediction-id>/p"


def test_the_rest_of_a_body_keeps_its_bytes() -> None:
    body = '{"email":  "<new-email>",\n "password": "correct horse battery"}'
    event = fill_event(_event(body=body), {"new-email": "a@example.com"})
    assert event["body"] == body.replace("<new-email>", "a@example.com")


def test_unknown_placeholders_are_named() -> None:
    text = _event(rawPath="/models/<model-id>/<modle-id>/<nope>")
    with pytest.raises(PlaceholderError, match=re.escape("<modle-id>, <nope>")) as raised:
        fill_event(text, {"model-id": "m"})
    assert "<model-id>" not in str(raised.value).split(";")[0]
    with pytest.raises(PlaceholderError, match="<nope>"):
        placeholders_in(text)


def test_values_for_unknown_placeholders_are_refused(template: Template) -> None:
    with pytest.raises(PlaceholderError, match="<modle-id>"):
        fill_event(_event(rawPath="/models/<model-id>"), {"model-id": "m", "modle-id": "m"})
    with pytest.raises(PlaceholderError, match="<modle-id>"):
        StackValues(template, "a", "b", "c", given={"modle-id": "m"})


def test_missing_values_are_an_error_unless_asked_to_leave_them() -> None:
    text = _event(rawPath="/models/<model-id>", body='{"id": "<prediction-id>"}')
    with pytest.raises(PlaceholderError, match=re.escape("no value for <model-id>, <pred")):
        fill_event(text, {})
    left = fill_event(text, {"model-id": "m"}, leave_missing=True)
    assert (left["rawPath"], left["body"]) == ("/models/m", '{"id": "<prediction-id>"}')


def test_given_values_are_used_without_resolving(template: Template) -> None:
    values = StackValues(template, "a", "b", "c", given={"model-id": "given"})
    assert values.values_for(["model-id"]) == {"model-id": "given"}


def test_load_event_fills_by_keyword_and_refuses_unknown_keywords() -> None:
    event = load_event("predictions_get", access_token="t", prediction_id="p/1")
    assert event["pathParameters"] == {"id": "p/1"}
    assert event["headers"]["authorization"] == "Bearer t"
    with pytest.raises(PlaceholderError, match="<acess-token>"):
        load_event("users_me", acess_token="t")


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda path: path.stem)
def test_every_event_file_uses_known_placeholders_only(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    json.loads(text)  # placeholders sit inside strings: the file is JSON as it stands
    placeholders_in(text)


def test_the_events_readme_lists_every_placeholder() -> None:
    readme = (EVENTS / "README.md").read_text(encoding="utf-8")
    assert [name for name in PLACEHOLDERS if f"`<{name}>`" not in readme] == []
