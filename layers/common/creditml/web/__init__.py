"""The web UI: server-rendered pages served by the `web` function, same origin as the API.

session    the session and CSRF cookies, the logged-in person
render     Jinja2 templates (autoescaped), formatting, security headers
charts     usage charts drawn as SVG on the server (no chart library, no script)
forms      form bodies, bounded and parsed without a multipart dependency
pages      the routes (one module per area) and the app
"""
