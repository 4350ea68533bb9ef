"""The layer's pinned requirements and pyproject's ranges describe the same dependencies."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement

from tests.conftest import ROOT


def _pins() -> dict[str, Requirement]:
    lines = (ROOT / "layers" / "common" / "requirements.txt").read_text().splitlines()
    requirements = [
        Requirement(line) for line in lines if line.strip() and not line.startswith("#")
    ]
    return {requirement.name.lower(): requirement for requirement in requirements}


def _ranges() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {requirement.name.lower(): requirement for requirement in requirements}


def test_same_packages_on_both_sides() -> None:
    assert set(_pins()) == set(_ranges())


def test_every_pin_is_exact_and_inside_the_declared_range() -> None:
    ranges = _ranges()
    for name, pin in _pins().items():
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{name} is not pinned exactly"
        assert ranges[name].specifier.contains(spec.version), f"{name} {spec.version}"
        assert pin.extras == ranges[name].extras, f"{name} extras differ"


def test_layer_carries_no_ml_or_test_libraries() -> None:
    assert not {"scikit-learn", "numpy", "scipy", "joblib", "moto", "pytest"} & set(_pins())
