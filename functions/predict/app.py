"""predict function: POST /models/{id}/predictions (billed), GET /predictions[/{id}]."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.predictions import router
from creditml.predictions.warmup import import_model_libraries

app = create_app(router)
handler = lambda_handler(app, service="predict")
# At init, so a SnapStart snapshot holds them instead of the first request paying for them.
import_model_libraries()
