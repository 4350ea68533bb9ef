"""Every auth route through the auth function's real Lambda handler, under moto."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from creditml.auth.roles import Role
from creditml.settings import get_settings
from creditml.storage.users import USER_CURSOR_MAX_LENGTH, UserRepository
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login
from tests.text_forms import fullwidth

AUTH = "AuthFunction"
PASSWORD = "correct horse battery"


def _register(api: Api, body: object) -> tuple[int, dict[str, object]]:
    return api.call(AUTH, with_body(load_event("auth_register"), body))


def _login(api: Api, email: str, password: str) -> tuple[int, dict[str, object]]:
    return api.call(
        AUTH, with_body(load_event("auth_login"), {"email": email, "password": password})
    )


def _me(api: Api, token: str) -> tuple[int, dict[str, object]]:
    return api.call(AUTH, load_event("users_me", access_token=token))


def _refresh(api: Api, token: str) -> tuple[int, dict[str, object]]:
    return api.call(AUTH, load_event("auth_refresh", refresh_token=token))


def _set_role(api: Api, token: str, user_id: str, role: object) -> tuple[int, dict[str, object]]:
    event = load_event("users_set_role", access_token=token, demo_user_id=user_id)
    return api.call(AUTH, with_body(event, {"role": role}))


def _list_users(api: Api, token: str, **query: object) -> tuple[int, Any]:
    """GET /users?QUERY as API Gateway hands it to the auth function."""
    event = load_event("users_me", access_token=token)
    raw = urlencode({name: str(value) for name, value in query.items()})
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /users"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/users"
    event["rawQueryString"] = raw
    if query:
        event["queryStringParameters"] = {name: str(value) for name, value in query.items()}
    return api.call(AUTH, event)


def test_register_login_me(api: Api) -> None:
    status, user = _register(api, {"email": "Ada@Example.com", "password": PASSWORD})
    assert status == 201
    assert user["email"] == "Ada@Example.com"
    assert user["role"] == "user"
    assert "password" not in str(user)
    assert "hash" not in str(user)

    status, pair = _login(api, "ada@example.COM", PASSWORD)
    assert status == 200
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900

    status, profile = _me(api, str(pair["access_token"]))
    assert status == 200
    assert profile == {"id": user["id"], "email": "Ada@Example.com", "role": "user", "balance": 0}


def test_email_is_unique_in_any_letter_case(api: Api) -> None:
    assert _register(api, {"email": "bob@example.com", "password": PASSWORD})[0] == 201
    status, problem = _register(api, {"email": "BOB@example.com", "password": "another password"})
    assert (status, problem["code"]) == (409, "email_taken")
    # The original password still works; the refused registration changed nothing.
    assert _login(api, "bob@example.com", PASSWORD)[0] == 200
    assert _login(api, "bob@example.com", "another password")[0] == 401


def test_a_look_alike_email_is_taken_and_logs_in_to_the_same_account(api: Api) -> None:
    assert _register(api, {"email": "zoe@example.com", "password": PASSWORD})[0] == 201
    status, problem = _register(
        api, {"email": fullwidth("ZOE") + "@example.com", "password": PASSWORD}
    )
    assert (status, problem["code"]) == (409, "email_taken")
    status, pair = _login(api, fullwidth("zoe@EXAMPLE") + ".com", PASSWORD)
    assert status == 200
    assert _me(api, str(pair["access_token"]))[1]["email"] == "zoe@example.com"


def test_a_password_with_spaces_inside_is_fine(api: Api) -> None:
    assert _register(api, {"email": "sid@example.com", "password": "  two words  "})[0] == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "eve@example.com", "password": "short"}, "body.password"),
        ({"email": "eve@example.com", "password": "x" * 257}, "body.password"),
        ({"email": "not-an-email", "password": PASSWORD}, "body.email"),
        ({"email": "a@b", "password": PASSWORD}, "body.email"),
        ({"email": "eve@example.com"}, "body.password"),
        ({"password": PASSWORD}, "body.email"),
        ({"email": "eve@example.com", "password": PASSWORD, "role": "admin"}, "body.role"),
        ({"email": 5, "password": PASSWORD}, "body.email"),
        ({"email": "eve@example.com", "password": " " * 12}, "body.password"),
        ({"email": "eve@example.com", "password": "\u00a0\u2003\t\n" * 3}, "body.password"),
        ({"email": "e\u200bve@example.com", "password": PASSWORD}, "body.email"),
        ({"email": "eve\u202e@example.com", "password": PASSWORD}, "body.email"),
    ],
)
def test_bad_registrations_are_422_naming_the_field_and_change_nothing(
    api: Api, body: object, field: str
) -> None:
    status, problem = _register(api, body)
    assert (status, problem["code"]) == (422, "validation_error")
    assert field in [error["field"] for error in problem["errors"]]  # type: ignore[attr-defined]
    # Nothing was stored: the email is still free.
    assert _register(api, {"email": "eve@example.com", "password": PASSWORD})[0] == 201


def test_malformed_json_is_400(api: Api) -> None:
    status, problem = _register(api, '{"email": "x@example.com", ')
    assert (status, problem["code"]) == (400, "malformed_json")


def test_unknown_email_and_wrong_password_answer_alike(api: Api) -> None:
    _register(api, {"email": "carol@example.com", "password": PASSWORD})
    wrong = _login(api, "carol@example.com", "wrong password!")
    unknown = _login(api, "nobody@example.com", PASSWORD)
    assert wrong == unknown
    assert wrong[0] == 401
    assert wrong[1]["code"] == "invalid_credentials"


def test_me_needs_a_valid_access_token(api: Api) -> None:
    session = register_and_login(api, "dan@example.com")
    event = load_event("users_me", access_token="x")
    del event["headers"]["authorization"]
    status, problem = api.call(AUTH, event)
    assert (status, problem["code"]) == (401, "not_authenticated")
    assert _me(api, "not.a.token")[0] == 401
    # A refresh token is not an access token.
    status, problem = _me(api, session["refresh"])
    assert (status, problem["code"]) == (401, "invalid_token")


def test_refresh_rotates_and_a_reused_token_revokes_the_session(api: Api) -> None:
    session = register_and_login(api, "erin@example.com")
    status, first = _refresh(api, session["refresh"])
    assert status == 200
    assert first["refresh_token"] != session["refresh"]
    assert _me(api, str(first["access_token"]))[0] == 200

    # Reusing the spent token is refused, and revokes the family it belongs to...
    status, problem = _refresh(api, session["refresh"])
    assert (status, problem["code"]) == (401, "refresh_token_reused")
    # ...so even the legitimately rotated token no longer works.
    status, problem = _refresh(api, str(first["refresh_token"]))
    assert (status, problem["code"]) == (401, "invalid_token")
    # The user can still log in afresh, and that new session works.
    status, pair = _login(api, "erin@example.com", PASSWORD)
    assert status == 200
    assert _refresh(api, str(pair["refresh_token"]))[0] == 200


def test_access_token_is_refused_as_refresh_token(api: Api) -> None:
    session = register_and_login(api, "fay@example.com")
    status, problem = _refresh(api, session["access"])
    assert (status, problem["code"]) == (401, "invalid_token")


def test_a_role_change_ends_the_users_sessions_and_the_next_login_has_the_new_role(
    api: Api,
) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    user = register_and_login(api, "gil@example.com")

    status, changed = _set_role(api, admin["access"], user["id"], "publisher")
    assert status == 200
    assert changed["role"] == "publisher"

    # The session held at the change is over: its refresh token no longer rotates...
    status, problem = _refresh(api, user["refresh"])
    assert (status, problem["code"]) == (401, "invalid_token")
    # ...and a login right after the change carries the new role in a session that works.
    status, pair = _login(api, "gil@example.com", PASSWORD)
    assert status == 200
    claims = jwt.decode(str(pair["access_token"]), options={"verify_signature": False})
    assert claims["role"] == "publisher"
    assert _me(api, str(pair["access_token"]))[1]["role"] == "publisher"
    assert _refresh(api, str(pair["refresh_token"]))[0] == 200


def test_only_admins_set_roles(api: Api) -> None:
    user = register_and_login(api, "hal@example.com")
    other = register_and_login(api, "ivy@example.com")
    publisher = register_and_login(api, "pub@example.com", role=Role.PUBLISHER)
    for caller in (user, publisher):
        status, problem = _set_role(api, caller["access"], other["id"], "admin")
        assert (status, problem["code"]) == (403, "forbidden")
    assert _me(api, other["access"])[1]["role"] == "user"


@pytest.mark.parametrize("role", ["root", "", None, 3])
def test_unknown_roles_are_422(api: Api, role: object) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    user = register_and_login(api, "jo@example.com")
    status, problem = _set_role(api, admin["access"], user["id"], role)
    assert (status, problem["code"]) == (422, "validation_error")


def test_setting_the_role_of_an_unknown_user_is_404(api: Api) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    status, problem = _set_role(api, admin["access"], "no-such-user", "publisher")
    assert (status, problem["code"]) == (404, "user_not_found")


def test_admins_cannot_change_their_own_role(api: Api) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    status, problem = _set_role(api, admin["access"], admin["id"], "user")
    assert (status, problem["code"]) == (409, "own_role_change")


def test_responses_never_carry_stack_traces(api: Api) -> None:
    status, problem = _register(api, {"email": ["x"], "password": {"a": 1}})
    assert status == 422
    assert "Traceback" not in str(problem)
    assert "site-packages" not in str(problem)


# ---- GET /users: admins page through every user -------------------------------------------


def _every_user(api: Api, token: str, limit: int) -> list[list[dict[str, object]]]:
    pages: list[list[dict[str, object]]] = []
    query: dict[str, object] = {"limit": limit}
    while True:
        status, page = _list_users(api, token, **query)
        assert status == 200, page
        pages.append(page["items"])
        if page["next_cursor"] is None:
            return pages
        query["cursor"] = page["next_cursor"]
        assert len(pages) < 50, "the cursors never end"


def test_admins_page_through_every_user_once(api: Api) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    publisher = register_and_login(api, "pub@example.com", role=Role.PUBLISHER)
    for number in range(5):
        _register(api, {"email": f"Member{number}@Example.com", "password": PASSWORD})
    pages = _every_user(api, admin["access"], limit=2)
    listed = [user for page in pages for user in page]
    assert all(len(page) <= 2 for page in pages)
    assert len(listed) == 7
    assert len({user["id"] for user in listed}) == 7
    by_email = {user["email"]: user for user in listed}
    assert by_email["root@example.com"] == {
        "id": admin["id"],
        "email": "root@example.com",
        "role": "admin",
    }
    assert by_email["pub@example.com"] == {
        "id": publisher["id"],
        "email": "pub@example.com",
        "role": "publisher",
    }
    assert {by_email[f"Member{n}@Example.com"]["role"] for n in range(5)} == {"user"}
    # One page holds them all at the default limit; nothing secret is in it
    status, page = _list_users(api, admin["access"])
    assert (status, len(page["items"]), page["next_cursor"]) == (200, 7, None)
    assert "hash" not in str(page)
    assert "balance" not in str(page)


def test_an_admin_finds_a_user_by_email(api: Api) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    user = register_and_login(api, "Kai@Example.com")
    status, page = _list_users(api, admin["access"], email="KAI@example.com")
    assert (status, page) == (
        200,
        {
            "items": [{"id": user["id"], "email": "Kai@Example.com", "role": "user"}],
            "next_cursor": None,
        },
    )
    status, page = _list_users(api, admin["access"], email="nobody@example.com")
    assert (status, page) == (200, {"items": [], "next_cursor": None})


def test_only_admins_list_users(api: Api) -> None:
    user = register_and_login(api, "hal@example.com")
    publisher = register_and_login(api, "pub@example.com", role=Role.PUBLISHER)
    for caller in (user, publisher):
        status, problem = _list_users(api, caller["access"])
        assert (status, problem["code"]) == (403, "forbidden")
        status, problem = _list_users(api, caller["access"], email="hal@example.com")
        assert (status, problem["code"]) == (403, "forbidden")
    event = load_event("users_me", access_token="x")
    del event["headers"]["authorization"]
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /users"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/users"
    status, problem = api.call(AUTH, event)
    assert (status, problem["code"]) == (401, "not_authenticated")


def test_a_demoted_admin_cannot_list_users_with_an_admin_token(api: Api) -> None:
    # Given an admin's token, then the stored role changed to user behind the session's back
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    assert jwt.decode(admin["access"], options={"verify_signature": False})["role"] == "admin"
    assert _list_users(api, admin["access"])[0] == 200
    UserRepository(get_settings().users_table).set_role(admin["id"], Role.USER)
    # Then the stored role decides
    status, problem = _list_users(api, admin["access"])
    assert (status, problem["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    "cursor", ["!!!!", "bm90LWEtY3Vyc29y", "djE6U0VTU0lPTiN4", "djE6VVNFUiN1MQ==", ""]
)
def test_a_malformed_cursor_is_422_invalid_cursor_and_changes_nothing(
    api: Api, cursor: str
) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    register_and_login(api, "lee@example.com")
    before = _list_users(api, admin["access"])
    status, problem = _list_users(api, admin["access"], cursor=cursor)
    assert (status, problem["code"]) == (422, "invalid_cursor")
    assert "Traceback" not in str(problem)
    assert _list_users(api, admin["access"]) == before
    assert before[0] == 200
    assert len(before[1]["items"]) == 2


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"cursor": "A" * (USER_CURSOR_MAX_LENGTH + 1)},
        {"email": ""},
    ],
)
def test_a_bad_page_query_is_422(api: Api, query: dict[str, object]) -> None:
    admin = register_and_login(api, "root@example.com", role=Role.ADMIN)
    status, problem = _list_users(api, admin["access"], **query)
    assert (status, problem["code"]) == (422, "validation_error")
