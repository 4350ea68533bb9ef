"""The web function's services: the API's own services, built by the same composition roots,
plus prediction history without the ML layer and the predict function to invoke."""

from __future__ import annotations

from urllib.parse import urlsplit

from creditml.composition import component
from creditml.composition.core import ledger_repository
from creditml.composition.models import uploads
from creditml.predictions.history import PredictionHistory
from creditml.settings import get_settings
from creditml.storage.functions import HttpFunction
from creditml.storage.prediction_outputs import PredictionOutputs


@component
def prediction_history() -> PredictionHistory:
    settings = get_settings()
    return PredictionHistory(
        ledger_repository(), PredictionOutputs(settings.prediction_outputs_bucket)
    )


@component
def predict_function() -> HttpFunction:
    return HttpFunction(get_settings().predict_function)


@component
def upload_origins() -> tuple[str, ...]:
    """The origins the browser posts model files to (the uploads bucket's), for the publish
    page's Content-Security-Policy. Signing a POST is local: no AWS call. Outside us-east-1
    a new bucket's global host may redirect to its regional one for a while: both."""
    url = uploads().presigned_post("origin-probe", 1, 60, "probe")["url"]
    parts = urlsplit(str(url))
    found = [f"{parts.scheme}://{parts.netloc}"]
    if parts.netloc.endswith(".s3.amazonaws.com"):
        bucket = parts.netloc.removesuffix(".s3.amazonaws.com")
        found.append(f"https://{bucket}.s3.{get_settings().region}.amazonaws.com")
    return tuple(found)
