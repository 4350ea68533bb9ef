"""The fingerprint, the folders and the private files of the client."""

from __future__ import annotations

import hashlib
import stat
import sys
from pathlib import Path

import pytest

from creditml_client import fingerprint, hardware_facts, paths

pytestmark = pytest.mark.unit


def test_fingerprint_is_the_sha256_of_the_canonical_facts() -> None:
    facts = {"machine_id": "abc", "arch": "x86_64", "cpu": "CPU"}

    expected = hashlib.sha256(b'{"arch":"x86_64","cpu":"CPU","machine_id":"abc"}').hexdigest()
    assert fingerprint(facts) == expected
    assert fingerprint(dict(reversed(list(facts.items())))) == expected
    assert fingerprint({**facts, "cpu": "Other"}) != expected


def test_hardware_facts_are_stable_and_name_no_network_identity(tmp_path: Path) -> None:
    first = hardware_facts(tmp_path)

    assert first == hardware_facts(tmp_path)
    assert set(first) == {"machine_id", "arch", "cpu"}
    assert first["machine_id"]


def test_fallback_machine_id_is_made_once_and_kept_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creditml_client import hardware

    monkeypatch.setattr(hardware, "_machine_id", lambda: "")  # e.g. a minimal container

    first = hardware_facts(tmp_path / "config")

    assert first == hardware_facts(tmp_path / "config")
    kept = tmp_path / "config" / "machine-id"
    assert kept.read_text() == first["machine_id"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_folders_follow_argument_then_environment_then_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITML_CONFIG_DIR", str(tmp_path / "env-config"))
    monkeypatch.setenv("CREDITML_CACHE_DIR", str(tmp_path / "env-cache"))
    assert paths.config_dir(tmp_path / "given") == tmp_path / "given"
    assert paths.config_dir() == tmp_path / "env-config"
    assert paths.cache_dir() == tmp_path / "env-cache"

    monkeypatch.delenv("CREDITML_CONFIG_DIR")
    monkeypatch.delenv("CREDITML_CACHE_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    if sys.platform.startswith("linux"):
        assert paths.config_dir() == tmp_path / "xdg-config" / "creditml"
        assert paths.cache_dir() == tmp_path / "xdg-cache" / "creditml"


def test_private_writes_are_atomic_and_0600(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "secret.json"
    paths.write_private(target, b"one")
    paths.write_private(target, b"two")

    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700

    def crash_mid_write() -> None:
        with paths.atomic_writer(target) as handle:
            handle.write(b"half")
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        crash_mid_write()

    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["secret.json"]
