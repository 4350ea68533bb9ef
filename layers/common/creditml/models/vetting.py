"""Decide whether an uploaded model file may be registered, without risking this process.

`vet_model` hands the file to a child process (creditml.models.sandbox, started with
`sys.executable` and fed on stdin: Lambda has no /dev/shm, so no multiprocessing) that limits
its own address space, CPU time and file writes, then loads the model through the allowlist
with a memory budget, validates its trees and makes a trial prediction. A crash (a signal),
a hang (the wall-clock timeout), running out of CPU time or memory, or any refusal rejects
the upload with a reason; only a child that cannot start at all is an error to retry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from creditml.models.errors import ModelRejected
from creditml.models.schema import ModelSchema

if TYPE_CHECKING:
    from creditml.settings import Settings

_MB = 1024 * 1024
# The module the child runs (tests point it at a variant with a check switched off).
CHECKER_MODULE = "creditml.models.sandbox"


@dataclass(frozen=True)
class VettingLimits:
    """Bounds a model must fit to be registered."""

    # Memory the loaded model may take (arrays' bytes plus object overhead).
    max_memory_bytes: int = 512 * _MB
    # CPU seconds and wall-clock seconds for the whole check, interpreter start included.
    trial_cpu_seconds: int = 60
    trial_wall_seconds: float = 120.0
    # Address space the child needs besides the model: the interpreter, numpy, scipy and
    # scikit-learn map about 300 MB (measured with one BLAS thread), plus working room.
    runtime_overhead_bytes: int = 768 * _MB

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> VettingLimits:
        """The limits configured by MODEL_MAX_MEMORY_MB, MODEL_TRIAL_CPU_SECONDS and
        MODEL_TRIAL_WALL_SECONDS."""
        if settings is None:
            from creditml.settings import get_settings

            settings = get_settings()
        return cls(
            max_memory_bytes=settings.model_max_memory_mb * _MB,
            trial_cpu_seconds=settings.model_trial_cpu_seconds,
            trial_wall_seconds=float(settings.model_trial_wall_seconds),
        )

    def address_space_bytes(self, file_bytes: int) -> int:
        """The child's RLIMIT_AS: the file, the model loaded (and a transient copy while it is
        built), and the runtime."""
        return file_bytes + 2 * self.max_memory_bytes + self.runtime_overhead_bytes


class VettingFailed(RuntimeError):
    """The check itself could not run (not the model's fault): retry it."""


def vet_model(data: bytes, limits: VettingLimits) -> ModelSchema:
    """The schema of the model in `data`; ModelRejected (with a reason for its publisher) if
    it may not be served, VettingFailed if the checking process could not run."""
    if not data:
        raise ModelRejected("the file is empty")
    command = [
        sys.executable,
        "-B",
        "-m",
        CHECKER_MODULE,
        str(limits.max_memory_bytes),
        str(limits.trial_cpu_seconds),
        str(limits.address_space_bytes(len(data))),
    ]
    try:
        child = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
            command,
            input=data,
            capture_output=True,
            timeout=limits.trial_wall_seconds,
            check=False,
            env=child_environment(),
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelRejected(
            f"checking the model took longer than {limits.trial_wall_seconds:g} s "
            f"(it stopped while {_stage_words(_stages(exc.stdout))})"
        ) from exc
    except OSError as exc:
        raise VettingFailed(f"the model checker could not start ({exc.strerror})") from exc
    return _verdict(child, limits)


# What the child inherits: enough to start the interpreter, nothing else (in particular no
# AWS credentials, which Lambda hands out only as environment variables).
_INHERITED = ("PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TZ")


def child_environment() -> dict[str, str]:
    """The child's environment: this process's import path as PYTHONPATH (Lambda puts the
    layers on sys.path at start-up, not in PYTHONPATH) and one BLAS/OpenMP thread (each
    extra thread reserves address space, and the trial is tiny)."""
    inherited = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    return {
        **inherited,
        "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry),
        "PYTHONNOUSERSITE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


_STAGE_WORDS = {
    "start": "starting",
    "load": "loading",
    "measure": "measuring its memory",
    "validate": "validating its structure",
    "trial": "making a trial prediction",
}


def _stages(stdout: bytes | None) -> list[str]:
    lines = (stdout or b"").decode(errors="replace").splitlines()
    return [line.removeprefix("stage ") for line in lines if line.startswith("stage ")]


def _stage_words(stages: list[str]) -> str:
    return _STAGE_WORDS.get(stages[-1] if stages else "start", "starting")


def _verdict(child: subprocess.CompletedProcess[bytes], limits: VettingLimits) -> ModelSchema:
    lines = child.stdout.decode(errors="replace").splitlines()
    results = [line.removeprefix("result ") for line in lines if line.startswith("result ")]
    if child.returncode == 0 and results:
        outcome = json.loads(results[-1])
        if "rejected" in outcome:
            raise ModelRejected(str(outcome["rejected"]))
        return ModelSchema.model_validate(outcome["schema"])
    stages = _stages(child.stdout)
    doing = _stage_words(stages)
    if child.returncode < 0:
        raise ModelRejected(_signal_reason(-child.returncode, doing, limits))
    if b"MemoryError" in child.stderr[-4096:]:
        raise ModelRejected(
            f"the model needs more memory than it may use while it is checked ({doing})"
        )
    if not stages:  # the interpreter never got as far as reading the file
        raise VettingFailed(
            f"the model checker exited with status {child.returncode} before it started: "
            + child.stderr[-2000:].decode(errors="replace")
        )
    raise ModelRejected(
        f"the model could not be checked: the checking process exited with status "
        f"{child.returncode} while {doing}"
    )


def _signal_reason(number: int, doing: str, limits: VettingLimits) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    if number == signal.SIGXCPU:
        return (
            f"checking the model used more than {limits.trial_cpu_seconds} s of CPU time "
            f"(it stopped while {doing})"
        )
    return f"the model crashed the process checking it while {doing} ({name})"
