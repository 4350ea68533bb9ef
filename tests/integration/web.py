"""A cookie-keeping browser stand-in for the web function's real handler under moto: each
request is the HTTP API event API Gateway would send (devstack.gateway.build_event), and the
predict form's call to the predict function runs that function's real handler in-process
(only Lambda's transport is left out)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from creditml.devstack import runtime
from creditml.devstack.gateway import build_event, to_http_response
from creditml.devstack.template import Template
from creditml.storage.functions import HttpAnswer, http_event, to_answer

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found, self.text[:500]
        return found.group(1)

    def key(self) -> str:
        found = KEY.search(self.text)
        assert found, self.text[:500]
        return found.group(1)


@dataclass
class Browser:
    template: Template
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)
    forwarded_proto: str | None = None

    def request(
        self, method: str, url: str, form: dict[str, str] | None = None, **headers: str
    ) -> Page:
        parts = urlsplit(url)
        body = urlencode(form).encode() if form is not None else b""
        sent = {"host": "web.test", **headers}
        if form is not None:
            sent["content-type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        found = self.template.route_for(method, parts.path)
        assert found is not None, parts.path
        route, parameters = found
        event = build_event(method, parts.path, parts.query, sent, body, route, parameters)
        if self.forwarded_proto is not None:
            event["headers"]["x-forwarded-proto"] = self.forwarded_proto
        response = runtime.invoke(self.template.functions[route.function], event)
        status, answer_headers, raw = to_http_response(response)
        for line in answer_headers.get("set-cookie", "").split("\n"):
            if not line:
                continue
            self.set_cookies.append(line)
            jar: SimpleCookie = SimpleCookie()
            jar.load(line)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel.value in ("", '""'):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return Page(status, answer_headers, raw.decode())

    def get(self, url: str, **headers: str) -> Page:
        return self.request("GET", url, **headers)

    def post(self, url: str, form: dict[str, str], **headers: str) -> Page:
        return self.request("POST", url, form, **headers)

    def log_in(self, email: str, password: str) -> Page:
        form = self.get("/ui/login")
        answer = self.post(
            "/ui/login", {"csrf_token": form.csrf(), "email": email, "password": password}
        )
        assert answer.status == 303, answer.text[:300]
        return answer


class InProcessFunction:
    """HttpFunction's stand-in: the function's real handler, called in this process."""

    def __init__(self, template: Template, function: str) -> None:
        self._spec = template.functions[function]

    def call(
        self, method: str, path: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> HttpAnswer:
        event = http_event(method, path, headers, body, source_ip)
        # A thread of its own, as the function would be a process of its own: the calling
        # page's event loop is running in this one.
        with ThreadPoolExecutor(1) as pool:
            result: dict[str, Any] = pool.submit(runtime.invoke, self._spec, event).result()
        return to_answer(result)


def in_process_browser(template: Template, monkeypatch: pytest.MonkeyPatch) -> Browser:
    """A Browser whose predict form reaches the predict function's handler in-process."""
    from creditml.web import model_pages

    predict = InProcessFunction(template, "PredictFunction")
    monkeypatch.setattr(model_pages, "predict_function", lambda: predict)
    return Browser(template)
