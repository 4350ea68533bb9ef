"""The rules of the request limits (DESIGN §12), without AWS: minute windows and their
Retry-After, the per-subject request limit, login backoff per email and per source IP, and
how the limits reach HTTP (429 + Retry-After) and the settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from creditml.api.limits import source_ip
from creditml.api.problems import install_problem_handlers
from creditml.auth import passwords
from creditml.auth.emails import canonical_email
from creditml.auth.roles import Role
from creditml.auth.service import AuthService
from creditml.auth.tokens import RefreshClaims, TokenSigner
from creditml.devstack.stack import operator_settings
from creditml.devstack.template import Template
from creditml.errors import InvalidCredentials, RateLimited
from creditml.limits import (
    EMAIL_FREE_FAILURES,
    IP_FAILURES,
    LOGIN_WINDOW_SECONDS,
    EmailFailures,
    LoginCounters,
    LoginKeys,
    LoginThrottle,
    MinuteCount,
    RequestLimit,
    email_subject,
    ip_subject,
    request_subject,
)
from creditml.settings import Settings
from creditml.users import User

MINUTE = 29_000_000
START = MINUTE * 60  # the first second of a minute


# ---- Minute windows ------------------------------------------------------------------------


def test_counting_within_a_minute_up_to_the_limit() -> None:
    count = MinuteCount()
    for expected in range(1, 4):
        count = count.counting(START + 10, limit=3)
        assert count == MinuteCount(MINUTE, expected)
    with pytest.raises(RateLimited) as caught:
        count.counting(START + 10, limit=3)
    assert caught.value.retry_after == 50


@pytest.mark.parametrize(
    ("offset", "retry_after"), [(0.0, 60), (0.5, 60), (59.0, 1), (59.9, 1), (30.25, 30)]
)
def test_retry_after_is_whole_seconds_to_the_next_minute(offset: float, retry_after: int) -> None:
    with pytest.raises(RateLimited) as caught:
        MinuteCount(MINUTE, 5).counting(START + offset, limit=5)
    assert caught.value.retry_after == retry_after


def test_a_new_minute_starts_over() -> None:
    assert MinuteCount(MINUTE, 5).counting(START + 60, limit=5) == MinuteCount(MINUTE + 1, 1)
    assert MinuteCount(MINUTE - 7, 5).counting(START, limit=5) == MinuteCount(MINUTE, 1)


def test_a_window_never_moves_back() -> None:
    # A count written by a container whose clock ran a second ahead, into the next minute
    ahead = MinuteCount(MINUTE + 1, 2)
    assert ahead.counting(START + 59.5, limit=5) == MinuteCount(MINUTE + 1, 3)
    with pytest.raises(RateLimited) as caught:
        MinuteCount(MINUTE + 1, 5).counting(START + 59.5, limit=5)
    assert caught.value.retry_after == 61


class Counters:
    """A request counter store in memory."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.expiries: dict[str, int] = {}

    def count_request(self, key: str, limit: int, expires_at: int) -> bool:
        if self.counts.get(key, 0) >= limit:
            return False
        self.counts[key] = self.counts.get(key, 0) + 1
        self.expiries[key] = expires_at
        return True


def test_request_limit_counts_per_subject_and_minute() -> None:
    now = [START + 20.0]
    store = Counters()
    limit = RequestLimit(store, per_minute=2, clock=lambda: now[0])
    limit.admit("user:a")
    limit.admit("user:a")
    limit.admit("user:b")  # another subject has its own counter
    with pytest.raises(RateLimited) as caught:
        limit.admit("user:a")
    assert caught.value.retry_after == 40
    assert store.counts == {f"rate:user:a:{MINUTE}": 2, f"rate:user:b:{MINUTE}": 1}
    # The counter outlives its minute (TTL), never the other way round
    assert store.expiries[f"rate:user:a:{MINUTE}"] >= START + 60
    now[0] = START + 60
    limit.admit("user:a")


