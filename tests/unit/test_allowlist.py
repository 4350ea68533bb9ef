"""The allowlist names exact globals, is what the generator writes, and holds nothing that
could run code."""

from __future__ import annotations

import importlib.util

from creditml.models.allowlist import ALLOWED_GLOBALS
from tests.conftest import ROOT

DANGEROUS_NAMES = {
    "eval",
    "exec",
    "compile",
    "system",
    "popen",
    "getattr",
    "setattr",
    "__import__",
    "import_module",
    "runstring",
    "_ufunc_reconstruct",
    "methodcaller",
    "attrgetter",
    "partial",
    "open",
    "load",
    "loads",
    "Popen",
    "call",
    "run",
}
DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "importlib",
    "builtins.eval",
    "numpy.testing",
    "operator",
    "functools",
    "pickle",
    "shutil",
    "socket",
    "joblib.numpy_pickle_compat",
    "copyreg",
    "code",
    "pty",
    "runpy",
)


def _generator() -> object:
    spec = importlib.util.spec_from_file_location(
        "generate_allowlist", ROOT / "scripts" / "generate_allowlist.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entries_are_exact_names_not_prefixes() -> None:
    for entry in ALLOWED_GLOBALS:
        module, _, name = entry.rpartition(".")
        assert module, entry
        assert name, entry
        assert not entry.endswith((".", "*")), entry


def test_nothing_dangerous_is_allowed() -> None:
    for entry in ALLOWED_GLOBALS:
        name = entry.rpartition(".")[2]
        assert name not in DANGEROUS_NAMES, entry
        assert not entry.startswith(DANGEROUS_MODULES) or entry in {
            "builtins.slice",
            "builtins.complex",
            "builtins.set",
            "builtins.frozenset",
            "builtins.bytearray",
        }, entry


def test_committed_allowlist_is_what_the_generator_writes() -> None:
    generator = _generator()
    expected = set(generator.collect())  # type: ignore[attr-defined]
    assert set(ALLOWED_GLOBALS) == expected, "run: .venv/bin/python scripts/generate_allowlist.py"
