"""The auth contract over real HTTP against the local stack."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

PASSWORD = "correct horse battery"


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_register_login_me_refresh_and_reuse_refused(http: httpx.Client) -> None:
    email = _email()
    registered = http.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    user = registered.json()
    assert set(user) == {"id", "email", "role"}
    assert user["role"] == "user"

    login = http.post("/auth/login", json={"email": email.upper(), "password": PASSWORD})
    assert login.status_code == 200
    pair = login.json()
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900

    me = http.get("/users/me", headers=_bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json() == {"id": user["id"], "email": email, "role": "user", "balance": 0}

    rotated = http.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200
    assert http.get("/users/me", headers=_bearer(rotated.json()["access_token"])).status_code == 200

    reused = http.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["code"] == "refresh_token_reused"


def test_logout_ends_the_session(http: httpx.Client) -> None:
    email = _email()
    http.post("/auth/register", json={"email": email, "password": PASSWORD})
    pair = http.post("/auth/login", json={"email": email, "password": PASSWORD}).json()

    logout = http.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert (logout.status_code, logout.content) == (204, b"")
    refused = http.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_token")
    again = http.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401
    assert again.headers["content-type"] == "application/problem+json"


def test_login_failures_look_the_same(http: httpx.Client) -> None:
    email = _email()
    http.post("/auth/register", json={"email": email, "password": PASSWORD})
    wrong = http.post("/auth/login", json={"email": email, "password": "not the password"})
    unknown = http.post("/auth/login", json={"email": _email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_seeded_admin_from_environment_can_set_roles(http: httpx.Client) -> None:
    admin = http.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert admin.status_code == 200
    token = admin.json()["access_token"]
    assert http.get("/users/me", headers=_bearer(token)).json()["role"] == "admin"

    user = http.post("/auth/register", json={"email": _email(), "password": PASSWORD}).json()
    changed = http.patch(f"/users/{user['id']}", json={"role": "publisher"}, headers=_bearer(token))
    assert changed.status_code == 200
    assert changed.json()["role"] == "publisher"


def test_concurrent_registrations_of_one_email_create_one_account(http: httpx.Client) -> None:
    """One container, concurrent requests: 20 simultaneous HTTP registrations of one email
    (in two letter cases), handled by the local stack's single process. Registration keeps
    no per-container state, so many containers would race on the same conditional write."""
    email = _email()
    variants = [email.upper() if i % 2 else email for i in range(20)]

    def register(address: str) -> int:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            return client.post(
                "/auth/register", json={"email": address, "password": PASSWORD}
            ).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = sorted(pool.map(register, variants))
    assert statuses == [201] + [409] * 19


def test_openapi_and_swagger_ui(http: httpx.Client) -> None:
    document = http.get("/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert {
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/users/me",
        "/users/{id}",
    } <= set(paths)
    assert set(paths["/auth/logout"]["post"]["responses"]) >= {"204", "401"}
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text.lower()
    assert "/openapi.json" in docs.text


def test_unknown_routes_and_bad_bodies_are_problems(http: httpx.Client) -> None:
    missing = http.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    malformed = http.post(
        "/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "malformed_json"
    weak = http.post("/auth/register", json={"email": _email(), "password": "short"})
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["field"] == "body.password"
