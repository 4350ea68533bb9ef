"""Load a model file without executing anything it did not earn.

A joblib or pickle file is a program: every global it names is imported and may be called.
`load_model` reads it with an unpickler whose `find_class` admits only the exact globals in
`ALLOWED_GLOBALS` (estimator classes, their internal types, numpy/scipy reconstructors),
never a module prefix: `numpy.testing` alone holds an `exec`, and `numpy`'s own ufunc
reconstructor imports any module by name. joblib reads object arrays through the same
`find_class`, so a hostile global inside an array is refused too. Anything else rejects the
file with a reason that names the offending global.
"""

from __future__ import annotations

import io
import lzma
import pickle
import struct
import zlib
from typing import Any

from joblib.numpy_pickle import NumpyUnpickler
from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

from creditml.models.allowlist import ALLOWED_GLOBALS
from creditml.models.errors import ModelRejected
from creditml.models.schema import ModelSchema


class _AllowlistUnpickler(NumpyUnpickler):  # type: ignore[misc]
    def find_class(self, module: str, name: str) -> Any:
        if f"{module}.{name}" not in ALLOWED_GLOBALS:
            raise ModelRejected(f"the file references a forbidden global: {module}.{name}")
        return super().find_class(module, name)


def load_model(data: bytes) -> Any:
    """The object in a joblib/pickle file, loaded through the allowlist; ModelRejected
    (with a reason) for anything unsafe, empty, truncated or not a model file."""
    if not data:
        raise ModelRejected("the file is empty")
    try:
        with _validate_fileobject_and_memmap(io.BytesIO(data), "", None) as (stream, _):
            return _AllowlistUnpickler("", stream, ensure_native_byte_order=True).load()
    except ModelRejected:
        raise
    except (EOFError, pickle.UnpicklingError, struct.error, zlib.error, lzma.LZMAError) as exc:
        raise ModelRejected(
            "the file is not a readable joblib or pickle file (truncated, corrupt or another "
            "format)"
        ) from exc
    except Exception as exc:
        raise ModelRejected(
            f"the file could not be read as a model ({type(exc).__name__})"
        ) from exc


def inspect_model(model: Any) -> ModelSchema:
    """The input schema of a fitted estimator; ModelRejected when it cannot serve predictions."""
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not callable(getattr(model, "predict", None)):
        raise ModelRejected(f"a {type(model).__name__} has no predict method")
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise ModelRejected(f"the {type(model).__name__} is not fitted") from exc
    except TypeError as exc:
        raise ModelRejected(f"a {type(model).__name__} is not a scikit-learn estimator") from exc
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int) or n_features < 1:
        raise ModelRejected("the model does not record its number of input features")
    names = getattr(model, "feature_names_in_", None)
    classes = getattr(model, "classes_", None) if is_classifier(model) else None
    task = (
        "classification"
        if is_classifier(model)
        else "regression"
        if is_regressor(model)
        else "other"
    )
    try:
        probabilities = callable(getattr(model, "predict_proba", None))
    except AttributeError:
        probabilities = False
    return ModelSchema(
        n_features=n_features,
        feature_names=[str(name) for name in names] if names is not None else None,
        classes=[_json_scalar(label) for label in classes] if classes is not None else None,
        task=task,
        estimator=_describe(model),
        probabilities=probabilities,
    )


def _json_scalar(value: Any) -> str | int | float | bool:
    plain = value.item() if hasattr(value, "item") else value
    return plain if isinstance(plain, str | int | float | bool) else str(plain)


def _describe(model: Any) -> str:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        inner = ", ".join(_describe(step) for _, step in steps if step not in (None, "passthrough"))
        return f"{type(model).__name__}[{inner}]"
    return type(model).__name__
