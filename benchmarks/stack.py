"""What several benchmarks share: a local stack of their own, model files of a given size,
publishing a model through the real services, percentiles."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ADMIN_PASSWORD = "bench admin password"  # noqa: S105 - the benchmark stack's own admin


@contextmanager
def local_stack() -> Iterator[tuple[dict[str, Any], Path, str]]:
    """A `creditml dev` of its own in a temporary project copy: (its state, its state file,
    the API's URL). Stopped on exit."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "template.yaml").write_text((ROOT / "template.yaml").read_text())
        os.symlink(ROOT / "functions", work / "functions")
        # Output to a file: a pipe nobody drains would block the stack once it fills.
        with (work / "stack.log").open("w") as log:
            process = subprocess.Popen(
                [str(Path(PYTHON).with_name("creditml")), "dev", "--port", "0"],
                cwd=work,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "CREDITML_ADMIN_PASSWORD": ADMIN_PASSWORD},
            )
            try:
                deadline = time.monotonic() + 120
                while "Press Ctrl-C" not in (printed := (work / "stack.log").read_text()):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(printed[-2000:])
                    time.sleep(0.1)
                url = next(
                    line.split()[1] for line in printed.splitlines() if line.split()[:1] == ["API"]
                )
                state_file = work / ".creditml" / "dev-stack.json"
                yield json.loads(state_file.read_text()), state_file, url
            finally:
                process.terminate()
                process.wait(timeout=30)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def file_of(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def forest(target_bytes: int, seed: int = 0) -> RandomForestClassifier:
    """A forest of roughly `target_bytes` (fully grown trees on noisy labels)."""
    rng = np.random.default_rng(seed)
    samples = max(200, target_bytes // 1600)
    features = rng.normal(size=(samples, 10))
    labels = rng.integers(0, 2, size=samples)
    trees = max(1, round(target_bytes / (samples * 31)))
    return RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1).fit(
        features, labels
    )


def publish_directly(owner_id: str, data: bytes, price: int = 1) -> str:
    """Create and register a model through the real services (no HTTP)."""
    from creditml.auth.roles import Role
    from creditml.auth.tokens import AccessClaims
    from creditml.composition.models import model_service
    from creditml.composition.registration import registrar
    from creditml.models.service import upload_key
    from creditml.settings import get_settings
    from creditml.storage.model_parts import Uploads

    caller = AccessClaims(owner_id, Role.ADMIN, 0)
    ticket = model_service().create(caller, "bench", None, price)
    key = upload_key(ticket.model.id, 1)
    # With the presigned POST's fields: registration checks the upload token they carry.
    Uploads(get_settings().uploads_bucket).put(key, data, ticket.fields)
    # In-process there is no S3 event: register here. Against the local stack its own event
    # delivery may win the race (registration is idempotent); either way, wait for ready.
    registrar().register(key)
    deadline = time.monotonic() + 120
    while model_service().show(caller, ticket.model.id).serving_version != 1:
        assert time.monotonic() < deadline, "model did not become ready"
        time.sleep(0.05)
    return ticket.model.id
