"""The client's credentials: lazy log-in, token refresh, and recovery from a 401.

Refresh tokens rotate and a spent one presented again revokes the whole session (the API's
reuse detection), so every refresh happens under one lock, and a request that got a 401
with a token someone else has since replaced simply retries with the new one instead of
refreshing again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from creditml_client.errors import AuthenticationFailed

# POST a JSON body to an /auth/* path without credentials; the answer's JSON body, or
# the typed error.
Post = Callable[[str, dict[str, Any]], Any]


@dataclass
class Recovery:
    """What one logical call has already tried after 401s."""

    refreshed: bool = False
    relogged: bool = False
    renewed_elsewhere: int = 0


class Authenticator:
    """Holds the tokens (or API key) and obtains or renews them when asked."""

    def __init__(
        self,
        post: Post,
        *,
        email: str | None,
        password: str | None,
        api_key: str | None,
        refresh_token: str | None,
    ) -> None:
        self._post = post
        self._email = email
        self._password = password
        self._api_key = api_key
        self._refresh = None if api_key else refresh_token
        self._access: str | None = None
        self._lock = threading.RLock()

    @property
    def refresh_token(self) -> str | None:
        """The current (latest rotated) refresh token, None with an API key."""
        return self._refresh

    @property
    def can_log_in(self) -> bool:
        return bool(self._email and self._password)

    def authorization(self) -> str:
        """The Authorization header value, logging in first when there is no token yet."""
        if self._api_key:
            return f"Bearer {self._api_key}"
        with self._lock:
            if self._access is None:
                self._obtain()
            return f"Bearer {self._access}"

    def recover(self, state: Recovery, sent: str) -> bool:
        """After a 401 to a request sent with Authorization `sent`: renew the credentials
        and return True to retry, or False when there is nothing left to try. Raises
        AuthenticationFailed when a log-in is refused."""
        if self._api_key:
            return False
        with self._lock:
            if self._access is not None and sent != f"Bearer {self._access}":
                state.renewed_elsewhere += 1  # another thread renewed meanwhile
                return state.renewed_elsewhere <= 2
            if not state.refreshed and not state.relogged and self._refresh:
                state.refreshed = True
                if self._try_refresh():
                    return True
            if not state.relogged and self.can_log_in:
                state.relogged = True
                self._login()
                return True
            self._access = None
            return False

    def _obtain(self) -> None:
        if self._refresh and self._try_refresh():
            return
        if self.can_log_in:
            self._login()
            return
        raise AuthenticationFailed(
            401,
            "not_authenticated",
            "No usable credentials: give an email and password, an API key or a valid "
            "refresh token (log in again)",
            {},
        )

    def _login(self) -> None:
        self._access = None
        body = {"email": self._email, "password": self._password}
        self._store(self._post("/auth/login", body))

    def _try_refresh(self) -> bool:
        """Rotate the refresh token; False (and forget it) when the API refuses it. Other
        failures (network, 5xx) propagate and keep the token, which may still be good."""
        self._access = None
        try:
            pair = self._post("/auth/refresh", {"refresh_token": self._refresh})
        except AuthenticationFailed:
            self._refresh = None
            return False
        self._store(pair)
        return True

    def _store(self, pair: Any) -> None:
        if not isinstance(pair, dict) or not isinstance(pair.get("access_token"), str):
            raise AuthenticationFailed(401, "invalid_token", "The API sent no access token", {})
        self._access = pair["access_token"]
        refresh = pair.get("refresh_token")
        self._refresh = refresh if isinstance(refresh, str) else None
