"""reports function: /reports/usage."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.reports import router

app = create_app(router)
handler = lambda_handler(app, service="reports")
