"""auth function: /auth/register, /auth/login, /auth/refresh, /auth/logout, /users/me,
GET /users, PATCH /users/{id}, and /api-keys. API keys are refused on /auth/*."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes import api_keys
from creditml.api.routes.auth import router

app = create_app(router, api_keys.router)
app.add_middleware(api_keys.RefuseApiKeysUnder, prefix="/auth/")
handler = lambda_handler(app, service="auth")
