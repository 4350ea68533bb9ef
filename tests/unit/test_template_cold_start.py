"""template.yaml's ColdStartMode: SnapStart by default, provisioned concurrency on the auth and
predict functions only when asked, and never both on one function."""

from __future__ import annotations

from typing import Any

import pytest

from creditml.devstack.template import NO_VALUE, Resolver, Template
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

PROVISIONED_FUNCTIONS = {"AuthFunction", "PredictFunction"}


def _resolved(mode: str | None) -> tuple[Any, dict[str, Any]]:
    """Globals' SnapStart and each function's ProvisionedConcurrencyConfig with ColdStartMode
    set to `mode` (None: the template's default)."""
    template = Template(ROOT / "template.yaml")
    if mode is not None:
        template.parameters["ColdStartMode"]["Default"] = mode
    resolver = Resolver(template, {}, {}, {})
    snapstart = resolver.resolve(template.document["Globals"]["Function"]["SnapStart"])
    provisioned = {
        name: resolver.resolve(resource["Properties"].get("ProvisionedConcurrencyConfig", {}))
        for name, resource in template.resources_of("AWS::Serverless::Function").items()
    }
    return snapstart, {
        name: value for name, value in provisioned.items() if value not in ({}, NO_VALUE)
    }


def test_default_is_snapstart_without_provisioned_concurrency() -> None:
    template = Template(ROOT / "template.yaml")
    assert template.parameters["ColdStartMode"]["Default"] == "snapstart"
    assert _resolved(None) == ({"ApplyOn": "PublishedVersions"}, {})


@pytest.mark.parametrize(
    ("mode", "apply_on", "provisioned"),
    [
        ("snapstart", "PublishedVersions", set()),
        ("provisioned", "None", PROVISIONED_FUNCTIONS),
        ("none", "None", set()),
    ],
)
def test_each_mode_enables_at_most_one_option(
    mode: str, apply_on: str, provisioned: set[str]
) -> None:
    snapstart, configs = _resolved(mode)
    assert snapstart == {"ApplyOn": apply_on}
    assert set(configs) == provisioned
    for config in configs.values():
        assert config == {"ProvisionedConcurrentExecutions": "1"}  # the parameter's default


def test_modes_are_exactly_the_allowed_values() -> None:
    parameter = Template(ROOT / "template.yaml").parameters["ColdStartMode"]
    assert sorted(parameter["AllowedValues"]) == ["none", "provisioned", "snapstart"]
