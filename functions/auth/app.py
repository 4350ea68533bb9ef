"""auth function: /auth/register, /auth/login, /auth/refresh, /users/me, PATCH /users/{id}."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.auth import router

app = create_app(router)
handler = lambda_handler(app, service="auth")
