"""The model checker with a converter that crashes its process (as a fault in ONNX Runtime
would): proves that a model which passed its checks is still registered, served by
scikit-learn, when converting it kills the checking process."""

from __future__ import annotations

import os
import sys
from typing import Any

import creditml.models.onnx_gate
from creditml.models import sandbox


def _crash(model: Any, schema: Any, **limits: Any) -> Any:
    os.abort()


if __name__ == "__main__":
    creditml.models.onnx_gate.decide_runtime = _crash
    sys.exit(sandbox.main(sys.argv[1:]))
