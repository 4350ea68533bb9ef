"""usage_aggregator function: new debit entries on the ledger's stream -> usage counters
(see creditml.storage.usage). Exactly once per debit, whatever the stream redelivers."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from creditml.composition.reports import usage_aggregator
from creditml.observability import observed, record_metric
from creditml.storage.usage import debit_from_image


@observed("usage_aggregator")
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, Any]:
    debits = []
    for record in event.records:
        image = record.raw_event.get("dynamodb", {}).get("NewImage") or {}
        debit = debit_from_image(image) if record.raw_event.get("eventName") == "INSERT" else None
        if debit is not None:
            debits.append(debit)
    counted = usage_aggregator().count(debits)
    record_metric("UsageDebitsCounted", counted)
    # All or nothing: on an error the whole batch comes again, and what was committed is
    # not counted twice (the markers), so no partial-failure list is needed.
    return {"batchItemFailures": []}
