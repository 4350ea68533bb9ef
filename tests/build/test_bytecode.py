"""The layers carry unchecked-hash bytecode for CPython 3.12, as layers/Makefile promises.

Lambda's file system is read-only, so bytecode Python cannot use is recompiled, in memory,
on every cold start. A timestamp-based .pyc is unusable there (a zip keeps modification
times to 2 seconds, the header to 1) and a checked-hash one hashes its source on every
import; an unchecked-hash .pyc is used as it is. The flip side: nothing ever compares it
with its source again, so a stale one would run old code silently. Hence the source check.
"""

from __future__ import annotations

import importlib.util
import py_compile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.build.conftest import Build, files_under

# PEP 552: bytes 4..8 of a .pyc are a little-endian bit field. Bit 0 set: hash-based (bytes
# 8..16 are the source's hash); bit 1 set: check that hash against the source at import.
# No other bit is defined (importlib refuses the file).
HASH_BASED = 0b01
CHECK_SOURCE = 0b10
UNCHECKED_HASH = HASH_BASED


@dataclass(frozen=True)
class PycHeader:
    magic: bytes
    flags: int
    source_hash: bytes


def read_header(path: Path) -> PycHeader:
    with path.open("rb") as handle:
        head = handle.read(16)
    return PycHeader(head[:4], int.from_bytes(head[4:8], "little"), head[8:16])


@pytest.mark.parametrize(
    ("mode", "flags"),
    [
        (py_compile.PycInvalidationMode.TIMESTAMP, 0),
        (py_compile.PycInvalidationMode.CHECKED_HASH, HASH_BASED | CHECK_SOURCE),
        (py_compile.PycInvalidationMode.UNCHECKED_HASH, UNCHECKED_HASH),
    ],
)
def test_header_reader_tells_the_invalidation_modes_apart(
    tmp_path: Path, mode: py_compile.PycInvalidationMode, flags: int
) -> None:
    source = tmp_path / "module.py"
    source.write_text("ANSWER = 42\n")
    compiled = py_compile.compile(str(source), invalidation_mode=mode, doraise=True)
    assert compiled is not None
    header = read_header(Path(compiled))
    assert (header.magic, header.flags) == (importlib.util.MAGIC_NUMBER, flags)
    if flags & HASH_BASED:
        assert header.source_hash == importlib.util.source_hash(source.read_bytes())


@pytest.mark.parametrize("layer", ["CommonLayer", "MlLayer", "OnnxLayer"])
def test_every_pyc_is_unchecked_hash_bytecode_for_python_312(build: Build, layer: str) -> None:
    # The tests run on the dev venv's Python 3.12, whose magic number the runtime's matches.
    compiled = [path for path in files_under(build.layers[layer]) if path.suffix == ".pyc"]
    wrong = []
    for path in compiled:
        header = read_header(path)
        if (header.magic, header.flags) != (importlib.util.MAGIC_NUMBER, UNCHECKED_HASH):
            name = path.relative_to(build.root)
            wrong.append(f"{name}: magic {header.magic.hex()}, flags {header.flags:#04b}")
    assert compiled, f"{layer} holds no bytecode at all"
    assert wrong == [], f"{len(wrong)} of {len(compiled)} .pyc: {wrong[:20]}"


def test_each_common_layer_module_has_bytecode_of_that_very_source(build: Build) -> None:
    sources = [path for path in files_under(build.layers["CommonLayer"]) if path.suffix == ".py"]
    problems = []
    for source in sources:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        if not compiled.is_file():
            problems.append(f"{source.relative_to(build.root)}: no {compiled.name}")
        elif read_header(compiled).source_hash != importlib.util.source_hash(source.read_bytes()):
            problems.append(f"{source.relative_to(build.root)}: stale {compiled.name}")
    assert build.layers["CommonLayer"] / "creditml" / "__init__.py" in sources
    assert problems == [], f"{len(problems)} of {len(sources)} modules: {problems[:20]}"


@pytest.mark.parametrize(
    ("name", "modules"),
    [("MlLayer", ("sklearn", "numpy", "scipy", "joblib")), ("OnnxLayer", ("onnxruntime",))],
)
def test_the_ml_and_onnx_layers_are_sourceless(
    build: Build, name: str, modules: tuple[str, ...]
) -> None:
    layer = build.layers[name]
    sources = [path for path in files_under(layer) if path.suffix == ".py"]
    # Without its source, a module's bytecode is only found beside it, never in __pycache__.
    caches = list(layer.rglob("__pycache__"))
    assert sources == [], f"{len(sources)} .py left, e.g. {sources[:5]}"
    assert caches == [], f"{len(caches)} __pycache__ folders, e.g. {caches[:5]}"
    for module in modules:
        assert (layer / module / "__init__.pyc").is_file(), f"{module} has no bytecode"
