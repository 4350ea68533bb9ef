"""register_model function: S3 ObjectCreated on the uploads bucket -> validate, encrypt,
split and register the model version (see creditml.models.registration)."""

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from creditml.models.wiring import registrar

logger = Logger(service="register_model")
tracer = Tracer(service="register_model")
metrics = Metrics(service="register_model")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    results = []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)
        registration = registrar().register(key)
        metrics.add_metric(
            name=f"Models{registration.outcome.title()}", unit=MetricUnit.Count, value=1
        )
        results.append(
            {"key": key, "outcome": str(registration.outcome), "reason": registration.reason}
        )
    return {"registrations": results}
