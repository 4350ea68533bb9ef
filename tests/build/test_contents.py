"""The build ships what the functions run on and nothing else (layers/Makefile's intent):
the layers' pinned requirements, the repository's own code, no developer tooling or tests."""

from __future__ import annotations

import importlib.metadata
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.build.conftest import Build, files_under, source_function_names, source_template
from tests.conftest import ROOT

# The Lambda runtime ships the AWS SDK, so layers/Makefile deletes it from the common layer.
AWS_SDK = frozenset({"boto3", "botocore", "s3transfer"})
LAYERS = ("CommonLayer", "MlLayer", "OnnxLayer")
REQUIREMENTS = {
    "CommonLayer": ROOT / "layers" / "common" / "requirements.txt",
    "MlLayer": ROOT / "layers" / "ml" / "requirements.txt",
    "OnnxLayer": ROOT / "layers" / "onnx" / "requirements.txt",
}


def _extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {
        group: [Requirement(text) for text in texts if Requirement(text).name != project["name"]]
        for group, texts in groups.items()
    }


def closure(requirements: Iterable[Requirement]) -> set[str]:
    """Every distribution `requirements` pull in, by the installed (dev venv) metadata."""
    found: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    queue = list(requirements)
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in visited:
            continue
        visited.add(key)
        found.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        extras = requirement.extras or {""}
        for text in requires:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                queue.append(child)
    return found


@cache
def runtime_distributions() -> frozenset[str]:
    groups = _extras()
    return frozenset(closure([*groups[""], *groups["ml"]]))


@cache
def dev_only_distributions() -> frozenset[str]:
    """What `pip install -e '.[dev]'` adds for developers: the `local` and `dev` extras and
    everything they pull in that the runtime does not need."""
    groups = _extras()
    return frozenset(closure([*groups["local"], *groups["dev"]]) - runtime_distributions())


@cache
def import_names(distributions: frozenset[str]) -> frozenset[str]:
    """The top-level modules those distributions install, except names a runtime one shares."""
    owners = importlib.metadata.packages_distributions()
    names = {name: {canonicalize_name(owner) for owner in dists} for name, dists in owners.items()}
    return frozenset(
        name
        for name, dists in names.items()
        if dists & distributions and not dists & runtime_distributions()
    )


def top_level(layer: Path) -> tuple[set[str], set[str]]:
    """(distributions, importable names) at the top of a layer's python/ folder."""
    distributions: set[str] = set()
    modules: set[str] = set()
    for entry in layer.iterdir():
        if entry.name.endswith(".dist-info"):
            distributions.add(canonicalize_name(entry.name.split("-")[0]))
        else:
            modules.add(entry.name.split(".")[0])
    return distributions, modules


def test_the_dev_tooling_list_is_derived_and_complete() -> None:
    # A derivation that found nothing would make the test below pass vacuously.
    expected = {"pytest", "pluggy", "moto", "mypy", "ruff", "hypothesis", "httpx", "pyyaml"}
    assert expected <= dev_only_distributions()
    assert {"pytest", "_pytest", "moto", "mypy", "hypothesis", "yaml"} <= import_names(
        dev_only_distributions()
    )
    assert not {"fastapi", "pydantic", "sklearn", "creditml"} & import_names(
        dev_only_distributions()
    )


@pytest.mark.parametrize("layer", LAYERS)
def test_no_developer_tooling_is_shipped(build: Build, layer: str) -> None:
    distributions, modules = top_level(build.layers[layer])
    assert distributions & dev_only_distributions() == set()
    assert modules & import_names(dev_only_distributions()) == set()


@pytest.mark.parametrize("layer", LAYERS)
def test_the_aws_sdk_is_left_to_the_runtime(build: Build, layer: str) -> None:
    distributions, modules = top_level(build.layers[layer])
    assert (distributions | modules) & AWS_SDK == set()


def test_the_common_layer_carries_no_ml_libraries(build: Build) -> None:
    # Functions without the ML layer would pay for them in size and never use them.
    groups = _extras()
    ml_only = frozenset(closure(groups["ml"]) - closure(groups[""]))
    distributions, modules = top_level(build.layers["CommonLayer"])
    assert distributions & ml_only == set()
    assert modules & import_names(ml_only) == set()
    assert "creditml" not in top_level(build.layers["MlLayer"])[1]


@pytest.mark.parametrize("layer", LAYERS)
def test_every_pinned_requirement_is_in_its_layer(build: Build, layer: str) -> None:
    lines = REQUIREMENTS[layer].read_text(encoding="utf-8").splitlines()
    pinned = {
        canonicalize_name(Requirement(line).name)
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert pinned - AWS_SDK <= top_level(build.layers[layer])[0]


def test_no_tests_stubs_scripts_or_dev_stack_are_shipped(build: Build) -> None:
    shipped = [*build.functions.values(), *build.layers.values()]
    leftovers = [
        path.relative_to(build.root)
        for folder in shipped
        for path in folder.rglob("*")
        if (path.is_dir() and path.name in {"tests", "test", "bin"})
        or path.name.endswith((".pyi", "-stubs"))
    ]
    assert leftovers == []
    assert not (build.layers["CommonLayer"] / "creditml" / "devstack").exists()


def _tree(folder: Path, *, skip: Iterable[str] = ()) -> dict[str, bytes]:
    """The files of a source or built folder by relative path (bytecode left out)."""
    skipped = tuple(skip)
    files = {}
    for path in files_under(folder):
        relative = path.relative_to(folder).as_posix()
        if "__pycache__" in path.parts or path.suffix == ".pyc" or relative.startswith(skipped):
            continue
        files[relative] = path.read_bytes()
    return files


def test_the_build_is_of_the_current_template(build: Build) -> None:
    assert sorted(build.functions) == source_function_names(), "stale build: run `make build`"


@pytest.mark.parametrize("function", source_function_names())
def test_each_function_ships_exactly_its_source_folder(build: Build, function: str) -> None:
    source = source_template().functions[function].code_uri
    built = _tree(build.functions[function])
    assert built == _tree(source), f"{function} differs from {source}: run `make build`"


def test_the_common_layer_ships_the_repositorys_creditml(build: Build) -> None:
    source = _tree(ROOT / "layers" / "common" / "creditml", skip=["devstack/"])
    built = _tree(build.layers["CommonLayer"] / "creditml")
    differing = sorted(
        name for name in source.keys() | built.keys() if source.get(name) != built.get(name)
    )
    assert differing == [], f"stale build (run `make build`): {differing[:20]}"


@pytest.mark.parametrize("function", source_function_names())
def test_a_functions_layers_never_overwrite_each_other(build: Build, function: str) -> None:
    # Lambda unpacks every layer into the same /opt: a path in two layers keeps only one.
    seen: dict[str, str] = {}
    clashes = []
    for layer in build.layers_of(function):
        for path in files_under(build.layers[layer]):
            relative = path.relative_to(build.layers[layer]).as_posix()
            if relative in seen:
                clashes.append(f"{relative} ({seen[relative]}, {layer})")
            seen[relative] = layer
    assert clashes == []
