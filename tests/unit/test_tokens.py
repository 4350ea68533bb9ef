import base64
import json
import time

import jwt
import pytest

from creditml.auth.roles import Role
from creditml.auth.tokens import TokenSigner
from creditml.errors import InvalidToken

KEY = b"k" * 48
OTHER_KEY = b"o" * 48


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(KEY, issuer="creditml", access_ttl=900, refresh_ttl=3600)


def _forge(claims: dict[str, object], key: bytes = KEY, algorithm: str = "HS256") -> str:
    # Signs the JSON as given: jwt.encode would refuse or convert some of the odd claim
    # types these tests need (a list as `iss`, for one).
    return jwt.api_jws.PyJWS().encode(json.dumps(claims).encode(), key, algorithm=algorithm)


def _valid_claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "u1",
        "role": "user",
        "fam": "fam1",
        "typ": "access",
        "iss": "creditml",
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def test_access_token_round_trip(signer: TokenSigner) -> None:
    claims = signer.verify_access(signer.issue_access("u1", Role.PUBLISHER))
    assert (claims.user_id, claims.role) == ("u1", Role.PUBLISHER)
    assert claims.expires_at - int(time.time()) in range(895, 901)


def test_access_token_lives_15_minutes_by_contract(signer: TokenSigner) -> None:
    token = signer.issue_access("u1", Role.USER, now=1_000)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 900


def test_refresh_token_round_trip(signer: TokenSigner) -> None:
    token, issued = signer.issue_refresh("u1", "fam1")
    claims = signer.verify_refresh(token)
    assert claims == issued
    assert claims.family_id == "fam1"
    assert len(claims.token_id) >= 16


def test_expired_token_is_refused(signer: TokenSigner) -> None:
    token = signer.issue_access("u1", Role.USER, now=int(time.time()) - 901)
    with pytest.raises(InvalidToken):
        signer.verify_access(token)


def test_tampered_signature_is_refused(signer: TokenSigner) -> None:
    header, payload, signature = signer.issue_access("u1", Role.USER).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidToken):
        signer.verify_access(f"{header}.{payload}.{flipped}")


def test_tampered_payload_is_refused(signer: TokenSigner) -> None:
    header, payload, signature = signer.issue_access("u1", Role.USER).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        signer.verify_access(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused(signer: TokenSigner) -> None:
    unsigned = jwt.encode(_valid_claims(role="admin"), key=None, algorithm="none")
    with pytest.raises(InvalidToken):
        signer.verify_access(unsigned)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_the_right_key(
    signer: TokenSigner, algorithm: str
) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(_forge(_valid_claims(), algorithm=algorithm))


def test_wrong_key_is_refused(signer: TokenSigner) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(_forge(_valid_claims(), key=OTHER_KEY))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "typ", "iss"])
def test_missing_required_claim_is_refused(signer: TokenSigner, missing: str) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(_forge(_valid_claims(**{missing: None})))


def test_wrong_issuer_is_refused(signer: TokenSigner) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(_forge(_valid_claims(iss="someone-else")))


def test_unknown_role_is_refused(signer: TokenSigner) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(_forge(_valid_claims(role="superuser")))


def test_refresh_token_is_not_an_access_token(signer: TokenSigner) -> None:
    refresh, _ = signer.issue_refresh("u1", "fam1")
    with pytest.raises(InvalidToken):
        signer.verify_access(refresh)


def test_access_token_is_not_a_refresh_token(signer: TokenSigner) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_refresh(signer.issue_access("u1", Role.USER))


def test_refresh_token_without_family_is_refused(signer: TokenSigner) -> None:
    forged = _forge(_valid_claims(typ="refresh", jti="abc", fam=None))
    with pytest.raises(InvalidToken):
        signer.verify_refresh(forged)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_refused(signer: TokenSigner, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(garbage)


def test_short_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenSigner(b"short", issuer="creditml", access_ttl=900, refresh_ttl=3600)


def test_access_tokens_carry_their_session_family(signer: TokenSigner) -> None:
    claims = signer.verify_access(signer.issue_access("u1", Role.USER, "fam1"))
    assert claims.family_id == "fam1"


def test_an_access_token_without_a_family_is_refused(signer: TokenSigner) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(_forge(_valid_claims(fam=None)))


def _refresh_claims(**overrides: object) -> dict[str, object]:
    return _valid_claims(**{"typ": "refresh", "role": None, "jti": "jti1", **overrides})


# Signed with the real key: only the claim types are wrong.
@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": str(int(time.time()) + 60)},  # a numeric string (PyJWT would int() it)
        {"iat": str(int(time.time()))},
        {"exp": True},  # bool is an int subclass in Python
        {"iat": False},
        {"exp": int(time.time()) + 60.5},  # floats: we only issue integers
        {"iat": float(int(time.time()))},
        {"exp": None, "iat": None},
        {"sub": 42},
        {"sub": ""},
        {"iss": ["creditml"]},
        {"role": ["user"]},
        {"fam": 7},
        {"fam": ""},
        {"jti": 5},  # not needed on an access token, but never of another type
    ],
)
def test_access_claims_are_typed_strictly(
    signer: TokenSigner, overrides: dict[str, object]
) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_access(_forge(_valid_claims(**overrides)))


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": str(int(time.time()) + 60)},
        {"iat": True},
        {"exp": int(time.time()) + 0.5},
        {"jti": 1},
        {"jti": ""},
        {"fam": ["f"]},
        {"sub": None},
    ],
)
def test_refresh_claims_are_typed_strictly(
    signer: TokenSigner, overrides: dict[str, object]
) -> None:
    with pytest.raises(InvalidToken):
        signer.verify_refresh(_forge(_refresh_claims(**overrides)))


def test_well_typed_crafted_claims_pass(signer: TokenSigner) -> None:
    # The control for the two tests above: the same crafting, right types, is accepted.
    assert signer.verify_access(_forge(_valid_claims())).family_id == "fam1"
    assert signer.verify_refresh(_forge(_refresh_claims())).token_id == "jti1"
