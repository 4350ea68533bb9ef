"""The layers' pinned requirements and pyproject's ranges describe the same dependencies:
the common layer and [project] dependencies, the ML and ONNX layers and the [ml] extra."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.conftest import ROOT


def _pins(layer: str = "common") -> dict[str, Requirement]:
    lines = (ROOT / "layers" / layer / "requirements.txt").read_text().splitlines()
    requirements = [
        Requirement(line) for line in lines if line.strip() and not line.startswith("#")
    ]
    return {requirement.name.lower(): requirement for requirement in requirements}


def _ranges(extra: str | None = None) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = project["optional-dependencies"][extra] if extra else project["dependencies"]
    requirements = [Requirement(text) for text in texts]
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


def test_ml_and_onnx_layers_pin_the_ml_extra_exactly_and_inside_its_ranges() -> None:
    pins, ranges = _pins("ml") | _pins("onnx"), _ranges("ml")
    assert set(pins) == set(ranges)
    for name, pin in pins.items():
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{name} is not pinned exactly"
        assert ranges[name].specifier.contains(spec.version), f"{name} {spec.version}"


def test_joblib_below_1_6_is_excluded_everywhere() -> None:
    # joblib 1.5 read object arrays with a plain pickle.load, bypassing the allowlist
    # (tests/models/hostile.py: object_array_payload).
    allowed = SpecifierSet(str(_ranges("ml")["joblib"].specifier))
    assert not allowed.contains("1.5.3")
    assert allowed.contains(str(_pins("ml")["joblib"].specifier).removeprefix("=="))
    assert Version(version("joblib")) >= Version("1.6")


def test_the_installed_onnxruntime_is_the_pinned_one() -> None:
    # Exactness is measured per ONNX Runtime release (docs/DECISIONS.md): the tests must run
    # the very version the layer ships.
    (spec,) = _pins("onnx")["onnxruntime"].specifier
    assert version("onnxruntime") == spec.version
