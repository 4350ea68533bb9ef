"""predict function: POST /models/{id}/predictions (billed), GET /predictions[/{id}]."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.predictions import router

app = create_app(router)
handler = lambda_handler(app, service="predict")
