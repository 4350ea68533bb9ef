"""Fixtures and helpers shared by every test layer."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
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


def benchmark_module(name: str) -> ModuleType:
    """benchmarks/NAME.py imported as a module (once per process): the benchmarks are
    scripts, not a package."""
    module_name = f"creditml_benchmarks_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def template() -> Template:
    return Template(ROOT / "template.yaml")
