"""Dependency rules of the shared layer, read from its source (ast, no imports run):
arrows point from storage and composition to the domain, never back; AWS libraries and
pynamodb internals stay in the data-access modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "common" / "creditml"
DOMAIN = ("auth", "billing", "models", "predictions")
AWS_LIBRARIES = ("boto3", "botocore", "pynamodb")
# Modules allowed to talk to AWS: the data-access package and the local-only tooling.
AWS_ALLOWED = ("storage", "devstack", "cli.py")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _violations(allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in _modules():
        name = _relative(path)
        if name.startswith(allowed):
            continue
        bad = {m for m in _imports(path) if m.split(".")[0] in forbidden or m in forbidden}
        if bad:
            found[name] = bad
    return found


def test_only_data_access_modules_import_aws_libraries() -> None:
    assert _violations(AWS_ALLOWED, AWS_LIBRARIES) == {}


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_never_imports_storage_or_composition(package: str) -> None:
    bad = {
        _relative(path): {
            m
            for m in _imports(path)
            if m.startswith(("creditml.storage", "creditml.composition", "creditml.api"))
        }
        for path in (PACKAGE / package).rglob("*.py")
    }
    assert {name: found for name, found in bad.items() if found} == {}


def test_pynamodb_internals_stay_in_one_adapter() -> None:
    # devstack/ is exempt: the embedded AWS emulates DynamoDB (it produces the reason codes).
    offenders = {
        _relative(path)
        for path in _modules()
        if _relative(path) != "storage/dynamo.py"
        and not _relative(path).startswith("devstack/")
        and any(
            needle in path.read_text(encoding="utf-8")
            for needle in ("_get_connection", "ConditionalCheckFailed", "cancellation_reasons")
        )
    }
    assert offenders == set()


def test_the_rules_see_real_imports(tmp_path: Path) -> None:
    # Guard the guard: the import reader finds both import forms.
    probe = tmp_path / "probe.py"
    probe.write_text("import boto3\nfrom creditml.storage.ledger import X\n")
    assert _imports(probe) == {"boto3", "creditml.storage.ledger"}
