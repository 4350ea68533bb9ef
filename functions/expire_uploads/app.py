"""expire_uploads function: on a schedule, mark expired the pending model versions whose
upload never arrived (see creditml.models.registration.expire_overdue_uploads)."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from creditml.composition.models import expire_uploads
from creditml.observability import observed, record_metric


@observed("expire_uploads")
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    expired = expire_uploads()
    record_metric("UploadsExpired", expired)
    return {"expired": expired}
