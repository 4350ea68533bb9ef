"""vet_model end to end: a real child process (sys.executable, the file on stdin, setrlimit)
accepts every legitimate model, rejects every malformed and hostile one with its reason,
and turns a crash, a hang or exhausted CPU time into a rejection instead of dying with it."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from creditml.models import vetting
from creditml.models.errors import ModelRejected
from creditml.models.safe_loading import inspect_model
from creditml.models.vetting import VettingLimits, vet_model
from tests.models.corpus import CORPUS
from tests.models.hostile import (
    _set,
    crafted_tree,
    hostile_files,
    malformed_files,
    prediction_memory_blowup,
)

pytestmark = pytest.mark.integration

LIMITS = VettingLimits()


def _dump(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def malformed() -> dict[str, tuple[bytes, str]]:
    return malformed_files()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_legitimate_model_is_accepted(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = CORPUS[name]()
    assert vet_model(_dump(model), LIMITS) == inspect_model(model)


MALFORMED = [
    "empty",
    "truncated",
    "decompression_bomb",
    "bytes_bomb",
    "multi_output_forest",
    "multi_output_regression",
    "tree_child_out_of_range",
    "tree_negative_child",
    "tree_cycle",
    "tree_shared_node",
    "tree_feature_out_of_range",
    "tree_nan_threshold",
    "tree_value_shape",
    "tree_class_count",
    "forest_with_crafted_tree",
    "gradient_boosting_crafted_tree",
    "hist_gradient_boosting_crafted_tree",
]


def test_the_malformed_list_is_complete(malformed: dict[str, tuple[bytes, str]]) -> None:
    assert sorted(MALFORMED) == sorted(malformed)


@pytest.mark.parametrize("name", MALFORMED)
def test_every_malformed_model_is_rejected_with_its_reason(
    malformed: dict[str, tuple[bytes, str]], name: str
) -> None:
    data, reason = malformed[name]
    with pytest.raises(ModelRejected) as rejected:
        vet_model(data, LIMITS)
    assert reason in rejected.value.reason


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[bytes, str]]]:
    marker = tmp_path_factory.mktemp("hostile") / "pwned"
    real = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        np.random.default_rng(0).normal(size=(30, 3)), np.arange(30) % 2
    )
    return marker, hostile_files(marker, real)


@pytest.mark.parametrize(
    "name", ["os_system", "inside_fitted_pipeline", "object_array_payload", "compressed"]
)
def test_hostile_files_are_rejected_in_the_child_and_nothing_runs(
    hostile: tuple[Path, dict[str, tuple[bytes, str]]], name: str
) -> None:
    marker, files = hostile
    data, offender = files[name]
    with pytest.raises(ModelRejected, match="forbidden global") as rejected:
        vet_model(data, LIMITS)
    assert offender in rejected.value.reason
    assert not marker.exists()


def test_a_crafted_tree_that_passed_validation_would_crash_and_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the checker with tree validation switched off, and a tree whose root points to
    # node 10**9 (scikit-learn reads that node's memory on predict)
    monkeypatch.setattr(vetting, "CHECKER_MODULE", "tests.models.unchecked_sandbox")
    data = _dump(crafted_tree(_set("left_child", 0, 10**9)))
    # When it is vetted, Then the child dies with SIGSEGV and this process only rejects it
    with pytest.raises(ModelRejected) as rejected:
        vet_model(data, LIMITS)
    assert rejected.value.reason == (
        "the model crashed the process checking it while making a trial prediction (SIGSEGV)"
    )


def test_running_out_of_cpu_time_rejects() -> None:
    # Importing scikit-learn alone takes more than a CPU second.
    data = _dump(CORPUS["random_forest_classifier"]()[0])
    with pytest.raises(ModelRejected, match="more than 1 s of CPU time"):
        vet_model(data, VettingLimits(trial_cpu_seconds=1, trial_wall_seconds=120))


def test_a_check_that_outlasts_the_wall_clock_is_killed_and_rejects() -> None:
    data = _dump(CORPUS["random_forest_classifier"]()[0])
    started = time.monotonic()
    with pytest.raises(ModelRejected, match=r"took longer than 0.2 s"):
        vet_model(data, VettingLimits(trial_wall_seconds=0.2))
    assert time.monotonic() - started < 30  # killed, not waited for


def test_a_prediction_that_exhausts_the_address_space_rejects() -> None:
    # Given a tiny model that passes every static check but whose prediction allocates 2.4 GB
    # (more than the child may map, though this machine could): only the trial finds it
    data = _dump(prediction_memory_blowup())
    assert len(data) < 10_000
    # When it is vetted, Then the child's MemoryError becomes a rejection
    with pytest.raises(ModelRejected, match="needs more memory than it may use"):
        vet_model(data, LIMITS)
