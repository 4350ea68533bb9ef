"""models function: create (with presigned upload), list, show, update and archive models."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.models import router

app = create_app(router)
handler = lambda_handler(app, service="models")
