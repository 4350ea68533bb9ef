"""billing function: /billing/balance, /billing/top-ups, /billing/transactions."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.billing import router

app = create_app(router)
handler = lambda_handler(app, service="billing")
