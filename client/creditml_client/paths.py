"""Where the client keeps its files, and how it writes them.

Config folder (credentials, device keys): the ``config_dir`` argument, else
``$CREDITML_CONFIG_DIR``, else the platform's: ``$XDG_CONFIG_HOME/creditml`` or
``~/.config/creditml`` on Linux and other Unixes, ``~/Library/Application Support/creditml``
on macOS, ``%APPDATA%\\creditml`` on Windows.

Cache folder (downloaded big parts): the ``cache_dir`` argument, else
``$CREDITML_CACHE_DIR``, else ``$XDG_CACHE_HOME/creditml`` or ``~/.cache/creditml``,
``~/Library/Caches/creditml`` on macOS, ``%LOCALAPPDATA%\\creditml\\cache`` on Windows.

Folders are created with mode 0700 and files written with mode 0600, atomically (a
temporary file in the same folder, then a rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_writer", "cache_dir", "config_dir", "ensure_private_dir", "write_private"]

APP = "creditml"


def config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config folder (see the module docstring); not created here."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get("CREDITML_CONFIG_DIR"):
        return Path(os.environ["CREDITML_CONFIG_DIR"])
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / APP
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / APP


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder (see the module docstring); not created here."""
    if explicit is not None:
        return Path(explicit)
    if os.environ.get("CREDITML_CACHE_DIR"):
        return Path(os.environ["CREDITML_CACHE_DIR"])
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        return Path(local) / APP / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / APP


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed: every folder created here gets mode 0700
    (not only the last: `<config>/keys` must not leave `<config>` world-readable), and
    `path` itself is set to 0700."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(OSError):  # e.g. a folder owned by someone else: leave it
        path.chmod(0o700)
    return path


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces `path` (mode 0600) only when the block
    ends without an exception; otherwise the temporary file is removed."""
    ensure_private_dir(path.parent)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o600)  # mkstemp already uses 0600; make it explicit
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600."""
    with atomic_writer(path) as handle:
        handle.write(data)
