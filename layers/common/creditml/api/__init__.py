"""HTTP API: FastAPI routers, problem details, the Lambda entry, the OpenAPI catalogue."""
