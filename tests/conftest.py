"""Fixtures and helpers shared by every test layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from creditml.devstack.template import Template

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


def load_event(name: str, **placeholders: str) -> dict[str, Any]:
    """An event from events/NAME.json with `<placeholder>` values filled in
    (keyword `access_token` fills `<access-token>`, and so on)."""
    text = (EVENTS / f"{name}.json").read_text(encoding="utf-8")
    for key, value in placeholders.items():
        # JSON-escaped, so any string (tabs, quotes, non-ASCII) lands in the event intact.
        text = text.replace(f"<{key.replace('_', '-')}>", json.dumps(value)[1:-1])
    event: dict[str, Any] = json.loads(text)
    return event


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """The same event with another JSON body (or raw text when `body` is a str)."""
    changed = dict(event)
    changed["body"] = body if isinstance(body, str) else json.dumps(body)
    return changed


@pytest.fixture(scope="session")
def template() -> Template:
    return Template(ROOT / "template.yaml")
