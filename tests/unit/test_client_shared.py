"""The client reads model files with the server's own code: the copies in
client/creditml_client/_shared/ are exactly what scripts/sync_client_shared.py makes of the
server's modules (allowlist, unpickler, model crypto, device seal)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync", ROOT / "scripts/sync_client_shared.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_client_copies_are_the_servers_modules() -> None:
    sync = _script()
    assert sync.differences() == [], "run: .venv/bin/python scripts/sync_client_shared.py"


def test_the_copies_import_nothing_from_the_server() -> None:
    sync = _script()
    for name, text in sync.expected().items():
        assert "from creditml." not in text, name
        assert "import creditml." not in text, name


def test_a_changed_server_module_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync = _script()
    target = tmp_path / "_shared"
    target.mkdir()
    monkeypatch.setattr(sync, "TARGET", target)
    sync.write()
    assert sync.differences() == []
    (target / "allowlist.py").write_text((target / "allowlist.py").read_text() + "# edited\n")
    (target / "extra.py").write_text("")
    assert sync.differences() == ["allowlist.py", "extra.py"]
    assert sync.main(["--check"]) == 1


def test_the_client_loads_models_through_the_same_allowlist() -> None:
    from creditml.models import allowlist, safe_loading

    copy = ROOT / "client/creditml_client/_shared"
    spec = importlib.util.spec_from_file_location("client_allowlist", copy / "allowlist.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ALLOWED_GLOBALS == allowlist.ALLOWED_GLOBALS
    assert safe_loading.ALLOWED_GLOBALS is allowlist.ALLOWED_GLOBALS