def test_subjects_are_strings_api_keys_can_share() -> None:
    assert request_subject("42") == "user:42"


# ---- Login throttling ----------------------------------------------------------------------


def test_email_backoff_starts_at_the_fifth_failure_and_doubles() -> None:
    last = 1000.0
    delays = [
        EmailFailures(failures=n, started=900.0, last=last).blocked_until() for n in range(1, 12)
    ]
    assert delays[: EMAIL_FREE_FAILURES - 1] == [None] * 4
    assert [until - last for until in delays[4:] if until is not None] == [
        60,
        120,
        240,
        480,
        900,
        900,
        900,
    ]


def test_email_window_is_fifteen_minutes_from_its_first_failure() -> None:
    failures = EmailFailures(failures=3, started=1000.0, last=1100.0)
    assert failures.window_open(1000.0 + LOGIN_WINDOW_SECONDS - 1)
    assert not failures.window_open(1000.0 + LOGIN_WINDOW_SECONDS)
    assert not EmailFailures().window_open(1000.0)


def test_login_counters_refuse_with_the_longest_wait() -> None:
    blocked = EmailFailures(failures=6, started=1000.0, last=1100.0)  # until 1220
    with pytest.raises(RateLimited) as caught:
        LoginCounters(blocked, ip_failures=0).check(1200.5)
    assert caught.value.retry_after == 20
    LoginCounters(blocked, ip_failures=0).check(1220.0)  # the backoff is over
    # An address at its limit waits for the end of its quarter-hour
    now = 5 * LOGIN_WINDOW_SECONDS + 100.0
    with pytest.raises(RateLimited) as caught:
        LoginCounters(EmailFailures(), ip_failures=IP_FAILURES).check(now)
    assert caught.value.retry_after == LOGIN_WINDOW_SECONDS - 100
    LoginCounters(EmailFailures(), ip_failures=IP_FAILURES - 1).check(now)


@pytest.mark.parametrize(
    "spelling",
    [
        "Alice@Example.com",
        " alice@example.com ",
        "ALICE@EXAMPLE.COM",
        "\uff41\uff4c\uff49\uff43\uff45@example.com",
    ],
)
def test_one_email_counter_for_every_spelling_of_an_address(spelling: str) -> None:
    assert email_subject(spelling) == email_subject("alice@example.com")
    assert "alice" not in email_subject(spelling)  # the table holds no addresses


def test_ip_counters_are_per_quarter_hour() -> None:
    assert ip_subject("192.0.2.1", 0) == ip_subject("192.0.2.1", LOGIN_WINDOW_SECONDS - 1)
    assert ip_subject("192.0.2.1", 0) != ip_subject("192.0.2.1", LOGIN_WINDOW_SECONDS)


class Logins:
    """A users table and a limits table in memory: AuthService's user store and LoginReads,
    and the throttle's counter store (with the limits table's rules). Records each call."""

    def __init__(self) -> None:
        self.claims: dict[str, str] = {}
        self.users: dict[str, tuple[User, str]] = {}
        self.emails: dict[str, EmailFailures] = {}
        self.ips: dict[str, int] = {}
        self.calls: list[str] = []
        self.window_hints: list[bool] = []  # the window_open hint of each recorded failure

    def add(self, email: str, password: str) -> None:
        user = User(id=f"u{len(self.users)}", email=email, role=Role.USER, created_at=NOW)
        self.claims[canonical_email(email)] = user.id
        self.users[user.id] = (user, passwords.hash_password(password))

    def find_login(self, email: str, counter_keys: LoginKeys) -> tuple[str | None, LoginCounters]:
        self.calls.append("read claim+counters")
        email_failures = self.emails.get(counter_keys.email, EmailFailures())
        seen = LoginCounters(email_failures, self.ips.get(counter_keys.ip, 0))
        return self.claims.get(canonical_email(email)), seen

    def credentials(self, user_id: str) -> tuple[User, str] | None:
        self.calls.append("read user")
        return self.users.get(user_id)

    def record_login_failure(
        self, email_key: str, ip_key: str, now: float, window_open: bool
    ) -> None:
        self.calls.append("count failure")
        self.window_hints.append(window_open)
        old = self.emails.get(email_key, EmailFailures())
        if old.window_open(now):
            self.emails[email_key] = EmailFailures(old.failures + 1, old.started, now)
        else:
            self.emails[email_key] = EmailFailures(1, now, now)
        self.ips[ip_key] = self.ips.get(ip_key, 0) + 1


