"""A person's way through the UI: register, top up, predict, history, usage; a bad log-in;
too few credits (402); a double-clicked top-up; the log-in form by keyboard alone."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from creditml.devstack.events import DEMO_MODEL_NAME
from tests.browser.conftest import Factory, Person, balance_of, ui_login
from tests.browser.pages import fill_demo_row, model_path
from tests.e2e.conftest import PASSWORD, bearer, login, new_account


def _api_balance(http: httpx.Client, email: str) -> int:
    token = login(http, email)
    return int(http.get("/billing/balance", headers=bearer(token)).json()["balance"])


def _top_up_button(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("button", name="Top up", exact=True)


def test_register_top_up_predict_history_usage(page: Page, http: httpx.Client) -> None:
    email = f"ui-flow-{uuid.uuid4().hex[:10]}@example.com"
    page.goto("/")
    page.get_by_role("link", name=re.compile(r"^(Create account|Register)$")).first.click()
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account", exact=True).click()
    page.wait_for_url(re.compile(r"/ui/account(\?[^/]*)?$"))
    assert balance_of(page) == 0

    page.get_by_label("Amount", exact=True).fill("1000")
    _top_up_button(page).click()
    expect(page.get_by_test_id("balance")).to_have_text(re.compile(r"^\s*1,?000\s*$"))

    page.goto(model_path(page))
    fill_demo_row(page)
    page.get_by_role("button", name="Predict", exact=True).click()
    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_be_visible()
    after = _api_balance(http, email)
    assert after < 1000, "the prediction was not charged"

    page.get_by_role("link", name="History", exact=True).click()
    page.wait_for_url("**/ui/history")
    expect(page.get_by_text(DEMO_MODEL_NAME).first).to_be_visible()

    page.get_by_role("link", name="Usage", exact=True).click()
    page.wait_for_url("**/ui/usage")
    assert page.locator("svg, canvas").count() >= 1


def test_the_usage_page_draws_a_chart_before_any_prediction(
    open_page: Factory, http: httpx.Client
) -> None:
    account = new_account(http, prefix="ui-empty")
    page = open_page()
    ui_login(page, account.email)
    page.goto("/ui/usage")
    assert page.locator("svg, canvas").count() >= 1
    page.goto("/ui/history")  # an empty history says what to do next, and has no error
    assert "Traceback" not in page.locator("body").inner_text()


def test_a_bad_log_in_says_invalid_email_or_password(page: Page, people: dict[str, Person]) -> None:
    page.goto("/ui/login")
    page.get_by_label("Email", exact=True).fill(people["user"].email)
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.get_by_text("Invalid email or password")).to_be_visible()
    assert "/ui/login" in page.url
    assert not [c for c in page.context.cookies() if "csrf" not in c["name"]]


def test_predicting_without_credits_shows_the_balance_and_a_top_up_link(
    open_page: Factory, http: httpx.Client
) -> None:
    account = new_account(http, prefix="ui-broke")
    page = open_page()
    ui_login(page, account.email)
    page.goto(model_path(page))
    fill_demo_row(page)
    page.get_by_role("button", name="Predict", exact=True).click()
    top_up = page.get_by_role("link", name="Top up", exact=True)
    expect(top_up).to_be_visible()
    expect(page.get_by_test_id("receipt")).to_have_count(0)
    text = page.locator("body").inner_text()
    assert re.search(r"balance", text, re.IGNORECASE), text
    assert re.search(r"\b0\b", text), text
    top_up.click()
    expect(page.get_by_label("Amount", exact=True)).to_be_visible()
    assert _api_balance(http, account.email) == 0


def test_a_double_clicked_top_up_charges_once(open_page: Factory, http: httpx.Client) -> None:
    account = new_account(http, prefix="ui-double")
    page = open_page()
    ui_login(page, account.email)
    page.goto("/ui/account")
    page.get_by_label("Amount", exact=True).fill("50")
    with page.expect_navigation(url=re.compile(r"/ui/account(\?[^/]*)?$")):
        _top_up_button(page).dblclick()
    page.goto("/ui/account")
    assert balance_of(page) == 50
    assert _api_balance(http, account.email) == 50

    # The same rendered form sent twice (a reload after POST, or a second tab): once.
    page.get_by_label("Amount", exact=True).fill("7")
    form = page.locator("form").filter(has=_top_up_button(page))
    fields = form.evaluate("f => Object.fromEntries(new FormData(f))")
    action = form.evaluate("f => f.action")
    origin = page.evaluate("location.origin")
    for _ in range(2):
        sent = page.request.post(action, form=fields, headers={"Origin": origin}, max_redirects=0)
        assert sent.status < 400, sent.text()
    page.goto("/ui/account")
    assert balance_of(page) == 57
    assert _api_balance(http, account.email) == 57


def test_the_log_in_form_works_with_the_keyboard_alone(page: Page, http: httpx.Client) -> None:
    account = new_account(http, prefix="ui-keys")  # a log-in ends the same person's last one
    page.goto("/ui/login")
    email_field = page.get_by_label("Email", exact=True)
    for _ in range(30):
        page.keyboard.press("Tab")
        if email_field.evaluate("e => e === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the Email field")
    page.keyboard.type(account.email)
    page.keyboard.press("Tab")
    password = page.get_by_label("Password", exact=True)
    assert password.evaluate("e => e === document.activeElement"), "Tab from Email"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/models")


def test_rows_pasted_as_csv_are_predicted_together(as_role: Callable[..., Page]) -> None:
    page = as_role("user")
    page.goto(model_path(page))
    rows = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    page.get_by_label("Rows (CSV)", exact=True).fill(rows)
    page.get_by_role("button", name="Send rows", exact=True).click()
    expect(page.get_by_test_id("receipt")).to_be_visible()
