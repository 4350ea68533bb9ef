"""The child process that checks a model file: `python -m creditml.models.sandbox MEMORY CPU
ADDRESS_SPACE` reads the file on stdin, limits itself (address space, CPU seconds, no files
written, no core dumps), then loads the model through the allowlist with a memory budget,
measures it, validates its trees, inspects it and makes a trial prediction. Its environment
(creditml.models.vetting.child_environment) carries no credentials.

It reports on stdout, one line each: `stage <name>` as it starts each step (so a crash can be
attributed to one) and finally `result <json>` (`{"schema": ...}` or `{"rejected": reason}`).
Asked to (`convert`), it then converts an accepted model to ONNX and checks the graph against
the model (creditml.models.onnx_gate): `stage convert`, then `runtime <json>` (`{"runtime":
"onnx", "graph": base64, ...}` or `{"runtime": "sklearn", "reason": ...}`).
A model that crashes, hangs or exhausts memory takes down only this process.

`python -m creditml.models.sandbox zygote` is the warm variant (creditml.models.vetting
keeps one per process): it imports numpy, scipy, scikit-learn and every allowlisted module
once, then serves requests on stdin (a JSON header line with the limits and the file's size,
then the file) by forking a worker per request. The worker limits itself exactly as the
one-shot child does, runs the same checks and reports the same lines on a pipe of its own,
then leaves through `os._exit`; the zygote kills it at the wall-clock limit, reaps it and
answers on stdout with a JSON header line (worker pid, exit code or negative signal, whether
it timed out, the sizes of its output and error streams) followed by those two streams. The
zygote is single-threaded (one BLAS/OpenMP thread, set in its environment), only reads its
state in the worker (copy-on-write), and exits when its stdin closes.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import resource
import selectors
import signal
import sys
import time
import traceback
import warnings
from typing import Any, BinaryIO, NoReturn

from creditml.models.errors import ModelRejected
from creditml.models.records import CONVERSION_FAILED
from creditml.models.schema import ModelSchema

TRIAL_ROWS = 5
_MB = 1024 * 1024


def check_model(data: bytes, max_memory_bytes: int, stage: Any = None) -> ModelSchema:
    """Everything registration checks, in this process: the schema of the model in `data`,
    or ModelRejected with the reason. `stage(name)` is called as each step begins."""
    return _checked(data, max_memory_bytes, stage or (lambda name: None))[1]


def _checked(data: bytes, max_memory_bytes: int, report: Any) -> tuple[Any, ModelSchema]:
    from creditml.models.footprint import model_nbytes
    from creditml.models.inspection import inspect_model
    from creditml.models.safe_loading import load_model
    from creditml.models.trees import validate_trees

    report("load")
    model = load_model(data, max_memory_bytes)
    report("measure")
    if model_nbytes(model) > max_memory_bytes:
        raise ModelRejected(
            f"the model needs more than {max_memory_bytes // _MB} MB of memory once loaded "
            f"(the limit is {max_memory_bytes // _MB} MB)"
        )
    report("validate")
    validate_trees(model)
    schema = inspect_model(model)
    report("trial")
    trial_predict(model, schema)
    return model, schema


def serving_runtime(model: Any, schema: ModelSchema, max_memory_bytes: int) -> dict[str, Any]:
    """What will serve an accepted model: its exact ONNX graph (base64) when it converts,
    its session fits the memory a model may use, and it passes the exactness gate; else
    scikit-learn with the reason. Never rejects it."""
    from creditml.models.onnx_gate import decide_runtime

    try:
        decision = decide_runtime(model, schema, max_session_bytes=max_memory_bytes)
    except Exception:  # noqa: BLE001 - a failure of ours: the model is served as it is
        traceback.print_exc()
        return {"runtime": "sklearn", "reason": CONVERSION_FAILED}
    graph = decision.graph
    return {
        "runtime": str(decision.runtime),
        "reason": decision.reason,
        "rows_checked": decision.rows_checked,
        "graph": base64.b64encode(graph).decode() if graph is not None else None,
    }


def trial_predict(model: Any, schema: ModelSchema) -> None:
    """Predict (and predict_proba, when offered) on a row of zeros and a few random rows.

    A model that refuses plain numeric rows (it expects categories, say) with ValueError or
    TypeError is not rejected for it: its callers send the inputs it was fitted on. Any
    other error, and any output that is not one value (or one probability per class) per
    row, rejects it.
    """
    import numpy as np

    generator = np.random.default_rng(0)
    rows = np.vstack(
        [np.zeros((1, schema.n_features)), generator.normal(size=(4, schema.n_features))]
    )
    try:
        outputs = np.asarray(model.predict(rows))
        probabilities = np.asarray(model.predict_proba(rows)) if schema.probabilities else None
    except (ValueError, TypeError):
        return
    except MemoryError:
        raise
    except Exception as exc:
        raise ModelRejected(f"the model failed a trial prediction ({type(exc).__name__})") from exc
    if outputs.shape != (TRIAL_ROWS,):
        raise ModelRejected(
            f"the model predicts {_shape(outputs)} for {TRIAL_ROWS} rows; only models with one "
            "output per row can be served"
        )
    width = len(schema.classes) if schema.classes is not None else None
    if probabilities is not None and probabilities.shape != (TRIAL_ROWS, width):
        raise ModelRejected(
            f"the model's probabilities have shape {_shape(probabilities)} for {TRIAL_ROWS} "
            f"rows and {width} classes"
        )


def _shape(array: Any) -> str:
    return "x".join(str(size) for size in array.shape) or "a scalar"


def limit_resources(address_space_bytes: int, cpu_seconds: int) -> None:
    """This process may map at most `address_space_bytes`, use `cpu_seconds` of CPU (then
    SIGXCPU), write no file and leave no core dump."""
    resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _report(data: bytes, max_memory_bytes: int, convert: bool) -> None:
    """Check `data`, emitting each stage and the `result` line; then, when asked and the
    model was accepted, the `runtime` line (after a `convert` stage: a crash or time limit
    while converting leaves the accepted result standing, served by scikit-learn)."""
    model = None
    try:
        model, schema = _checked(data, max_memory_bytes, lambda name: _emit(f"stage {name}"))
        outcome: dict[str, Any] = {"schema": schema.model_dump()}
    except ModelRejected as rejected:
        outcome = {"rejected": rejected.reason}
    except MemoryError:
        outcome = {"rejected": "the model needs more memory than it may use while it is checked"}
    except RecursionError:
        outcome = {"rejected": "the model is nested too deeply to be checked"}
    _emit("result " + json.dumps(outcome))
    if convert and model is not None:
        _emit("stage convert")
        _emit("runtime " + json.dumps(serving_runtime(model, schema, max_memory_bytes)))


def main(argv: list[str]) -> int:
    if argv == [ZYGOTE_ARGUMENT]:
        warnings.simplefilter("ignore")
        return serve(sys.stdin.buffer, sys.stdout.buffer)
    max_memory_bytes, cpu_seconds, address_space_bytes = (int(value) for value in argv[:3])
    convert = argv[3:] == [CONVERT_ARGUMENT]
    limit_resources(address_space_bytes, cpu_seconds)
    warnings.simplefilter("ignore")
    data = sys.stdin.buffer.read()
    _emit("stage start")
    _report(data, max_memory_bytes, convert)
    return 0


# The zygote: one warm process that forks a worker per check.

ZYGOTE_ARGUMENT = "zygote"
CONVERT_ARGUMENT = "convert"  # the one-shot child's 4th argument: also decide the runtime
# What is kept of a worker's error stream (the end holds the exception).
_STDERR_TAIL = 64 * 1024
# What is kept of a worker's output stream: its stage lines, its result and a graph in
# base64 (a graph's session may take at most the model's memory, about 28 bytes per graph
# byte: for the default 512 MB, an 18 MB graph). The rest is dropped, never buffered: a worker
# cannot make the zygote, or the registering function, hold more.
STDOUT_LIMIT = 128 * 1024 * 1024
_PR_SET_PDEATHSIG = 1


def preload() -> None:
    """Import, once, what the checks use: the checking modules, and the module of every
    allowlisted global (numpy, scipy, scikit-learn), so a worker starts with them loaded."""
    import ctypes  # noqa: F401 - the worker uses it to die with the zygote

    from creditml.models import footprint, onnx_gate, onnx_runtime, safe_loading, trees  # noqa: F401
    from creditml.models.allowlist import ALLOWED_GLOBALS

    for qualified in sorted(ALLOWED_GLOBALS):
        parts = qualified.split(".")
        # "module.qualname": the longest prefix that imports is the module.
        for end in range(len(parts) - 1, 0, -1):
            try:
                importlib.import_module(".".join(parts[:end]))
            except ImportError:
                continue
            break


def serve(requests: BinaryIO, replies: BinaryIO) -> int:
    """Answer check requests until `requests` closes (the parent is gone or done)."""
    preload()
    _reply(replies, {"ready": os.getpid()})
    while _serve_one(requests, replies):
        pass
    return 0


def _serve_one(requests: BinaryIO, replies: BinaryIO) -> bool:
    # The file goes with this frame: the next worker's address space must not hold it.
    header = requests.readline()
    if not header:
        return False
    request = json.loads(header)
    data = requests.read(int(request["size"]))
    if len(data) != request["size"]:
        return False
    _reply(replies, *run_worker(data, request))
    return True


def _reply(replies: BinaryIO, header: dict[str, Any], *streams: bytes) -> None:
    replies.write(json.dumps(header).encode() + b"\n")
    for stream in streams:
        replies.write(stream)
    replies.flush()


def run_worker(data: bytes, request: dict[str, Any]) -> tuple[dict[str, Any], bytes, bytes]:
    """Check `data` in a forked worker limited as `request` says; the reply header and the
    worker's output and error streams."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    worker = os.fork()
    if worker == 0:
        _work(data, request, (out_read, out_write, err_read, err_write))
    os.close(out_write)
    os.close(err_write)
    deadline = time.monotonic() + float(request["wall"])
    out, err, finished = _collect(out_read, err_read, deadline)
    returncode, timed_out = _reap(worker, deadline if finished else None)
    header = {
        "worker": worker,
        "returncode": returncode,
        "timed_out": timed_out,
        "stdout": len(out),
        "stderr": len(err),
    }
    return header, out, err


