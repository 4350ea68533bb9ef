"""Hostile model files: each tries to run code on load. Every one writes MARKER if it ever
executes, so a test can prove that nothing ran."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
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
