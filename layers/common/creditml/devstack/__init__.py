"""The docker-free local stack: an embedded, serialized AWS (moto server), the resources and
routes that template.yaml declares, and the real Lambda handlers behind an API Gateway
HTTP API (payload v2) emulation. Developer tooling: never imported by a deployed function.
"""
