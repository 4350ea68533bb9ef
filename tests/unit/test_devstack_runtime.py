"""Handlers run locally with the memory size and timeout template.yaml gives their function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from creditml.devstack.runtime import LambdaContext, invoke
from creditml.devstack.template import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_SECONDS,
    Template,
    TemplateError,
)
from tests.conftest import ROOT


class _Loader(yaml.SafeLoader):
    """Reads template.yaml's CloudFormation tags as plain values (only numbers matter here)."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _declared(name: str) -> dict[str, int]:
    """Each function's `name` as template.yaml spells it: its own, else the Globals'."""
    document: dict[str, Any] = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    default = document["Globals"]["Function"][name]
    return {
        logical_id: int(resource["Properties"].get(name, default))
        for logical_id, resource in document["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_gets_the_template_memory_and_timeout(template: Template) -> None:
    memory, timeout = _declared("MemorySize"), _declared("Timeout")
    assert set(template.functions) == set(memory)
    for logical_id, spec in template.functions.items():
        context = LambdaContext.for_function(spec)
        assert context.function_name == logical_id
        assert context.memory_limit_in_mb == memory[logical_id], logical_id
        assert context.timeout_seconds == timeout[logical_id], logical_id


def test_functions_that_override_globals_keep_their_own(template: Template) -> None:
    # The values the template sets today: a change there should be a deliberate one here.
    sizes = {
        logical_id: (spec.memory_mb, spec.timeout_seconds)
        for logical_id, spec in template.functions.items()
    }
    assert sizes["PredictFunction"] == (2048, 30)
    assert sizes["RegisterModelFunction"] == (3008, 300)
    assert sizes["DocsFunction"] == (256, 10)
    assert sizes["AuthFunction"] == (512, 10)


def _template(tmp_path: Path, text: str) -> Template:
    (tmp_path / "template.yaml").write_text(text, encoding="utf-8")
    return Template(tmp_path / "template.yaml")


def test_without_globals_lambda_defaults_apply(tmp_path: Path) -> None:
    template = _template(
        tmp_path,
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: fn/, Handler: app.handler}\n",
    )
    spec = template.functions["Fn"]
    assert (spec.memory_mb, spec.timeout_seconds) == (DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_SECONDS)


def test_a_parameter_reference_takes_its_default(tmp_path: Path) -> None:
    template = _template(
        tmp_path,
        "Parameters:\n  Memory: {Type: Number, Default: 1024}\n"
        "Globals:\n  Function: {MemorySize: !Ref Memory, Timeout: '20'}\n"
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: fn/, Handler: app.handler}\n",
    )
    spec = template.functions["Fn"]
    assert (spec.memory_mb, spec.timeout_seconds) == (1024, 20)


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5", "true"])
def test_a_size_that_is_not_a_positive_whole_number_is_refused(tmp_path: Path, value: str) -> None:
    template = _template(
        tmp_path,
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        f"    Properties: {{CodeUri: fn/, Handler: app.handler, MemorySize: {value}}}\n",
    )
    with pytest.raises(TemplateError, match="MemorySize"):
        _ = template.functions


def test_invoke_hands_the_handler_its_function_context(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(
        "def handler(event, context):\n"
        "    return {'memory': context.memory_limit_in_mb, 'timeout': context.timeout_seconds,\n"
        "            'left': context.get_remaining_time_in_millis(),\n"
        "            'name': context.function_name}\n",
        encoding="utf-8",
    )
    template = _template(
        tmp_path,
        "Globals:\n  Function: {MemorySize: 512, Timeout: 10}\n"
        "Resources:\n  SizedFunction:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: fn/, Handler: app.handler, MemorySize: 1769, Timeout: 42}\n",
    )
    answer = invoke(template.functions["SizedFunction"], {})
    assert answer["memory"] == 1769
    assert answer["timeout"] == 42
    assert 40_000 < answer["left"] <= 42_000
    assert answer["name"] == "SizedFunction"
