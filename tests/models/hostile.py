"""Hostile model files.

`hostile_files`: each tries to run code on load, and writes MARKER if it ever executes, so a
test can prove that nothing ran. `malformed_files`: each runs no code but would hurt the
service once registered (a decompression bomb, crafted trees that crash scikit-learn's
Cython predictors, models the service cannot serve, broken files); registration must reject
every one with a reason."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np


class _Reduce:
    """Pickles as `call(*args)`."""

    def __init__(self, call: Any, *args: Any) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.call, self.args


def _touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def _raw(text: str) -> bytes:
    """A hand-written protocol-0 pickle (for globals Python will not pickle by reference)."""
    return text.encode()


def hostile_files(marker: Path, real_model: Any) -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the global its rejection must name)."""
    touch = _touch(marker)
    shell = f"touch {marker}"
    files: dict[str, tuple[bytes, str]] = {
        "os_system": (pickle.dumps(_Reduce(os.system, shell)), f"{os.system.__module__}.system"),
        "eval": (pickle.dumps(_Reduce(eval, touch)), "builtins.eval"),
        "exec": (pickle.dumps(_Reduce(exec, touch)), "builtins.exec"),
        "subprocess": (
            pickle.dumps(_Reduce(subprocess.call, ["touch", str(marker)])),
            "subprocess.call",
        ),
        "getattr_gadget": (
            _raw(
                "cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR"
                f"(S'{shell}'\ntR."
            ),
            "builtins.getattr",
        ),
        "import_gadget": (_raw("cbuiltins\n__import__\n(S'os'\ntR."), "builtins.__import__"),
        "numpy_testing_runstring": (
            _raw(f"cnumpy.testing._private.utils\nrunstring\n(V{touch}\n(dtR."),
            "numpy.testing._private.utils.runstring",
        ),
        "numpy_ufunc_reconstruct": (
            _raw(
                f"cnumpy._core._ufunc_reconstruct\n(S'os'\nS'system'\ntR(S'{shell}'\ntR.".replace(
                    "cnumpy._core._ufunc_reconstruct", "cnumpy._core\n_ufunc_reconstruct"
                )
            ),
            "numpy._core._ufunc_reconstruct",
        ),
        "operator_methodcaller": (
            _raw("coperator\nmethodcaller\n(S'system'\nS'x'\ntR."),
            "operator.methodcaller",
        ),
        "functools_partial": (
            pickle.dumps(_Reduce(__import__("functools").partial, os.system, shell)),
            "functools.partial",
        ),
        "joblib_compat_wrapper": (
            _raw("cjoblib.numpy_pickle_compat\nNDArrayWrapper\n)\x81."),
            "joblib.numpy_pickle_compat.NDArrayWrapper",
        ),
    }
    # A hostile step hidden inside a real fitted pipeline.
    pipeline = _clone_with(
        real_model, lambda model: model.steps.append(("extra", _Reduce(os.system, shell)))
    )
    files["inside_fitted_pipeline"] = (_joblib(pipeline), f"{os.system.__module__}.system")
    # A hostile object inside an object-dtype array (joblib stores those as a nested pickle).
    array_holder = _clone_with(
        real_model,
        lambda model: setattr(
            model.steps[0][1],
            "feature_names_in_",
            np.array(["a", _Reduce(eval, touch)], dtype=object),
        ),
    )
    files["inside_object_array"] = (_joblib(array_holder), "builtins.eval")
    # A bare object array whose outer pickle names only allowlisted globals: joblib 1.5 read
    # the nested stream of an object array with a plain pickle.load, so this ran on load.
    payload = np.array([_Reduce(os.system, shell), "x"], dtype=object)
    files["object_array_payload"] = (_joblib(payload), f"{os.system.__module__}.system")
    # No forbidden global at all: allowlist-era classes configured to read a file at
    # predict time (a text vectorizer with input="filename" fed a path by an imputer).
    files["file_reading_vectorizer"] = (
        _joblib(_file_reader(marker)),
        "sklearn.feature_extraction.text.CountVectorizer",
    )
    # The same, compressed: the check must not depend on the container format.
    files["compressed"] = (_joblib(pipeline, compress=3), f"{os.system.__module__}.system")
    return files


