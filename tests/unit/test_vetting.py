"""Vetting, in this process: the memory budget refuses bombs before allocating them, trees are
validated, the footprint counts real memory (and the model cache uses it), and every model
of the legitimate corpus passes while every malformed one is rejected with its reason.
(The child process that runs the same checks is exercised in tests/integration.)"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree._tree import Tree

import creditml
from creditml.models.crypto import MODEL, seal
from creditml.models.errors import ModelRejected
from creditml.models.footprint import MODEL_OVERHEAD_BYTES, model_nbytes
from creditml.models.inspection import inspect_model
from creditml.models.loader import ModelCache, ModelLoader
from creditml.models.safe_loading import load_model
from creditml.models.sandbox import check_model
from creditml.models.trees import validate_trees
from creditml.models.vetting import VettingFailed, VettingLimits, _verdict, child_environment
from tests.models.corpus import CORPUS
from tests.models.hostile import array_bomb, bytes_bomb, malformed_files
from tests.models.keys import ClearKeys

pytestmark = pytest.mark.unit

MIB = 1024 * 1024
LIMIT = 512 * MIB
_BUILT: dict[str, Any] = {}


def _built(name: str) -> Any:
    if name not in _BUILT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _BUILT[name] = CORPUS[name]()[0]
    return _BUILT[name]


def _dump(model: Any, compress: Any = 0) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=compress)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def malformed() -> dict[str, tuple[bytes, str]]:
    return malformed_files()


@pytest.mark.parametrize("bomb", [array_bomb, bytes_bomb])
def test_a_one_megabyte_bomb_is_refused_without_allocating_its_gigabyte(bomb: Any) -> None:
    # Given a ~1 MB gzip joblib file that plain joblib.load inflates to 1 GiB
    data = bomb(2**30)
    assert len(data) < 2 * MIB
    # When it is loaded with a 512 MB budget
    tracemalloc.start()
    try:
        with pytest.raises(ModelRejected, match="more than 512 MB of memory") as rejected:
            load_model(data, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then it is refused, having allocated a small fraction of it (tracemalloc sees numpy's
    # buffers too)
    assert peak < 64 * MIB, f"peak {peak // MIB} MiB"
    assert "limit is 512 MB" in rejected.value.reason


def test_the_budget_counts_arrays_and_admits_models_under_it() -> None:
    model = Ridge().fit(np.eye(3), [1.0, 2.0, 3.0])
    model.extra_ = np.ones(5 * MIB // 8)  # 5 MiB, compressing to almost nothing
    data = _dump(model, compress=3)
    with pytest.raises(ModelRejected, match="more than 4 MB"):
        load_model(data, 4 * MIB)
    assert load_model(data, 8 * MIB).extra_.nbytes == 5 * MIB
    assert load_model(data).extra_.nbytes == 5 * MIB  # no budget: the predict-time default


_ALLOCATING_CALLS = {
    # bytearray(2**40): one REDUCE, no data in the file
    "bytearray": b"\x80\x02cbuiltins\nbytearray\n\x8a\x06"
    + (2**40).to_bytes(6, "little")
    + b"\x85R.",
    # numpy.ndarray.__new__(ndarray, (2**37,)): NEWOBJ allocates the shape
    "ndarray_new": b"\x80\x02cnumpy\nndarray\n\x8a\x05"
    + (2**37).to_bytes(5, "little")
    + b"\x85\x85\x81.",
    # csr_matrix((2**40, 1)): an empty matrix still allocates its row pointers
    "sparse_shape": b"\x80\x02cscipy.sparse._csr\ncsr_matrix\n\x8a\x06"
    + (2**40).to_bytes(6, "little")
    + b"K\x01\x86\x85R.",
    # numpy's _reconstruct(ndarray, (2**37,), b"b")
    "reconstruct": b"\x80\x03cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x05"
    + (2**37).to_bytes(5, "little")
    + b"\x85C\x01b\x87R.",
}


@pytest.mark.parametrize("name", sorted(_ALLOCATING_CALLS))
def test_calls_that_allocate_from_their_arguments_are_charged_first(name: str) -> None:
    # Without the charge each would be a MemoryError (or a terabyte of address space).
    with pytest.raises(ModelRejected, match="more than 512 MB of memory"):
        load_model(_ALLOCATING_CALLS[name], LIMIT)


def test_a_tree_header_that_disagrees_with_itself_is_refused_before_sklearn_reads_it() -> None:
    # Tree(n_features, n_classes, n_outputs) reads n_outputs entries of n_classes unchecked.
    class Header:
        def __reduce__(self) -> tuple[Any, ...]:
            return Tree, (4, np.array([3], dtype=np.intp), 1000)

    with pytest.raises(ModelRejected, match="invalid header"):
        load_model(pickle.dumps(Header()), LIMIT)


def test_footprint_counts_arrays_trees_and_shared_objects_once() -> None:
    array = np.ones(MIB // 8)
    holder = Ridge()
    holder.a_, holder.b_, holder.view_ = array, [array, {"k": array}], array[:10]
    assert MIB <= model_nbytes(holder) - MODEL_OVERHEAD_BYTES < MIB + 16 * 1024
    forest = _built("large_random_forest")
    file_size = len(_dump(forest))
    assert 0.9 * file_size < model_nbytes(forest) < 1.3 * file_size
    # The footprint of a compressed file is the memory, not the file.
    compressed = _dump(forest, compress=3)
    assert model_nbytes(load_model(compressed)) > 3 * len(compressed)


class _Parts:
    def __init__(self, files: dict[tuple[str, int], bytes]) -> None:
        self._sealed = {key: seal(data, *key, ClearKeys(), 3) for key, data in files.items()}

    def fetch_serving(self, model_id: str, version: int) -> Any:
        return MODEL, self._sealed[(model_id, version)]


def test_the_model_cache_counts_loaded_memory_not_file_size() -> None:
    # Given two 1 MB-ish compressed files that each hold 24 MiB of arrays, and a 40 MiB cache
    def heavy(seed: int) -> bytes:
        model = Ridge().fit(np.eye(3), [1.0, 2.0, float(seed)])
        model.extra_ = np.full(24 * MIB // 8, float(seed))
        return _dump(model, compress=3)

    files = {("a", 1): heavy(1), ("b", 1): heavy(2)}
    assert all(len(data) < MIB for data in files.values())
    loader = ModelLoader(_Parts(files), ClearKeys(), ModelCache(40 * MIB), LIMIT)
    # When both are loaded
    loader.load("a", 1)
    assert loader.cache.used_bytes > 24 * MIB
    loader.load("b", 1)
    # Then the first was evicted: 48 MiB of models do not fit in 40 MiB
    assert len(loader.cache) == 1
    assert loader.load("a", 1)[1] is False
    assert loader.load("a", 1)[1] is True


def test_the_loader_refuses_a_bomb_at_predict_time_too() -> None:
    loader = ModelLoader(_Parts({("m", 1): array_bomb(2**30)}), ClearKeys(), ModelCache(MIB), LIMIT)
    with pytest.raises(ModelRejected, match="memory"):
        loader.load("m", 1)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_legitimate_model_passes_the_checks(name: str) -> None:
    model = _built(name)
    schema = check_model(_dump(model), LIMIT)
    assert schema == inspect_model(model)


def test_legitimate_trees_are_counted() -> None:
    assert validate_trees(_built("random_forest_classifier")) == 20
    assert validate_trees(_built("gradient_boosting_classifier")) == 60  # 20 stages x 3
    assert validate_trees(_built("hist_gradient_boosting_classifier")) == 60
    assert validate_trees(_built("logistic_regression")) == 0


def test_the_malformed_corpus_is_broad(malformed: dict[str, tuple[bytes, str]]) -> None:
    kinds = {"bomb", "tree", "multi_output", "empty", "truncated"}
    assert all(any(kind in name for name in malformed) for kind in kinds)


def test_every_malformed_model_is_rejected_with_its_reason(
    malformed: dict[str, tuple[bytes, str]],
) -> None:
    failures = []
    for name, (data, reason) in sorted(malformed.items()):
        try:
            check_model(data, LIMIT)
        except ModelRejected as rejected:
            if reason not in rejected.reason:
                failures.append(f"{name}: {rejected.reason!r} lacks {reason!r}")
        else:
            failures.append(f"{name}: accepted")
    assert not failures


def test_inspect_model_turns_unexpected_errors_into_rejections() -> None:
    class Odd(LogisticRegression):
        @property
        def feature_names_in_(self) -> Any:
            raise KeyError("surprise")

    model = LogisticRegression().fit(np.eye(3), [0, 1, 1])
    model.__class__ = Odd
    with pytest.raises(ModelRejected, match=r"Odd could not be inspected \(KeyError\)"):
        inspect_model(model)
    # The multi-output RandomForestClassifier used to raise ValueError here.
    forest = RandomForestClassifier(n_estimators=2, random_state=0)
    forest.fit(np.eye(4), np.column_stack([[0, 1, 0, 1], [1, 1, 0, 0]]))
    with pytest.raises(ModelRejected, match="several outputs per row"):
        inspect_model(forest)


def _child(returncode: int, stdout: bytes = b"", stderr: bytes = b"") -> Any:
    return subprocess.CompletedProcess(["python"], returncode, stdout, stderr)


@pytest.mark.parametrize(
    ("child", "reason"),
    [
        (
            _child(-11, b"stage start\nstage load\nstage trial\n"),
            "crashed the process checking it while making a trial prediction (SIGSEGV)",
        ),
        (_child(-24, b"stage start\nstage load\n"), "more than 60 s of CPU time"),
        (_child(1, b"stage start\n", b"...\nMemoryError\n"), "more memory"),
        (_child(3, b"stage start\nstage validate\n"), "status 3 while validating"),
        (_child(0, b'stage start\nresult {"rejected": "nope"}\n'), "nope"),
    ],
)
def test_the_verdict_names_what_happened_to_the_child(child: Any, reason: str) -> None:
    with pytest.raises(ModelRejected) as rejected:
        _verdict(child, VettingLimits())
    assert reason in rejected.value.reason


def test_a_checker_that_never_started_is_retried_not_rejected() -> None:
    with pytest.raises(VettingFailed):
        _verdict(_child(1, b"", b"ModuleNotFoundError: creditml"), VettingLimits())


def test_the_child_gets_the_import_path_and_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    environment = child_environment()
    assert not [name for name in environment if name.startswith("AWS_")]
    # Lambda puts the layers on sys.path at start-up, not in PYTHONPATH: pass them on.
    package_root = str(Path(creditml.__file__).parent.parent)
    assert package_root in environment["PYTHONPATH"].split(os.pathsep)
    assert environment["OPENBLAS_NUM_THREADS"] == "1"


def test_a_worker_cannot_make_the_zygote_hold_more_than_the_output_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker's output stream is kept up to STDOUT_LIMIT and the rest dropped while it is
    # still read (the worker is never blocked on a full pipe, the zygote never buffers it).
    import time

    from creditml.models import sandbox

    monkeypatch.setattr(sandbox, "STDOUT_LIMIT", 100_000)
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    # A writer of 2 MB in a process of its own, as a worker is.
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdout.buffer.write(b'stage start\\n' + b'x' * 2_000_000)",
        ],
        stdout=out_write,
        stderr=err_write,
    )
    os.close(out_write)
    os.close(err_write)
    out, err, finished = sandbox._collect(out_read, err_read, time.monotonic() + 30)
    writer.wait(timeout=30)
    assert finished
    assert err == b""
    assert out.startswith(b"stage start\n")
    assert 100_000 <= len(out) < 100_000 + 65_536


def _runtime_line(graph: bytes) -> bytes:
    import base64
    import json

    answer = {"runtime": "onnx", "graph": base64.b64encode(graph).decode()}
    return (
        b'stage start\nresult {"schema": {}}\nstage convert\nruntime ' + json.dumps(answer).encode()
    )


def test_the_parent_checks_the_graph_the_checking_process_hands_back() -> None:
    # The checking process held an untrusted object: its graph is data to verify. One our
    # converter made passes; a truncated line, garbage, or a graph with an operator the
    # converter never emits becomes scikit-learn, never a stored graph.
    from creditml.models.onnx_convert import to_onnx
    from creditml.models.records import CONVERSION_FAILED, Runtime
    from creditml.models.vetting import VettingLimits, _serving

    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(np.eye(4), [0, 1, 0, 1])
    schema = inspect_model(model)
    limits = VettingLimits()
    graph = to_onnx(model)
    assert _serving(schema, _runtime_line(graph), limits).runtime is Runtime.ONNX

    foreign = graph.replace(b"TreeEnsemble", b"TreeEnsembl3")
    assert foreign != graph
    for stdout in (_runtime_line(graph)[:-20], _runtime_line(b"garbage"), _runtime_line(foreign)):
        vetted = _serving(schema, stdout, limits)
        assert (vetted.runtime, vetted.runtime_reason, vetted.graph) == (
            Runtime.SKLEARN,
            CONVERSION_FAILED,
            None,
        )
