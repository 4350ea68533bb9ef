"""The session: cookie flags, nothing but a CSRF cookie before log-in, CSRF refusal of a
forged form post, and a log-out that ends the session on the server."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import Factory, balance_of, ui_login
from tests.e2e.conftest import Account, RunningStack, bearer, login, new_account


def _non_csrf(cookies: list[Any]) -> list[Any]:
    return [cookie for cookie in cookies if "csrf" not in cookie["name"].lower()]


def _logged_in(open_page: Factory, http: httpx.Client, prefix: str) -> tuple[Page, Account]:
    account = new_account(http, prefix=prefix)
    page = open_page()
    ui_login(page, account.email)
    return page, account


def test_no_cookie_but_the_csrf_one_before_log_in(page: Page) -> None:
    for path in ("/", "/ui/register", "/ui/login", "/ui/models"):
        page.goto(path)
    cookies = page.context.cookies()
    assert not _non_csrf(cookies), cookies
    for cookie in cookies:
        assert cookie["httpOnly"], cookie


def test_the_session_cookie_is_http_only_strict_and_hidden_from_scripts(
    open_page: Factory, http: httpx.Client
) -> None:
    page, _ = _logged_in(open_page, http, "ui-cookie")
    session = _non_csrf(page.context.cookies())
    assert session, "no session cookie after log-in"
    visible = page.evaluate("document.cookie")
    for cookie in session:
        assert cookie["httpOnly"], cookie
        assert cookie["sameSite"] == "Strict", cookie
        assert cookie["value"] not in visible
        assert cookie["name"] not in visible
    for path in ("/ui/account", "/ui/models"):
        page.goto(path)
        assert page.evaluate("document.cookie") == visible


def _top_up_form(page: Page) -> tuple[str, dict[str, str]]:
    page.goto("/ui/account")
    page.get_by_label("Amount", exact=True).fill("100")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Top up", exact=True))
    fields: dict[str, str] = form.evaluate("f => Object.fromEntries(new FormData(f))")
    assert "csrf_token" in fields, fields
    return str(form.evaluate("f => f.action")), fields


def test_a_forged_form_post_is_refused_and_changes_nothing(
    open_page: Factory, http: httpx.Client, stack: RunningStack
) -> None:
    page, account = _logged_in(open_page, http, "ui-csrf")
    action, fields = _top_up_form(page)
    cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
    headers = {"Origin": stack.url}
    forged = [
        {key: value for key, value in fields.items() if key != "csrf_token"},
        {**fields, "csrf_token": "forged" + fields["csrf_token"][6:]},
        {**fields, "csrf_token": ""},
    ]
    with httpx.Client(cookies=cookies, timeout=30) as browserless:
        for data in forged:
            refused = browserless.post(action, data=data, headers=headers)
            assert refused.status_code == 403, (data, refused.status_code, refused.text[:300])
            assert "text/html" in refused.headers.get("content-type", "")
        assert http.get("/billing/balance", headers=bearer(login(http, account.email))).json() == {
            "balance": 0
        }
        # The same post with the page's own token goes through: the refusal was the token's.
        accepted = browserless.post(action, data=fields, headers=headers)
        assert accepted.status_code < 400, accepted.text[:300]
    page.goto("/ui/account")
    assert balance_of(page) == 100


def test_logging_out_ends_the_session_on_the_server(
    open_page: Factory, http: httpx.Client, stack: RunningStack
) -> None:
    page, _ = _logged_in(open_page, http, "ui-logout")
    page.goto("/ui/account")
    old = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
    with httpx.Client(base_url=stack.url, cookies=old, timeout=30) as replay:
        assert replay.get("/ui/account").status_code == 200  # the cookies alone open it
    page.get_by_role("button", name="Log out", exact=True).click()
    page.wait_for_load_state()
    expect(page.get_by_role("button", name="Log out", exact=True)).to_have_count(0)
    assert not _non_csrf(page.context.cookies())
    page.goto("/ui/account")
    assert re.search(r"/ui/login(\?|$)", page.url), page.url
    with httpx.Client(base_url=stack.url, cookies=old, timeout=30) as replay:
        answer = replay.get("/ui/account")
        assert answer.status_code == 303, answer.status_code
        assert re.search(r"/ui/login(\?|$)", answer.headers["location"])


def test_pages_forbid_inline_scripts(page: Page) -> None:
    for path in ("/", "/ui/login"):
        response = page.goto(path)
        assert response is not None
        policy = response.headers.get("content-security-policy", "")
        directives = {
            name: value
            for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))
            if name
        }
        scripts = directives.get("script-src", directives.get("default-src"))
        assert scripts is not None, f"{path}: no script-src in {policy!r}"
        assert "unsafe-inline" not in scripts, f"{path}: {policy!r}"
