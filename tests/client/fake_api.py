"""A scripted stand-in for the CreditML API (and S3), served through httpx.MockTransport.

Each test queues answers per route; unscripted routes answer like the real API would for
a logged-in user. Every request is recorded, so tests can assert what the client sent.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def problem(
    status: int, code: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body = {
        "type": f"https://errors.creditml.dev/{code}",
        "title": code,
        "status": status,
        "detail": f"{code} happened",
        "code": code,
        **extra,
    }
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json", **(headers or {})}
    )


@dataclass
class FakeApi:
    """Routes keyed by "METHOD path" (path without query); scripted answers first."""

    scripted: dict[str, deque[Answer]] = field(default_factory=lambda: defaultdict(deque))
    requests: list[httpx.Request] = field(default_factory=list)
    logins: int = 0
    refreshes: list[str] = field(default_factory=list)
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    password: str = "correct horse"
    _counter: int = 0

    def script(self, route: str, *answers: Answer) -> None:
        self.scripted[route].extend(answers)

    def calls(self, route: str) -> list[httpx.Request]:
        return [request for request in self.requests if _route(request) == route]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = _route(request)
        queue = self.scripted.get(route)
        if queue:
            answer = queue.popleft()
            if isinstance(answer, Exception):
                raise answer
            if callable(answer) and not isinstance(answer, httpx.Response):
                return answer(request)
            return answer
        if route == "POST /auth/login":
            return self._login(request)
        if route == "POST /auth/refresh":
            return self._refresh(request)
        if not self.authorized(request):
            return problem(401, "invalid_token", {"WWW-Authenticate": "Bearer"})
        return self.default(route, request)

    def authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.removeprefix("Bearer ") in self.access_tokens

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def default(self, route: str, request: httpx.Request) -> httpx.Response:
        if route == "GET /users/me":
            return httpx.Response(
                200, json={"id": "u1", "email": "a@b.c", "role": "user", "balance": 7}
            )
        if route == "GET /billing/balance":
            return httpx.Response(200, json={"balance": 7})
        return problem(404, "not_found")

    def _pair(self) -> httpx.Response:
        self._counter += 1
        access, refresh = f"access-{self._counter}", f"refresh-{self._counter}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return httpx.Response(
            200,
            json={
                "access_token": access,
                "refresh_token": refresh,
                "token_type": "bearer",
                "expires_in": 900,
            },
        )

    def _login(self, request: httpx.Request) -> httpx.Response:
        self.logins += 1
        if json.loads(request.content)["password"] != self.password:
            return problem(401, "invalid_credentials")
        return self._pair()

    def _refresh(self, request: httpx.Request) -> httpx.Response:
        token = json.loads(request.content)["refresh_token"]
        self.refreshes.append(token)
        if token not in self.refresh_tokens:
            return problem(401, "refresh_token_reused")
        self.refresh_tokens.discard(token)  # rotation: a refresh token works once
        return self._pair()


def _route(request: httpx.Request) -> str:
    return f"{request.method} {request.url.path}"
