"""The pre-commit hooks run the same gates as `make lint typecheck validate`, with the same
tools: a hook that drifted from the Makefile would pass commits that `make test` fails."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

RUFF_MIRROR = "https://github.com/astral-sh/ruff-pre-commit"


def _repos() -> list[dict[str, Any]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    repos: list[dict[str, Any]] = config["repos"]
    return repos


def _hook(hook_id: str) -> dict[str, Any]:
    found = [hook for repo in _repos() for hook in repo["hooks"] if hook["id"] == hook_id]
    assert len(found) == 1, f"expected one {hook_id} hook, found {len(found)}"
    return found[0]


def _local_hook(hook_id: str) -> dict[str, Any]:
    (local,) = [repo for repo in _repos() if repo["repo"] == "local"]
    hooks = {hook["id"]: hook for hook in local["hooks"]}
    assert hook_id in hooks, f"{hook_id} is not a local hook"
    return hooks[hook_id]


def _makefile_variable(name: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", text, re.MULTILINE)
    assert match, f"Makefile has no {name}"
    return match.group(1)


def _matches(hook: dict[str, Any], path: str) -> bool:
    return re.search(hook["files"], path) is not None


def test_ruff_hooks_check_and_format_with_the_projects_ruff() -> None:
    (mirror,) = [repo for repo in _repos() if repo["repo"] == RUFF_MIRROR]
    assert {hook["id"] for hook in mirror["hooks"]} == {"ruff-check", "ruff-format"}
    # Lint rules and the formatter's style change with ruff's minor versions; a hook on
    # another minor than .venv's would disagree with `make lint`.
    hook_version = mirror["rev"].removeprefix("v").split(".")[:2]
    assert hook_version == version("ruff").split(".")[:2], (mirror["rev"], version("ruff"))
    for hook in mirror["hooks"]:
        assert "--fix" not in hook.get("args", []), "hooks check; fixing is the author's call"


def test_mypy_hook_runs_the_project_venv_on_pyprojects_files() -> None:
    hook = _local_hook("mypy")
    assert hook["language"] == "system"
    assert hook["entry"] == f"{_makefile_variable('VENV')}/bin/mypy"
    # pyproject's [tool.mypy] files decide what is checked, exactly as `make typecheck`.
    assert hook["pass_filenames"] is False
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    assert _matches(hook, "layers/common/creditml/billing/ledger.py")
    assert _matches(hook, "pyproject.toml")
    assert not _matches(hook, "tests/unit/test_tokens.py")
    assert not _matches(hook, "layers/common/requirements.txt")


def test_cfn_lint_hook_lints_the_template_for_the_region_make_validate_uses() -> None:
    hook = _local_hook("cfn-lint")
    assert hook["language"] == "system"
    executable, *arguments = shlex.split(hook["entry"])
    assert executable == f"{_makefile_variable('SAM_VENV')}/bin/cfn-lint"
    assert arguments[-1] == "template.yaml"
    validate = re.search(r"validate --lint --region (\S+)", (ROOT / "Makefile").read_text())
    assert validate, "the Makefile no longer runs `sam validate --lint --region ...`"
    region = arguments[arguments.index("--regions") + 1]
    assert region == validate.group(1)
    assert hook["pass_filenames"] is False
    assert _matches(hook, "template.yaml")
    assert not _matches(hook, "samconfig.toml")


def test_mypy_hook_tool_is_installed() -> None:
    entry = ROOT / _local_hook("mypy")["entry"]
    assert entry.is_file(), f"{entry} is missing: run `make install`"
    assert os.access(entry, os.X_OK)


def test_cfn_lint_hook_tool_is_installed() -> None:
    executable = Path(shlex.split(_local_hook("cfn-lint")["entry"])[0])
    sam_venv = ROOT / executable.parts[0]
    if not (sam_venv / "bin" / "python").exists():
        # `make unit` does not install aws-sam-cli; `make validate` and `make test` do, so
        # CI always gets here with the venv present.
        pytest.skip(f"{sam_venv.name} is not installed (make install-sam)")
    assert (ROOT / executable).is_file(), f"aws-sam-cli in {sam_venv.name} has no cfn-lint"
    assert os.access(ROOT / executable, os.X_OK)
