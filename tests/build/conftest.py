"""Checks of what `sam build` wrote to .aws-sam/build: what would be deployed.

`make test` runs `sam build` before pytest, so a missing build is a failure, not a skip:
skipping would let CI pass without ever looking at the artifacts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pytest

from creditml.devstack.template import Template
from tests.conftest import ROOT

BUILD_DIR = ROOT / ".aws-sam" / "build"
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/build/" in str(item.path):
            item.add_marker(pytest.mark.build)


@cache
def source_template() -> Template:
    """The repository's template.yaml (what a fresh build would be made of)."""
    return Template(ROOT / "template.yaml")


def source_function_names() -> list[str]:
    """The functions template.yaml declares (for parametrizing without a build)."""
    return sorted(source_template().resources_of(FUNCTION))


class Build:
    """The output of `sam build`: each function's and layer's folder, and who attaches what.

    Opened lazily, so a missing build fails each test that looks at it (rather than
    erroring in a fixture) with the instruction to make one.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @cached_property
    def template(self) -> Template:
        path = self.root / "template.yaml"
        if not path.is_file():
            pytest.fail(
                f"no `sam build` output in {self.root}: run `make build` first (`make test` does)",
                pytrace=False,
            )
        return Template(path)

    @cached_property
    def functions(self) -> dict[str, Path]:
        return {
            name: self._folder(name, resource["Properties"]["CodeUri"])
            for name, resource in self.template.resources_of(FUNCTION).items()
        }

    @cached_property
    def layers(self) -> dict[str, Path]:
        """Each layer's `python/` folder (what Lambda puts on sys.path as /opt/python)."""
        return {
            name: self._folder(name, resource["Properties"]["ContentUri"]) / "python"
            for name, resource in self.template.resources_of(LAYER).items()
        }

    def layers_of(self, function: str) -> list[str]:
        """The layers a function runs with: the Globals' first, then its own (SAM's merge)."""
        globals_ = self.template.document.get("Globals", {}).get("Function", {})
        props = self.template.resources[function]["Properties"]
        references: list[Any] = [*globals_.get("Layers", []), *props.get("Layers", [])]
        names = []
        for reference in references:
            # A layer ARN from elsewhere could not be measured or checked here.
            assert isinstance(reference, dict), f"{function}: layer {reference!r} is not built"
            assert reference.get("Ref") in self.layers, f"{function}: unknown layer {reference}"
            names.append(reference["Ref"])
        return names

    def _folder(self, name: str, uri: Any) -> Path:
        folder = self.root / str(uri)
        if not folder.is_dir():
            pytest.fail(f"{name} is missing from {self.root}: run `make build`", pytrace=False)
        return folder


@pytest.fixture(scope="session")
def build() -> Build:
    return Build(BUILD_DIR)


def files_under(folder: Path) -> Iterator[Path]:
    """Every file below `folder`, without following links."""
    for parent, _, names in os.walk(folder):
        for name in names:
            yield Path(parent) / name


@pytest.fixture(scope="session")
def python312() -> str:
    """The Python 3.12 the build used (Lambda's version), found as the Makefile finds it."""
    found = subprocess.run(
        [str(ROOT / "scripts" / "python312.sh")], capture_output=True, text=True, timeout=60
    )
    if found.returncode != 0:
        pytest.fail(f"no Python 3.12: {found.stderr.strip()}", pytrace=False)
    return found.stdout.strip()
