"""Decide whether an uploaded model file may be registered, without risking this process.

`vet_model` hands the file to a child process (creditml.models.sandbox, started with
`sys.executable` and fed on stdin: Lambda has no /dev/shm, so no multiprocessing) that limits
its own address space, CPU time and file writes, then loads the model through the allowlist
with a memory budget, validates its trees and makes a trial prediction. A crash (a signal),
a hang (the wall-clock timeout), running out of CPU time or memory, or any refusal rejects
the upload with a reason; only a child that cannot start at all is an error to retry.

Starting Python and importing scikit-learn takes seconds, so each process keeps one warm
checker, a "zygote" (`python -m creditml.models.sandbox zygote`, started lazily, never by
forking this multi-threaded process): it has imported everything once and forks a fresh
worker per check, which applies the same limits and runs the same code; the zygote enforces
the wall-clock limit and reports how the worker ended. Checks go to it one at a time (a
lock); a zygote that dies, answers late or garbles its answer is killed and started again
once for that check, and if it cannot start the check runs in a one-shot child as before.
The zygote exits when its stdin closes, that is when this process ends.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from creditml.models.errors import ModelRejected
from creditml.models.onnx_proto import GraphRefused, check_graph, max_graph_bytes
from creditml.models.records import CONVERSION_FAILED, Runtime, Vetted
from creditml.models.sandbox import CONVERT_ARGUMENT
from creditml.models.schema import ModelSchema
from creditml.observability import logger

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
    # CPU seconds and wall-clock seconds for the whole check (a zygote's worker: from its
    # fork; a one-shot child: interpreter start included).
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
    return _vet(data, limits, convert=False).schema


def vet_for_serving(data: bytes, limits: VettingLimits) -> Vetted:
    """As `vet_model`, and what will serve the model: the checking process also converts it
    to ONNX and runs the exactness gate (creditml.models.onnx_gate). A conversion that
    fails, crashes or runs out of time never rejects the model: scikit-learn serves it."""
    return _vet(data, limits, convert=True)


def _vet(data: bytes, limits: VettingLimits, convert: bool) -> Vetted:
    if not data:
        raise ModelRejected("the file is empty")
    run = check_in_child(data, limits, convert)
    accepted = _accepted(run.child.stdout)
    if accepted is not None and _stages(run.child.stdout)[-1:] == ["convert"]:
        return _serving(accepted, run.child.stdout, limits)  # the model passed its checks
    if run.timed_out:
        raise ModelRejected(
            f"checking the model took longer than {limits.trial_wall_seconds:g} s "
            f"(it stopped while {_stage_words(_stages(run.child.stdout))})"
        )
    return Vetted(_verdict(run.child, limits))


def _accepted(stdout: bytes | None) -> ModelSchema | None:
    """The schema the checking process accepted the model with, if it got that far."""
    for line in (stdout or b"").decode(errors="replace").splitlines():
        if line.startswith("result "):
            outcome = json.loads(line.removeprefix("result "))
            if "schema" in outcome:
                return ModelSchema.model_validate(outcome["schema"])
    return None


def _serving(schema: ModelSchema, stdout: bytes | None, limits: VettingLimits) -> Vetted:
    """The accepted model with what will serve it: the `runtime` line, or scikit-learn when
    the process ended (crashed, out of time or CPU) before writing it whole. The graph is
    checked here again: the checking process held an untrusted object, so what it says is
    data to verify, never to trust (creditml.models.onnx_proto.check_graph: only what our
    converter emits, within the size whose session fits the model's memory)."""
    for line in (stdout or b"").decode(errors="replace").splitlines():
        if not line.startswith("runtime "):
            continue
        try:
            decided = json.loads(line.removeprefix("runtime "))
            if decided.get("runtime") != Runtime.ONNX:
                return Vetted(
                    schema, Runtime.SKLEARN, str(decided.get("reason") or CONVERSION_FAILED)
                )
            graph = base64.b64decode(decided["graph"], validate=True)
            check_graph(graph, max_bytes=max_graph_bytes(limits.max_memory_bytes))
        except (ValueError, KeyError, TypeError, AttributeError, GraphRefused) as exc:
            logger().warning("Refused the checker's ONNX graph", extra={"reason": str(exc)})
            break
        return Vetted(schema, Runtime.ONNX, None, graph)
    else:
        logger().warning("The model checker ended while converting a model to ONNX")
    return Vetted(schema, Runtime.SKLEARN, CONVERSION_FAILED)


@dataclass(frozen=True)
class CheckRun:
    """How one check's process ended: its exit code (negative: the signal that ended it) and
    streams, whether it was killed for outlasting the wall-clock limit, and its pid."""

    child: subprocess.CompletedProcess[bytes]
    timed_out: bool
    pid: int | None = None


def check_in_child(data: bytes, limits: VettingLimits, convert: bool = False) -> CheckRun:
    """Run the checks on `data` (and, with `convert`, the conversion to ONNX) in a fresh
    process: a worker of this process's zygote, or a one-shot child when no zygote can be
    had."""
    with _ZYGOTE_LOCK:
        zygote = _zygote_for(CHECKER_MODULE)
        for _ in range(2):  # the zygote it has, then (if that one failed) a new one
            try:
                zygote.start()
            except ZygoteFailed as exc:
                logger().warning(
                    "The model checker zygote could not start", extra={"reason": str(exc)}
                )
                zygote.stop()
                break
            try:
                return zygote.check(data, limits, convert)
            except ZygoteFailed as exc:
                logger().warning("The model checker zygote failed", extra={"reason": str(exc)})
                zygote.stop()
    return check_in_one_shot_child(data, limits, convert)


def check_in_one_shot_child(data: bytes, limits: VettingLimits, convert: bool = False) -> CheckRun:
    """Run the checks on `data` in a child started for them alone."""
    command = [
        sys.executable,
        "-B",
        "-m",
        CHECKER_MODULE,
        str(limits.max_memory_bytes),
        str(limits.trial_cpu_seconds),
        str(limits.address_space_bytes(len(data))),
        *([CONVERT_ARGUMENT] if convert else []),
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
        stdout = exc.stdout if isinstance(exc.stdout, bytes) else b""
        return CheckRun(subprocess.CompletedProcess(command, -signal.SIGKILL, stdout), True)
    except OSError as exc:
        raise VettingFailed(f"the model checker could not start ({exc.strerror})") from exc
    return CheckRun(child, False)


class ZygoteFailed(RuntimeError):
    """The zygote could not start, died, or did not answer as it should."""


# How long a zygote may take to import everything, and how long after a check's wall-clock
# limit its answer may come (forking, reaping, passing the file and the streams).
ZYGOTE_START_SECONDS = 60.0
ZYGOTE_REPLY_MARGIN_SECONDS = 15.0
_CHUNK = 1024 * 1024


class Zygote:
    """The parent's end of one warm checker process (creditml.models.sandbox `zygote`)."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._process: subprocess.Popen[bytes] | None = None
        self._received = bytearray()

    @property
    def pid(self) -> int | None:
        """The zygote's pid while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the zygote unless it is running, and wait until it is ready."""
        if self._process is not None and self._process.poll() is None:
            return
        self.stop()
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-B", "-m", self.module, "zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=child_environment(),
            )
        except OSError as exc:
            raise ZygoteFailed(f"it could not be started ({exc.strerror})") from exc
        self._received.clear()
        ready = self._answer(time.monotonic() + ZYGOTE_START_SECONDS)
        if ready.get("ready") != self._process.pid:
            raise ZygoteFailed("it did not say it was ready")

    def check(self, data: bytes, limits: VettingLimits, convert: bool = False) -> CheckRun:
        """Have a fresh worker of the zygote check (and, with `convert`, convert) `data`
        within `limits`."""
        deadline = time.monotonic() + limits.trial_wall_seconds + ZYGOTE_REPLY_MARGIN_SECONDS
        request = {
            "size": len(data),
            "memory": limits.max_memory_bytes,
            "cpu": limits.trial_cpu_seconds,
            "address_space": limits.address_space_bytes(len(data)),
            "wall": limits.trial_wall_seconds,
            "convert": convert,
        }
        self._send(json.dumps(request).encode() + b"\n", deadline)
        self._send(data, deadline)
        reply = self._answer(deadline)
        try:
            stdout = self._receive(int(reply["stdout"]), deadline)
            stderr = self._receive(int(reply["stderr"]), deadline)
            child = subprocess.CompletedProcess(
                [self.module], int(reply["returncode"]), stdout, stderr
            )
            return CheckRun(child, bool(reply["timed_out"]), int(reply["worker"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ZygoteFailed(f"it answered {reply!r}") from exc

    def stop(self) -> None:
        """Kill the zygote (if any) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        _close(process)

    def close(self) -> None:
        """Let the zygote end on its own (its stdin closes), or kill it after a while."""
        process, self._process = self._process, None
        if process is None:
            return
        _close(process)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _pipes(self) -> tuple[int, int]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise ZygoteFailed("it is not running")
        return process.stdin.fileno(), process.stdout.fileno()

    def _send(self, data: bytes, deadline: float) -> None:
        pipe = self._pipes()[0]
        os.set_blocking(pipe, False)
        view = memoryview(data)
        with selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_WRITE)
            while view:
                if not selector.select(_remaining(deadline)):
                    continue
                try:
                    view = view[os.write(pipe, view[:_CHUNK]) :]
                except BlockingIOError:
                    continue
                except OSError as exc:  # BrokenPipeError: it died
                    raise ZygoteFailed(f"it stopped reading ({exc.strerror})") from exc

    def _answer(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._received:
            self._read_more(deadline)
        line, _, rest = bytes(self._received).partition(b"\n")
        self._received[:] = rest
        try:
            answer = json.loads(line)
        except ValueError as exc:
            raise ZygoteFailed(f"it wrote {line[:200]!r}") from exc
        if not isinstance(answer, dict):
            raise ZygoteFailed(f"it wrote {line[:200]!r}")
        return answer

    def _receive(self, size: int, deadline: float) -> bytes:
        while len(self._received) < size:
            self._read_more(deadline)
        received = bytes(self._received[:size])
        del self._received[:size]
        return received

    def _read_more(self, deadline: float) -> None:
        pipe = self._pipes()[1]
        with selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_READ)
            if not selector.select(_remaining(deadline)):
                raise ZygoteFailed("it did not answer in time")
        chunk = os.read(pipe, _CHUNK)
        if not chunk:
            raise ZygoteFailed("it exited")
        self._received += chunk


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ZygoteFailed("it did not answer in time")
    return remaining


def _close(process: subprocess.Popen[bytes]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


_ZYGOTE_LOCK = threading.Lock()
_zygote: Zygote | None = None


def _zygote_for(module: str) -> Zygote:
    """This process's zygote, replaced when the checker module changed (tests point it at a
    variant); the caller holds _ZYGOTE_LOCK."""
    global _zygote
    if _zygote is not None and _zygote.module != module:
        _zygote.close()
        _zygote = None
    if _zygote is None:
        _zygote = Zygote(module)
    return _zygote


def zygote_pid() -> int | None:
    """The pid of this process's zygote, if it runs."""
    with _ZYGOTE_LOCK:
        return _zygote.pid if _zygote is not None else None


@atexit.register
def stop_zygote() -> None:
    """Let this process's zygote end (the next check starts another)."""
    global _zygote
    with _ZYGOTE_LOCK:
        if _zygote is not None:
            _zygote.close()
            _zygote = None


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
    "convert": "converting it to ONNX",
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