def _clone_with(model: Any, change: Any) -> Any:
    copy = pickle.loads(pickle.dumps(model))  # noqa: S301 - our own, trusted object
    change(copy)
    return copy


def _joblib(model: Any, compress: int = 0) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=compress)
    return buffer.getvalue()


def _file_reader(marker: Path) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline(
        [
            (
                "path",
                SimpleImputer(
                    missing_values=1.0,
                    strategy="constant",
                    fill_value=str(marker),
                    keep_empty_features=True,
                ),
            ),
            (
                "read",
                ColumnTransformer(
                    [("v", CountVectorizer(input="filename", vocabulary=["a", "b"]), 0)]
                ),
            ),
            ("fit", LinearRegression()),
        ]
    )
    marker.write_text("a b")  # the fit itself must read something
    pipeline.fit(np.array([[1.0], [1.0]], dtype=object), [1.0, 2.0])
    marker.unlink()
    return pipeline


# ---------------------------------------------------------------------------------------
# Malformed models: no code runs, but each would hurt the service once registered.

MIB = 1024 * 1024


def malformed_files() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a fragment its rejection reason must contain)."""
    good = _joblib(_forest())
    files: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "empty"),
        "truncated": (good[: len(good) // 2], "not a readable"),
        "decompression_bomb": (array_bomb(2**30), "memory"),
        "bytes_bomb": (bytes_bomb(2**30), "memory"),
        "multi_output_forest": (_joblib(_multi_output_forest()), "several outputs"),
        "multi_output_regression": (_joblib(_multi_output_regression()), "one output per row"),
    }
    for name, (change, reason) in _TREE_FAULTS.items():
        files[f"tree_{name}"] = (_joblib(crafted_tree(change)), reason)
    files["tree_class_count"] = (_joblib(class_count_mismatch()), "number of classes")
    files["forest_with_crafted_tree"] = (_joblib(_crafted_forest()), "child index is out of range")
    files["gradient_boosting_crafted_tree"] = (
        _joblib(_crafted_gradient_boosting()),
        "feature index outside",
    )
    files["hist_gradient_boosting_crafted_tree"] = (
        _joblib(_crafted_hist_gradient_boosting()),
        "child index is out of range",
    )
    return files


def _gzip(pre: bytes, zeros: int, post: bytes) -> bytes:
    """A valid gzip file of `pre`, `zeros` zero bytes and `post`, built without compressing
    the zeros more than once: after a full flush a deflate block refers to nothing before it,
    so one compressed MiB of zeros can be repeated."""
    chunk = bytes(MIB)
    repeats, rest = divmod(zeros, MIB)
    assert rest == 0, "whole MiB only"

    def deflate(data: bytes, mode: int) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(mode)

    crc = zlib.crc32(pre)
    for _ in range(repeats):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(post, crc)
    size = len(pre) + zeros + len(post)
    return (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        + deflate(pre, zlib.Z_FULL_FLUSH)
        + deflate(chunk, zlib.Z_FULL_FLUSH) * repeats
        + deflate(post, zlib.Z_FINISH)
        + struct.pack("<II", crc, size & 0xFFFFFFFF)
    )


def array_bomb(nbytes: int) -> bytes:
    """A fitted Ridge carrying an extra array of `nbytes` zeros, as a joblib gzip file of
    about nbytes / 1000: plain joblib.load allocates all of it and the model still predicts."""
    from sklearn.linear_model import Ridge

    placeholder = 70_000  # encoded like any shape up to 2**31 (BININT), so frames keep sizes
    model = Ridge().fit(np.eye(3), [1.0, 2.0, 3.0])
    model.padding_ = np.full(placeholder, 7.0)
    plain = _joblib(model)
    shape = b"J" + struct.pack("<i", placeholder)
    assert plain.count(shape) == 1
    values = model.padding_.tobytes()
    start = plain.index(values)
    pre = plain[:start].replace(shape, b"J" + struct.pack("<i", nbytes // 8))
    return _gzip(pre, nbytes, plain[start + len(values) :])


def bytes_bomb(nbytes: int) -> bytes:
    """A gzip-compressed pickle of one bytes object of `nbytes` zeros (no array at all)."""
    pre = b"\x80\x04\x8e" + struct.pack("<Q", nbytes)  # PROTO 4, BINBYTES8 <length>
    return _gzip(pre, nbytes, b".")


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(*_iris())


def _multi_output_forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    features, target = _iris()
    targets = np.column_stack([target, target % 2])
    return RandomForestClassifier(n_estimators=3, random_state=0).fit(features, targets)


def _multi_output_regression() -> Any:
    from sklearn.linear_model import LinearRegression

    features, target = _iris()
    return LinearRegression().fit(features, np.column_stack([target, -target]))


class _TreeState:
    """Pickles as a real sklearn Tree with the given (unchecked) state."""

    def __init__(self, tree: Any, state: dict[str, Any]) -> None:
        self.reduced = (*tree.__reduce__()[:2], state)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduced


def _craft(estimator: Any, change: Callable[[dict[str, Any]], None]) -> None:
    """Replace the estimator's tree_ with one whose state `change` edited."""
    state = estimator.tree_.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["values"] = state["values"].copy()
    change(state)
    estimator.__dict__["tree_"] = _TreeState(estimator.tree_, state)


