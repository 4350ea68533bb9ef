"""Safe loading: a hostile corpus is rejected with the offending global named and a marker
file proves nothing ran; a real corpus loads and predicts exactly as plain joblib does."""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from creditml.models.errors import ModelRejected
from creditml.models.inspection import inspect_model
from creditml.models.safe_loading import load_model
from tests.models.corpus import CORPUS
from tests.models.hostile import hostile_files

_BUILT: dict[str, tuple[Any, Any]] = {}


def _built(name: str) -> tuple[Any, Any]:
    if name not in _BUILT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _BUILT[name] = CORPUS[name]()
    return _BUILT[name]


def _dump(model: Any, compress: int = 0) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=compress)
    return buffer.getvalue()


def test_the_corpus_is_broad() -> None:
    assert len(CORPUS) >= 12


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_real_models_load_and_predict_like_joblib(name: str) -> None:
    model, rows = _built(name)
    data = _dump(model)
    loaded = load_model(data)
    reference = joblib.load(io.BytesIO(data))
    np.testing.assert_array_equal(loaded.predict(rows), reference.predict(rows))
    if hasattr(reference, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(rows), reference.predict_proba(rows))
    schema = inspect_model(loaded)
    assert schema.n_features == rows.shape[1]


@pytest.mark.parametrize("compress", [3, ("lzma", 3), ("gzip", 3)])
def test_compressed_files_load(compress: Any) -> None:
    model, rows = _built("random_forest_classifier")
    loaded = load_model(_dump(model, compress=compress))
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))


def test_plain_pickles_load_too() -> None:
    model, rows = _built("scaled_logistic_pipeline")
    np.testing.assert_array_equal(
        load_model(pickle.dumps(model)).predict(rows), model.predict(rows)
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[bytes, str]]]:
    marker = tmp_path_factory.mktemp("hostile") / "pwned"
    real = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        np.random.default_rng(0).normal(size=(30, 3)), np.arange(30) % 2
    )
    return marker, hostile_files(marker, real)


HOSTILE = [
    "os_system",
    "eval",
    "exec",
    "subprocess",
    "getattr_gadget",
    "import_gadget",
    "numpy_testing_runstring",
    "numpy_ufunc_reconstruct",
    "operator_methodcaller",
    "functools_partial",
    "joblib_compat_wrapper",
    "inside_fitted_pipeline",
    "inside_object_array",
    "object_array_payload",
    "file_reading_vectorizer",
    "compressed",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_files_are_rejected_and_nothing_runs(
    hostile: tuple[Path, dict[str, tuple[bytes, str]]], name: str
) -> None:
    marker, files = hostile
    data, offender = files[name]
    with pytest.raises(ModelRejected) as rejected:
        load_model(data)
    assert offender in rejected.value.reason
    assert "forbidden global" in rejected.value.reason
    assert not marker.exists(), f"{name} executed code"


def test_every_hostile_file_would_run_under_plain_pickle(
    hostile: tuple[Path, dict[str, tuple[bytes, str]]],
) -> None:
    # Guard the guard: the marker does appear when an unsafe loader reads one of them.
    marker, files = hostile
    pickle.loads(files["eval"][0])  # noqa: S301 - deliberately unsafe, to prove the marker works
    assert marker.exists()
    marker.unlink()
    assert set(HOSTILE) == set(files)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not a readable joblib or pickle file"),
        (b"\x80\x05\x95", "not a readable joblib or pickle file"),
    ],
)
def test_unreadable_files_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(ModelRejected, match=reason):
        load_model(data)


def test_truncated_model_is_rejected() -> None:
    data = _dump(_built("random_forest_classifier")[0])
    with pytest.raises(ModelRejected, match=r"not a readable|could not be read"):
        load_model(data[: len(data) // 2])


def test_objects_that_cannot_predict_are_rejected() -> None:
    with pytest.raises(ModelRejected, match="no predict method"):
        inspect_model(load_model(pickle.dumps({"weights": [1, 2, 3]})))
    with pytest.raises(ModelRejected, match="not fitted"):
        inspect_model(load_model(_dump(LogisticRegression())))


def test_models_without_feature_count_are_rejected() -> None:
    model = pickle.loads(pickle.dumps(_built("logistic_regression")[0]))  # noqa: S301
    del model.n_features_in_
    with pytest.raises(ModelRejected, match="number of input features"):
        inspect_model(load_model(_dump(model)))


def test_schema_reports_names_classes_task_and_estimator() -> None:
    model, _ = _built("scaled_logistic_pipeline")
    named = pickle.loads(pickle.dumps(model))  # noqa: S301
    named.steps[0][1].feature_names_in_ = np.array(["a", "b", "c", "d"], dtype=object)
    schema = inspect_model(load_model(_dump(named)))
    assert schema.feature_names == ["a", "b", "c", "d"]
    assert schema.classes == [0, 1, 2]
    assert (schema.task, schema.probabilities) == ("classification", True)
    assert schema.estimator == "Pipeline[StandardScaler, LogisticRegression]"
    regression = inspect_model(load_model(_dump(_built("ridge")[0])))
    assert (regression.task, regression.classes, regression.probabilities) == (
        "regression",
        None,
        False,
    )
