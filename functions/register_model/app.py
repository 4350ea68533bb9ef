"""register_model function: S3 ObjectCreated on the uploads bucket -> validate, encrypt,
split and register the model version (see creditml.models.registration)."""

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from creditml.composition.registration import registrar
from creditml.observability import observed, record_metric


@observed("register_model")
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    results = []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)
        registration = registrar().register(key)
        record_metric(f"Models{registration.outcome.title()}", 1)
        results.append(
            {"key": key, "outcome": str(registration.outcome), "reason": registration.reason}
        )
    return {"registrations": results}
