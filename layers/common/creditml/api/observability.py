"""Business metrics (CloudWatch EMF through Powertools): recorded during a request,
flushed by the function's `log_metrics` decorator (creditml.api.app.lambda_handler)."""

from __future__ import annotations

from functools import cache

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit


@cache
def _metrics() -> Metrics:
    # Powertools shares one metric set between Metrics instances of a process.
    return Metrics()


def record_metric(name: str, value: float) -> None:
    """Add a metric; names ending in "Time" are milliseconds, all others counts."""
    unit = MetricUnit.Milliseconds if name.endswith("Time") else MetricUnit.Count
    _metrics().add_metric(name=name, unit=unit, value=value)
