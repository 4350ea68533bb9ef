"""An admin changes a user's role on /ui/admin/users; the change shows there, in the API and
in the user's own navigation."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import Factory, ui_login
from tests.e2e.conftest import bearer, login, new_account


def test_an_admin_changes_a_users_role(
    as_role: Callable[..., Page], open_page: Factory, http: httpx.Client
) -> None:
    account = new_account(http, prefix="ui-promoted")
    admin = as_role("admin")
    admin.goto("/ui/admin/users")
    row = admin.locator("tr").filter(has_text=account.email)
    expect(row).to_have_count(1)
    row.get_by_label("Role").select_option("publisher")
    row.get_by_role("button", name="Change role", exact=True).click()
    admin.wait_for_load_state()

    admin.goto("/ui/admin/users")
    row = admin.locator("tr").filter(has_text=account.email)
    expect(row.get_by_label("Role")).to_have_value("publisher")
    me = http.get("/users/me", headers=bearer(login(http, account.email))).json()
    assert me["role"] == "publisher"

    promoted = open_page()
    ui_login(promoted, account.email)
    expect(promoted.get_by_role("link", name="Publish", exact=True)).to_be_visible()
    assert promoted.goto("/ui/publish").status == 200  # type: ignore[union-attr]
