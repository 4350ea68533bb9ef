import pytest
from argon2 import PasswordHasher

from creditml.auth import passwords


def test_hash_round_trip_uses_argon2id_with_a_fresh_salt() -> None:
    first = passwords.hash_password("correct horse battery")
    second = passwords.hash_password("correct horse battery")

    assert first.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in first
    assert first != second  # salted
    assert passwords.verify_password(first, "correct horse battery")


@pytest.mark.parametrize(
    "attempt", ["correct horse batter", "Correct horse battery", "", "correct horse battery "]
)
def test_wrong_password_is_refused(attempt: str) -> None:
    stored = passwords.hash_password("correct horse battery")
    assert not passwords.verify_password(stored, attempt)


def test_garbage_hash_is_refused_not_raised() -> None:
    assert not passwords.verify_password("not-a-hash", "whatever")


def test_dummy_check_does_real_argon2_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a hasher that records what it verifies
    seen: list[str] = []
    real = passwords._hasher()

    class Recording(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            seen.append(str(hash))
            return real.verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher", lambda: Recording(memory_cost=19 * 1024))
    # When an unknown email's password is "checked"
    passwords.verify_dummy("some password")
    # Then a real Argon2id hash was verified
    assert len(seen) == 1
    assert seen[0].startswith("$argon2id$")


def test_weaker_hash_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024).hash("correct horse battery")
    assert passwords.needs_rehash(weak)
    assert not passwords.needs_rehash(passwords.hash_password("correct horse battery"))