def _work(data: bytes, request: dict[str, Any], pipes: tuple[int, int, int, int]) -> NoReturn:
    """The worker: never returns into the zygote's loop, whatever happens."""
    code = 1
    try:
        _, out_write, _, err_write = pipes
        # Nothing of the zygote's own pipes stays open here: stdin is /dev/null, stdout and
        # stderr are this worker's pipes.
        os.dup2(out_write, 1)
        os.dup2(err_write, 2)
        for pipe in pipes:
            os.close(pipe)
        nothing = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nothing, 0)
        os.close(nothing)
        _die_with_zygote()
        limit_resources(int(request["address_space"]), int(request["cpu"]))
        _emit("stage start")
        _report(data, int(request["memory"]), bool(request.get("convert")))
        code = 0
    except BaseException:  # noqa: BLE001 - reported on stderr, the exit status says it failed
        traceback.print_exc()
    finally:
        _flush()
        os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, MemoryError):
            stream.flush()


def _die_with_zygote() -> None:
    """A worker outliving its zygote (killed meanwhile) would be nobody's to stop."""
    zygote = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:
        os._exit(1)


def _collect(out_read: int, err_read: int, deadline: float) -> tuple[bytes, bytes, bool]:
    """The worker's output and error streams until both close or the deadline passes
    (then False)."""
    received = {out_read: bytearray(), err_read: bytearray()}
    with selectors.DefaultSelector() as selector:
        for pipe in received:
            selector.register(pipe, selectors.EVENT_READ)
        while selector.get_map() and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                received[key.fd] += chunk
            if len(received[err_read]) > 2 * _STDERR_TAIL:
                del received[err_read][:-_STDERR_TAIL]
            if len(received[out_read]) > STDOUT_LIMIT:
                del received[out_read][STDOUT_LIMIT:]
        finished = not selector.get_map()
    for pipe in received:
        os.close(pipe)
    return bytes(received[out_read]), bytes(received[err_read][-_STDERR_TAIL:]), finished


def _reap(worker: int, deadline: float | None) -> tuple[int, bool]:
    """The worker's exit code (negative: the signal that ended it) and whether it was
    killed for time: at once if `deadline` is None, else when it passes."""
    pause = 0.0005
    while deadline is not None:
        done, status = os.waitpid(worker, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() >= deadline:
            break
        time.sleep(pause)
        pause = min(2 * pause, 0.05)
    os.kill(worker, signal.SIGKILL)
    _, status = os.waitpid(worker, 0)
    return os.waitstatus_to_exitcode(status), True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
