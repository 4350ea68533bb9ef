"""web function: the browser UI (GET / and /ui/*), same origin as the API."""

from creditml.api.app import lambda_handler
from creditml.web.app import create_web_app

app = create_web_app()
handler = lambda_handler(app, service="web")
