"""Lazy log-in, refresh on 401 with rotating tokens, one re-login, then AuthenticationFailed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from creditml_client import AuthenticationFailed, Client, Forbidden
from creditml_client._auth import Recovery
from tests.client.fake_api import FakeApi, problem

pytestmark = pytest.mark.unit


def test_logs_in_lazily_on_the_first_call(api: FakeApi, make_client: Callable[..., Client]) -> None:
    client = make_client()
    assert api.requests == []  # constructing the client sends nothing

    assert client.balance() == 7

    assert api.logins == 1
    assert client.refresh_token == "refresh-1"
    assert api.calls("GET /billing/balance")[0].headers["authorization"] == "Bearer access-1"


def test_401_refreshes_then_retries_and_keeps_the_rotated_token(
    api: FakeApi, client: Client
) -> None:
    client.balance()  # logged in: access-1 / refresh-1
    api.expire_access_tokens()

    assert client.balance() == 7  # 401 -> refresh with refresh-1 -> retry with access-2

    assert api.refreshes == ["refresh-1"]
    assert client.refresh_token == "refresh-2"
    assert api.calls("GET /billing/balance")[-1].headers["authorization"] == "Bearer access-2"

    # Next time the client presents the rotated token, never the spent one.
    api.expire_access_tokens()
    assert client.balance() == 7
    assert api.refreshes == ["refresh-1", "refresh-2"]
    assert api.logins == 1


def test_a_stored_refresh_token_is_used_before_the_password(
    api: FakeApi, make_client: Callable[..., Client]
) -> None:
    api.refresh_tokens.add("saved")
    client = make_client(email=None, password=None, refresh_token="saved")

    assert client.me()["id"] == "u1"

    assert api.refreshes == ["saved"]
    assert api.logins == 0
    assert client.refresh_token == "refresh-1"


def test_refused_refresh_logs_in_again_then_retries(api: FakeApi, client: Client) -> None:
    client.balance()
    api.expire_access_tokens()
    api.refresh_tokens.clear()  # e.g. the session was revoked

    assert client.balance() == 7

    assert api.refreshes == ["refresh-1"]
    assert api.logins == 2
    assert client.refresh_token == "refresh-2"


def test_failed_relogin_raises_authentication_failed(api: FakeApi, client: Client) -> None:
    client.balance()
    api.expire_access_tokens()
    api.refresh_tokens.clear()
    api.password = "changed meanwhile"

    with pytest.raises(AuthenticationFailed) as caught:
        client.balance()

    assert caught.value.status == 401
    assert caught.value.code == "invalid_credentials"
    assert api.logins == 2  # the first log-in, and one more: never a loop


def test_a_401_after_relogin_is_raised_not_retried_forever(api: FakeApi, client: Client) -> None:
    api.script("GET /billing/balance", *[problem(401, "invalid_token")] * 5)

    with pytest.raises(AuthenticationFailed):
        client.balance()

    # First log-in, 401, refresh, 401, re-login, 401: raised.
    assert len(api.calls("GET /billing/balance")) == 3
    assert api.refreshes == ["refresh-1"]
    assert api.logins == 2


def test_api_key_is_sent_and_a_401_raises_at_once(
    api: FakeApi, make_client: Callable[..., Client]
) -> None:
    client = make_client(email=None, password=None, api_key="cml_secret")
    api.script("GET /users/me", problem(401, "invalid_token"))

    with pytest.raises(AuthenticationFailed):
        client.me()

    assert [r.headers["authorization"] for r in api.requests] == ["Bearer cml_secret"]
    assert api.logins == 0
    assert api.refreshes == []
    assert client.refresh_token is None


def test_403_is_forbidden_without_relogging(api: FakeApi, client: Client) -> None:
    api.script("GET /users/me", problem(403, "forbidden"))

    with pytest.raises(Forbidden) as caught:
        client.me()

    assert caught.value.code == "forbidden"
    assert api.logins == 1
    assert api.refreshes == []


def test_no_credentials_at_all_is_authentication_failed(
    api: FakeApi, make_client: Callable[..., Client]
) -> None:
    client = make_client(email=None, password=None)

    with pytest.raises(AuthenticationFailed) as caught:
        client.balance()

    assert caught.value.code == "not_authenticated"
    assert api.requests == []


def test_login_request_carries_no_authorization(api: FakeApi, client: Client) -> None:
    client.balance()

    login = api.calls("POST /auth/login")[0]
    assert "authorization" not in login.headers
    assert login.headers["content-type"] == "application/json"


def test_concurrent_renewal_is_not_refreshed_twice(api: FakeApi, client: Client) -> None:
    # Given a request sent with a token another call has since replaced
    client.balance()
    stale = "Bearer access-1"
    api.expire_access_tokens()
    client.balance()  # renews to access-2
    refreshes = list(api.refreshes)

    # When the late 401 of the stale request is handled
    retry = client._auth.recover(Recovery(), stale)

    # Then it retries with the current token instead of spending the refresh token again
    assert retry is True
    assert api.refreshes == refreshes
