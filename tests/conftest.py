"""Fixtures and helpers shared by every test layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from creditml.devstack.events import fill_event
from creditml.devstack.template import Template

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str, **placeholders: str) -> dict[str, Any]:
    """An event from events/NAME.json with `<placeholder>` values filled in (keyword
    `access_token` fills `<access-token>`, and so on), by the substitution `creditml invoke`
    uses. An unknown placeholder or keyword is an error; placeholders given no keyword stay
    as they are (for events whose body the test replaces with `with_body`)."""
    text = (EVENTS / f"{name}.json").read_text(encoding="utf-8")
    values = {key.replace("_", "-"): value for key, value in placeholders.items()}
    return fill_event(text, values, leave_missing=True)


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """The same event with another JSON body (or raw text when `body` is a str)."""
    changed = dict(event)
    changed["body"] = body if isinstance(body, str) else json.dumps(body)
    return changed


@pytest.fixture(scope="session")
def template() -> Template:
    return Template(ROOT / "template.yaml")
