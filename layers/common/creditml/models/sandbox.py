"""The child process that checks a model file: `python -m creditml.models.sandbox MEMORY CPU
ADDRESS_SPACE` reads the file on stdin, limits itself (address space, CPU seconds, no files
written, no core dumps), then loads the model through the allowlist with a memory budget,
measures it, validates its trees, inspects it and makes a trial prediction. Its environment
(creditml.models.vetting.child_environment) carries no credentials.

It reports on stdout, one line each: `stage <name>` as it starts each step (so a crash can be
attributed to one) and finally `result <json>` (`{"schema": ...}` or `{"rejected": reason}`).
A model that crashes, hangs or exhausts memory takes down only this process.
"""

from __future__ import annotations

import json
import resource
import sys
import warnings
from typing import Any

from creditml.models.errors import ModelRejected
from creditml.models.schema import ModelSchema

TRIAL_ROWS = 5
_MB = 1024 * 1024


def check_model(data: bytes, max_memory_bytes: int, stage: Any = None) -> ModelSchema:
    """Everything registration checks, in this process: the schema of the model in `data`,
    or ModelRejected with the reason. `stage(name)` is called as each step begins."""
    from creditml.models.footprint import model_nbytes
    from creditml.models.safe_loading import inspect_model, load_model
    from creditml.models.trees import validate_trees

    report = stage or (lambda name: None)
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
    return schema


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


def _result(data: bytes, max_memory_bytes: int) -> dict[str, Any]:
    try:
        schema = check_model(data, max_memory_bytes, lambda name: _emit(f"stage {name}"))
    except ModelRejected as rejected:
        return {"rejected": rejected.reason}
    except MemoryError:
        return {"rejected": "the model needs more memory than it may use while it is checked"}
    except RecursionError:
        return {"rejected": "the model is nested too deeply to be checked"}
    return {"schema": schema.model_dump()}


def main(argv: list[str]) -> int:
    max_memory_bytes, cpu_seconds, address_space_bytes = (int(value) for value in argv)
    limit_resources(address_space_bytes, cpu_seconds)
    warnings.simplefilter("ignore")
    data = sys.stdin.buffer.read()
    _emit("stage start")
    _emit("result " + json.dumps(_result(data, max_memory_bytes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