def _set(field: str, node: int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state["nodes"][field][node] = value

    return change


def _bad_values(state: dict[str, Any]) -> None:
    state["values"] = np.zeros((3, 1, 3))


# Iris, depth 3: nine nodes; children_left [1 -1 3 4 -1 -1 7 -1 -1],
# children_right [2 -1 6 5 -1 -1 8 -1 -1].
_TREE_FAULTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "child_out_of_range": (_set("left_child", 0, 10**9), "child index is out of range"),
    "negative_child": (_set("right_child", 2, -7), "child index is out of range"),
    "cycle": (_set("left_child", 3, 2), "cycle"),
    "shared_node": (_set("right_child", 3, 4), "shared by two parents"),
    "feature_out_of_range": (_set("feature", 0, 50), "feature index outside"),
    "nan_threshold": (_set("threshold", 0, float("nan")), "not a number"),
    "value_shape": (_bad_values, "could not be read"),
}


def crafted_tree(change: Callable[[dict[str, Any]], None]) -> Any:
    """A fitted DecisionTreeClassifier on iris whose tree state `change` edited."""
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(*_iris())
    _craft(model, change)
    return model


def class_count_mismatch() -> Any:
    """The tree has three classes; the estimator claims five."""
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(*_iris())
    model.n_classes_ = 5
    return model


def _crafted_forest() -> Any:
    forest = _forest()
    _craft(forest.estimators_[3], _set("left_child", 0, 10**9))
    return forest


def _crafted_gradient_boosting() -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0)
    model.fit(*_iris())
    _craft(model.estimators_[1, 2], _set("feature", 0, 4))
    return model


def _crafted_hist_gradient_boosting() -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    features, target = _iris()
    model = HistGradientBoostingRegressor(max_iter=3, random_state=0).fit(features, target)
    model._predictors[1][0].nodes["left"][0] = 10**9
    return model


def prediction_memory_blowup() -> Any:
    """A tiny, well-formed pipeline whose PolynomialFeatures claims 60 million output
    columns: predicting 5 rows allocates 2.4 GB. Nothing static catches it; the trial
    prediction in the memory-limited child does. (Not in `malformed_files`: checking it in
    the test process itself would allocate the 2.4 GB.)"""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    features = np.random.default_rng(0).normal(size=(20, 3))
    model = make_pipeline(PolynomialFeatures(2), LinearRegression()).fit(features, np.arange(20.0))
    model[0]._n_out_full = 60_000_000
    return model
