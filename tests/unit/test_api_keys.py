"""API keys' rules without AWS: the key's form, hashing, the verifier's memory (an injected
clock, no sleeping), last-use days, and the name a key may have."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from creditml.api.routes.api_keys import ApiKeyCreate
from creditml.auth.api_keys import (
    CACHE_SECONDS,
    PREFIX,
    ApiKey,
    ApiKeyClaims,
    ApiKeyService,
    ApiKeyVerifier,
    KeyOwner,
    generate_key,
    is_api_key,
    key_hash,
)
from creditml.auth.roles import Role
from creditml.errors import ApiKeyNotFound, InvalidToken, TooManyApiKeys, UserNotFound

# 2026-11-23 19:20:00 UTC
START = 1795461600.0
DAY = 24 * 3600


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class MemoryStore:
    """An ApiKeyStore in a dict, counting the calls a request would make."""

    keys: dict[str, tuple[str, ApiKey]] = field(default_factory=dict)  # hash -> (user, key)
    used: dict[str, date] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def create(self, user_id: str, key: ApiKey, hashed: str, maximum: int) -> None:
        if len(self.keys_of(user_id)) >= maximum:
            raise TooManyApiKeys(maximum)
        self.keys[hashed] = (user_id, key)

    def keys_of(self, user_id: str) -> list[ApiKey]:
        return [key for owner, key in self.keys.values() if owner == user_id]

    def revoke(self, user_id: str, key_id: str) -> None:
        for hashed, (owner, key) in list(self.keys.items()):
            if owner == user_id and key.id == key_id:
                del self.keys[hashed]
                return
        raise ApiKeyNotFound()

    def owner_of(self, hashed: str) -> KeyOwner | None:
        self.calls.append("owner_of")
        found = self.keys.get(hashed)
        return None if found is None else KeyOwner(key_id=found[1].id, user_id=found[0])

    def mark_used(self, user_id: str, key_id: str, day: date) -> None:
        self.calls.append("mark_used")
        self.used[key_id] = max(day, self.used.get(key_id, day))


@dataclass
class Roles:
    roles: dict[str, Role] = field(default_factory=dict)
    calls: int = 0

    def stored_role(self, user_id: str) -> Role:
        self.calls += 1
        if user_id not in self.roles:
            raise UserNotFound()
        return self.roles[user_id]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def roles() -> Roles:
    return Roles({"ada": Role.PUBLISHER, "bo": Role.USER})


@pytest.fixture
def service(store: MemoryStore, clock: Clock) -> ApiKeyService:
    return ApiKeyService(store, maximum=3, clock=clock)


@pytest.fixture
def verifier(store: MemoryStore, roles: Roles, clock: Clock) -> ApiKeyVerifier:
    return ApiKeyVerifier(store, roles, clock=clock)


def test_a_key_is_the_prefix_and_32_random_bytes_url_safe() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(PREFIX)
        assert is_api_key(key)
        body = key.removeprefix(PREFIX)
        assert len(base64.urlsafe_b64decode(body + "=")) == 32


def test_access_tokens_are_not_taken_for_keys() -> None:
    assert not is_api_key("eyJhbGciOiJIUzI1NiJ9.e30.sig")


def test_only_the_sha256_is_kept() -> None:
    key = generate_key()
    assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in key_hash(key)


def test_created_keys_are_shown_once_and_stored_by_hash(
    service: ApiKeyService, store: MemoryStore
) -> None:
    created = service.create("ada", "ci")
    assert created.secret.startswith(PREFIX)
    assert created.key.created_at == datetime.fromtimestamp(START, UTC)
    assert list(store.keys) == [key_hash(created.secret)]
    assert created.secret not in repr(store.keys)


def test_a_key_acts_as_its_owner_with_the_stored_role(
    service: ApiKeyService, verifier: ApiKeyVerifier
) -> None:
    created = service.create("ada", "ci")
    claims = verifier.verify(created.secret)
    assert isinstance(claims, ApiKeyClaims)
    assert (claims.user_id, claims.role, claims.key_id) == ("ada", Role.PUBLISHER, created.key.id)


@pytest.mark.parametrize(
    "presented",
    [
        "cml_",
        "cml_short",
        "cml_" + "A" * 42,
        "cml_" + "A" * 129,
        "cml_" + "A" * 42 + "=",
        "cml_" + "A" * 42 + "/",
        "cml_" + "A" * 42 + " ",
    ],
)
def test_malformed_keys_are_refused_without_a_lookup(
    verifier: ApiKeyVerifier, store: MemoryStore, presented: str
) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(presented)
    assert store.calls == []


def test_an_unknown_key_is_an_invalid_token(verifier: ApiKeyVerifier) -> None:
    with pytest.raises(InvalidToken):
        verifier.verify(generate_key())


def test_a_verified_key_is_remembered_for_the_cache_time_only(
    service: ApiKeyService,
    verifier: ApiKeyVerifier,
    store: MemoryStore,
    roles: Roles,
    clock: Clock,
) -> None:
    secret = service.create("ada", "ci").secret
    verifier.verify(secret)
    store.calls.clear()
    # Within the cache time: no call at all (the day's use is recorded already).
    for _ in range(CACHE_SECONDS // 10 - 1):
        clock.now += 10
        verifier.verify(secret)
    clock.now += 9
    verifier.verify(secret)
    assert store.calls == []
    assert roles.calls == 1
    # Past it: read again, with the role as stored now.
    roles.roles["ada"] = Role.USER
    clock.now = START + CACHE_SECONDS
    assert verifier.verify(secret).role == Role.USER
    assert store.calls == ["owner_of"]


def test_a_key_that_is_no_key_is_remembered_as_such(
    verifier: ApiKeyVerifier, store: MemoryStore, clock: Clock
) -> None:
    bogus = "cml_" + "B" * 43
    for _ in range(5):
        with pytest.raises(InvalidToken):
            verifier.verify(bogus)
        clock.now += 10
    assert store.calls == ["owner_of"]  # one read for five tries within the cache time
    clock.now = START + CACHE_SECONDS
    with pytest.raises(InvalidToken):
        verifier.verify(bogus)
    assert store.calls == ["owner_of", "owner_of"]


def test_a_revoked_key_stops_working_within_the_cache_time(
    service: ApiKeyService, verifier: ApiKeyVerifier, clock: Clock
) -> None:
    created = service.create("ada", "ci")
    verifier.verify(created.secret)
    service.revoke("ada", created.key.id)
    clock.now += CACHE_SECONDS
    with pytest.raises(InvalidToken):
        verifier.verify(created.secret)


def test_the_key_of_a_user_who_no_longer_exists_is_refused(
    service: ApiKeyService, verifier: ApiKeyVerifier, roles: Roles, clock: Clock
) -> None:
    secret = service.create("ada", "ci").secret
    verifier.verify(secret)
    del roles.roles["ada"]
    clock.now += CACHE_SECONDS
    with pytest.raises(InvalidToken):
        verifier.verify(secret)


def test_last_use_is_recorded_once_per_day(
    service: ApiKeyService, verifier: ApiKeyVerifier, store: MemoryStore, clock: Clock
) -> None:
    created = service.create("ada", "ci")
    for _ in range(3):
        verifier.verify(created.secret)
        clock.now += 3 * CACHE_SECONDS  # each use reads the key again: still one mark a day
    assert store.calls.count("mark_used") == 1
    assert store.used[created.key.id] == date(2026, 11, 23)
    clock.now = START + DAY
    verifier.verify(created.secret)
    verifier.verify(created.secret)
    assert store.calls.count("mark_used") == 2
    assert store.used[created.key.id] == date(2026, 11, 24)


def test_a_failed_last_use_write_never_fails_the_request(
    service: ApiKeyService,
    verifier: ApiKeyVerifier,
    store: MemoryStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = service.create("ada", "ci")

    def throttled(user_id: str, key_id: str, day: date) -> None:
        store.calls.append("mark_used")
        raise RuntimeError("ProvisionedThroughputExceeded")

    monkeypatch.setattr(store, "mark_used", throttled)
    assert verifier.verify(created.secret).user_id == "ada"  # served all the same
    verifier.verify(created.secret)  # and the day is tried again, not taken as written
    assert store.calls.count("mark_used") == 2


def test_revoking_someone_elses_or_an_unknown_key_is_not_found(service: ApiKeyService) -> None:
    created = service.create("ada", "ci")
    for user, key_id in (("bo", created.key.id), ("ada", "no-such-key")):
        with pytest.raises(ApiKeyNotFound):
            service.revoke(user, key_id)
    assert [key.id for key in service.list("ada")] == [created.key.id]


def test_the_cap_refuses_one_more(service: ApiKeyService, store: MemoryStore) -> None:
    for n in range(3):
        service.create("ada", f"k{n}")
    with pytest.raises(TooManyApiKeys) as refused:
        service.create("ada", "one too many")
    assert refused.value.extra == {"maximum": 3}
    assert len(store.keys) == 3


@pytest.mark.parametrize(
    ("given", "kept"),
    [("ci", "ci"), ("  nightly job  ", "nightly job"), ("x" * 100, "x" * 100), ("é ✓", "é ✓")],
)
def test_names_are_trimmed(given: str, kept: str) -> None:
    assert ApiKeyCreate(name=given).name == kept


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 101, "a\nb", "bell\x07", "\x1b[31mred", "rtl\u202eoverride", "nul\x00"],
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        ApiKeyCreate(name=name)
