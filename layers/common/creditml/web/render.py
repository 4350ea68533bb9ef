"""Templates and the headers every page carries.

Jinja2 with autoescaping on for every template: model names and descriptions are user input
and are always rendered as text. Templates are compiled once per container and kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

import creditml
from creditml.auth.passwords import MIN_PASSWORD_LENGTH
from creditml.web.session import WebUser, csrf_token, remember_csrf

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def number(value: int | None) -> str:
    """1234567 -> "1,234,567" (credits, rows and counts are integers)."""
    return "—" if value is None else f"{value:,}"


def credit_count(value: int) -> str:
    """5 -> "5 credits", 1 -> "1 credit"."""
    return f"{value:,} credit" + ("" if value == 1 else "s")


def utc(value: datetime | date | None) -> str:
    """A moment in UTC, said to be UTC: "2026-11-30 14:05 UTC"."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = number
    env.filters["credit_count"] = credit_count
    env.filters["utc"] = utc
    env.globals["version"] = creditml.__version__
    env.globals["min_password"] = MIN_PASSWORD_LENGTH
    return env


def content_security_policy(connect: Iterable[str] = ()) -> str:
    """Scripts and styles from this origin only (no inline script, no eval), no framing,
    forms posting here only; `connect` adds origins fetch() may reach (the uploads bucket)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src " + " ".join(["'self'", *connect]),
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def page(
    request: Request,
    template: str,
    user: WebUser | None,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
    connect: Iterable[str] = (),
) -> Response:
    """Render `template` for `user` (None: logged out) as a complete, uncached page."""
    values: dict[str, Any] = {
        "user": user,
        "csrf": csrf_token(request),
        "path": request.url.path,
        "error": None,  # the optional message every form page may show
        **(context or {}),
    }
    body = environment().get_template(template).render(values)
    response = HTMLResponse(body, status_code=status)
    secure(response, connect)
    remember_csrf(request, response)
    return response


def secure(response: Response, connect: Iterable[str] = ()) -> None:
    response.headers["Content-Security-Policy"] = content_security_policy(connect)
    response.headers["Cache-Control"] = "no-store"
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
