"""models function: create (with presigned upload), list, show, update and archive models;
register, list and delete devices; downloads sealed to a device."""

from creditml.api.app import create_app, lambda_handler
from creditml.api.routes.devices import router as devices_router
from creditml.api.routes.models import router

app = create_app(router, devices_router)
handler = lambda_handler(app, service="models")