class Sessions:
    def __init__(self) -> None:
        self.started = 0

    def start(self, first: RefreshClaims, family_expires_at: int) -> None:
        self.started += 1


PASSWORD = "correct horse battery"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


class Login:
    """The auth service's log-in over stores in memory, on a clock the test moves."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.store = Logins()
        self.sessions = Sessions()
        self.service = AuthService(
            users=self.store,  # type: ignore[arg-type]
            sessions=self.sessions,  # type: ignore[arg-type]
            signer=lambda: TokenSigner(b"k" * 48, issuer="t", access_ttl=900, refresh_ttl=3600),
            balances=None,  # type: ignore[arg-type]
            logins=self.store,
            throttle=LoginThrottle(self.store, clock=lambda: self.now),
        )

    def __call__(self, email: str, password: str, ip: str = "192.0.2.1") -> str:
        try:
            self.service.login(email, password, ip)
        except InvalidCredentials:
            return "401"
        except RateLimited as limited:
            return f"429:{limited.retry_after}"
        return "200"


def test_five_failures_then_backoff_even_for_the_right_password() -> None:
    login = Login()
    login.store.add("a@example.com", PASSWORD)
    login.store.add("b@example.com", PASSWORD)
    assert [login("a@example.com", "wrong password!") for _ in range(5)] == ["401"] * 5
    # Then: held back, whatever the password, and nothing is counted
    assert login("a@example.com", PASSWORD) == "429:60"
    assert login("A@example.com", "wrong password!") == "429:60"
    assert login.store.emails[email_subject("a@example.com")].failures == 5
    # Another email from the same address is not held back
    assert login("b@example.com", PASSWORD) == "200"
    # After the backoff, one more failure doubles it
    login.now += 60
    assert login("a@example.com", "wrong password!") == "401"
    assert login("a@example.com", PASSWORD) == "429:120"
    login.now += 120
    assert login("a@example.com", PASSWORD) == "200"


def test_a_success_reads_what_a_login_always_read_and_writes_nothing_for_throttling() -> None:
    login = Login()
    login.store.add("a@example.com", PASSWORD)
    assert login("a@example.com", PASSWORD) == "200"
    # The counters came with the claim: no read of their own, no write
    assert login.store.calls == ["read claim+counters", "read user"]
    assert login.sessions.started == 1
    login.store.calls.clear()
    assert login("a@example.com", "wrong password!") == "401"
    assert login("a@example.com", "wrong password!") == "401"
    assert login.store.calls == ["read claim+counters", "read user", "count failure"] * 2
    # The read tells the store which branch is likely: a new window, then the open one
    assert login.store.window_hints == [False, True]


def test_a_throttled_attempt_reads_once_and_never_looks_at_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    login = Login()
    login.store.add("a@example.com", PASSWORD)
    login.store.emails[email_subject("a@example.com")] = EmailFailures(5, login.now, login.now)

    def no_hashing(*_: object) -> bool:
        raise AssertionError("a throttled attempt must not check the password")

    monkeypatch.setattr(passwords, "verify_password", no_hashing)
    monkeypatch.setattr(passwords, "verify_dummy", no_hashing)
    assert login("a@example.com", PASSWORD) == "429:60"
    assert login.store.calls == ["read claim+counters"]
    assert login.sessions.started == 0


def test_unknown_emails_are_counted_and_throttled_like_known_ones() -> None:
    login = Login()
    login.store.add("a@example.com", PASSWORD)
    unknown = [login("nobody@example.com", PASSWORD) for _ in range(6)]
    known = [login("a@example.com", "wrong password!") for _ in range(6)]
    assert unknown == known == ["401"] * 5 + ["429:60"]


def test_other_errors_are_not_counted_as_failed_logins() -> None:
    login = Login()
    login.store.add("a@example.com", PASSWORD)

    def down(user_id: str) -> None:
        raise RuntimeError("the user table is down")

    login.store.credentials = down  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        login.service.login("a@example.com", "wrong password!", "192.0.2.1")
    assert login.store.window_hints == []


def test_an_address_is_held_back_after_its_failures_in_a_quarter_hour() -> None:
    login = Login(now=10 * LOGIN_WINDOW_SECONDS + 5.0)
    # Failures spread over many emails (no email backoff), all but the last counted already
    login.store.ips[ip_subject("198.51.100.7", login.now)] = IP_FAILURES - 1
    assert login("fresh@example.com", PASSWORD, ip="198.51.100.7") == "401"
    refused = login("fresh@example.com", PASSWORD, ip="198.51.100.7")
    assert refused == f"429:{LOGIN_WINDOW_SECONDS - 5}"
    assert login("fresh@example.com", PASSWORD, ip="198.51.100.8") == "401"
    login.now = 11 * LOGIN_WINDOW_SECONDS
    assert login("fresh@example.com", PASSWORD, ip="198.51.100.7") == "401"


# ---- HTTP and settings ---------------------------------------------------------------------


def test_a_429_carries_retry_after_in_header_and_body() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/limited")
    async def limited() -> None:
        raise RateLimited(retry_after=17)

    response = TestClient(app).get("/limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "17"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["retry_after"]) == ("rate_limited", 17)


def _request(scope_extra: dict[str, Any]) -> Request:
    scope = {"type": "http", "headers": [], "client": ("10.0.0.9", 5000), **scope_extra}
    return Request(scope)


def test_source_ip_comes_from_the_gateway_event_not_from_headers() -> None:
    event = {"requestContext": {"http": {"sourceIp": "203.0.113.5"}}}
    forged = [(b"x-forwarded-for", b"192.0.2.99")]
    assert source_ip(_request({"aws.event": event, "headers": forged})) == "203.0.113.5"
    assert source_ip(_request({})) == "10.0.0.9"
    assert source_ip(_request({"client": None})) == "unknown"


def test_the_limit_is_read_from_the_environment() -> None:
    assert Settings.model_validate({}).rate_limit_per_minute == 600
    assert Settings.model_validate({"RATE_LIMIT_PER_MINUTE": "5"}).rate_limit_per_minute == 5


def test_the_local_stack_keeps_the_operators_limit(template: Template) -> None:
    chosen = operator_settings(template, {"RATE_LIMIT_PER_MINUTE": "5", "HOME": "/root"})
    assert chosen == {"RATE_LIMIT_PER_MINUTE": "5"}
    assert "RATE_LIMIT_PER_MINUTE" not in operator_settings(template, {})
    variables = template.document["Globals"]["Function"]["Environment"]["Variables"]
    parameter = variables["RATE_LIMIT_PER_MINUTE"]["Ref"]
    assert json.dumps(template.parameters[parameter]["Default"]) == "600"


def test_every_spelling_of_an_account_shares_its_email_counter() -> None:
    """The counter's key is the account's own (creditml.auth.emails.canonical_email), so no
    spelling that logs in to the same account escapes its backoff."""
    spellings = ["Jo@Example.com", "\uff2ao@example.com", " jo@EXAMPLE.COM ", "JO@example.com"]
    assert len({canonical_email(spelling) for spelling in spellings}) == 1
    assert len({email_subject(spelling) for spelling in spellings}) == 1
    assert email_subject("j\u030co@example.com") == email_subject("\u01f0o@example.com")
