"""docs function: the OpenAPI document of the whole API and Swagger UI, and the answer to
every request no other function's route claims (template.yaml's `ANY /{proxy+}`): 405 with
`Allow` when the path exists with other methods, 404 otherwise."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.catalog import all_routers
from creditml.api.routes.docs import router

app = create_app(router, allow_from=all_routers())
handler = lambda_handler(app, service="docs")
