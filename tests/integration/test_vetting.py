"""vet_model end to end: a real child process (a worker forked by this process's warm
zygote, or a one-shot child; setrlimit in either) accepts every legitimate model, rejects
every malformed and hostile one with its reason, and turns a crash, a hang or exhausted CPU
time into a rejection instead of dying with it. The zygote outlives its workers' crashes, is
restarted when it dies, and exits when its stdin closes."""

from __future__ import annotations

import io
import os
import signal
import threading
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
from creditml.models.inspection import inspect_model
from creditml.models.vetting import VettingLimits, check_in_child, vet_model, zygote_pid
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
UNCHECKED = "tests.models.unchecked_sandbox"


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


def _looping_tree() -> bytes:
    """A tree whose root is its own left child, with a threshold every row is below:
    scikit-learn's predict loops forever (in C, without the GIL). Only the unchecked sandbox
    lets it through (tree validation refuses the cycle)."""

    def loop(state: dict[str, Any]) -> None:
        _set("left_child", 0, 0)(state)
        _set("threshold", 0, np.inf)(state)

    return _dump(crafted_tree(loop))


def _legitimate() -> bytes:
    return _dump(CORPUS["logistic_regression"]()[0])


def test_a_crafted_tree_that_passed_validation_would_crash_and_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the checker with tree validation switched off, and a tree whose root points to
    # node 10**9 (scikit-learn reads that node's memory on predict)
    monkeypatch.setattr(vetting, "CHECKER_MODULE", UNCHECKED)
    data = _dump(crafted_tree(_set("left_child", 0, 10**9)))
    vet_model(_legitimate(), LIMITS)
    zygote = zygote_pid()
    # When it is vetted, Then the worker dies with SIGSEGV and this process only rejects it
    with pytest.raises(ModelRejected) as rejected:
        vet_model(data, LIMITS)
    assert rejected.value.reason == (
        "the model crashed the process checking it while making a trial prediction (SIGSEGV)"
    )
    # And the zygote that forked the worker lives on and checks the next model
    assert zygote_pid() == zygote
    assert check_in_child(_legitimate(), LIMITS).child.returncode == 0
    assert zygote_pid() == zygote


def test_running_out_of_cpu_time_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a model whose prediction never ends (a worker's CPU time starts at its fork)
    monkeypatch.setattr(vetting, "CHECKER_MODULE", UNCHECKED)
    data = _looping_tree()
    # When it is vetted with one CPU second, Then SIGXCPU stops it and the upload is rejected
    with pytest.raises(ModelRejected, match="more than 1 s of CPU time") as rejected:
        vet_model(data, VettingLimits(trial_cpu_seconds=1, trial_wall_seconds=120))
    assert "while making a trial prediction" in rejected.value.reason


def test_a_check_that_outlasts_the_wall_clock_is_killed_and_rejects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vetting, "CHECKER_MODULE", UNCHECKED)
    data = _looping_tree()
    vet_model(_legitimate(), LIMITS)
    zygote = zygote_pid()
    started = time.monotonic()
    with pytest.raises(ModelRejected, match=r"took longer than 0.2 s") as rejected:
        vet_model(data, VettingLimits(trial_wall_seconds=0.2))
    assert time.monotonic() - started < 30  # killed, not waited for
    assert "while making a trial prediction" in rejected.value.reason
    assert zygote_pid() == zygote  # the zygote killed its worker, not itself


def test_a_prediction_that_exhausts_the_address_space_rejects() -> None:
    # Given a tiny model that passes every static check but whose prediction allocates 2.4 GB
    # (more than the child may map, though this machine could): only the trial finds it
    data = _dump(prediction_memory_blowup())
    assert len(data) < 10_000
    # When it is vetted, Then the child's MemoryError becomes a rejection
    with pytest.raises(ModelRejected, match="needs more memory than it may use"):
        vet_model(data, LIMITS)


def test_one_warm_zygote_forks_a_fresh_worker_per_check() -> None:
    data = _legitimate()
    first = check_in_child(data, LIMITS)
    zygote = zygote_pid()
    second = check_in_child(data, LIMITS)
    assert zygote is not None
    assert zygote_pid() == zygote
    assert first.pid is not None
    assert second.pid is not None
    assert len({first.pid, second.pid, zygote, os.getpid()}) == 4
    assert first.child.returncode == second.child.returncode == 0


def test_a_killed_zygote_is_restarted() -> None:
    data = _legitimate()
    vet_model(data, LIMITS)
    killed = zygote_pid()
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    assert vet_model(data, LIMITS).n_features == 4
    assert zygote_pid() not in (None, killed)


def test_a_zygote_killed_during_a_check_is_restarted_for_that_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a check that runs until its wall-clock limit, and its zygote killed meanwhile
    monkeypatch.setattr(vetting, "CHECKER_MODULE", UNCHECKED)
    vet_model(_legitimate(), LIMITS)
    killed = zygote_pid()
    assert killed is not None
    killer = threading.Timer(0.5, os.kill, (killed, signal.SIGKILL))
    killer.start()
    # When it is vetted, Then a new zygote checks it again and gives the verdict
    with pytest.raises(ModelRejected, match=r"took longer than 2 s"):
        vet_model(_looping_tree(), VettingLimits(trial_wall_seconds=2))
    killer.join()
    assert zygote_pid() not in (None, killed)


def test_a_zygote_that_cannot_start_falls_back_to_a_one_shot_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no zygote yet, and too little time for one to import everything
    vetting.stop_zygote()
    monkeypatch.setattr(vetting, "ZYGOTE_START_SECONDS", 0.001)
    # When a model is checked, Then a one-shot child checks it
    run = check_in_child(_legitimate(), LIMITS)
    assert run.pid is None
    assert run.child.returncode == 0
    assert zygote_pid() is None
    assert vet_model(_legitimate(), LIMITS).n_features == 4


def test_the_zygote_exits_when_its_stdin_closes() -> None:
    zygote = vetting.Zygote(vetting.CHECKER_MODULE)
    zygote.start()
    process = zygote._process
    assert process is not None
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0  # on its own, not killed
    zygote.stop()
