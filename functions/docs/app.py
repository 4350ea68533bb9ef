"""docs function: the OpenAPI document of the whole API and Swagger UI."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.docs import router

app = create_app(router)
handler = lambda_handler(app, service="docs")
