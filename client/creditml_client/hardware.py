"""The device fingerprint: a SHA-256 of stable hardware facts.

A download is sealed to a device's key *and* to the fingerprint registered with it, so it
opens only on the machine it was made for. The fingerprint is the SHA-256 (lowercase hex)
of the canonical JSON (sorted keys, no spaces) of these facts:

- ``machine_id``: the operating system's identifier of the installation
  - Linux: ``/etc/machine-id``, else ``/var/lib/dbus/machine-id``;
  - macOS: ``IOPlatformUUID`` (``ioreg -rd1 -c IOPlatformExpertDevice``);
  - Windows: ``MachineGuid`` under ``HKLM\\SOFTWARE\\Microsoft\\Cryptography``;
  - when the system has none (some minimal containers): a random id the client creates
    once and keeps in ``<config folder>/machine-id`` (mode 0600).
- ``arch``: ``platform.machine()``, e.g. ``x86_64`` or ``arm64``;
- ``cpu``: the CPU's model name (``/proc/cpuinfo`` on Linux, ``sysctl
  machdep.cpu.brand_string`` on macOS, the registry's ``ProcessorNameString`` on Windows,
  else ``platform.processor()``), or ``""`` when none can be read.

Deliberately left out: MAC addresses and host names, which change with network cards,
VPNs, docking stations and renames; memory and disk sizes, which change with upgrades.
Reinstalling the operating system (a new machine id) or moving to other hardware changes
the fingerprint: register the device again then.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from creditml_client.paths import write_private

__all__ = ["fingerprint", "hardware_facts"]

_LINUX_MACHINE_ID = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
_FALLBACK_FILE = "machine-id"


def fingerprint(facts: Mapping[str, str]) -> str:
    """The fingerprint (64 lowercase hex characters) of a set of hardware facts."""
    canonical = json.dumps(dict(facts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def hardware_facts(config_dir: Path) -> dict[str, str]:
    """This machine's hardware facts (see the module docstring); `config_dir` holds the
    fallback machine id when the system offers none."""
    return {
        "machine_id": _machine_id() or _fallback_machine_id(config_dir),
        "arch": platform.machine().lower(),
        "cpu": _cpu_model(),
    }


def _machine_id() -> str:
    if sys.platform == "win32":
        return _windows_value(r"SOFTWARE\Microsoft\Cryptography", "MachineGuid")
    if sys.platform == "darwin":
        output = _run(["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"])
        found = re.search(r'"IOPlatformUUID"\s*=\s*"([^"]+)"', output)
        return found.group(1).lower() if found else ""
    for path in _LINUX_MACHINE_ID:
        try:
            value = path.read_text(encoding="ascii").strip().lower()
        except (OSError, UnicodeDecodeError):
            continue
        if value:
            return value
    return ""


def _fallback_machine_id(config_dir: Path) -> str:
    path = config_dir / _FALLBACK_FILE
    try:
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        value = ""
    if not value:
        value = secrets.token_hex(16)
        write_private(path, value.encode("ascii"))
    return value


def _cpu_model() -> str:
    if sys.platform == "win32":
        key = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
        name = _windows_value(key, "ProcessorNameString")
    elif sys.platform == "darwin":
        name = _run(["/usr/sbin/sysctl", "-n", "machdep.cpu.brand_string"])
    else:
        name = _linux_cpu_model()
    return " ".join((name or platform.processor()).split())


def _linux_cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    # x86 says "model name"; many ARM kernels only "Hardware" or "CPU part".
    for label in ("model name", "Hardware", "CPU part"):
        found = re.search(rf"^{label}\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            return found.group(1).strip()
    return ""


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed absolute command, no shell
            command, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _windows_value(key: str, name: str) -> str:
    if sys.platform != "win32":
        return ""
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key) as handle:
            value, _ = winreg.QueryValueEx(handle, name)
    except OSError:
        return ""
    return str(value).strip().lower() if name == "MachineGuid" else str(value).strip()
