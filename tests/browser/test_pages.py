"""Every page for each role: it loads (or is a clear HTML 403/404 page, or sends a logged-out
person to the log-in page), with the navigation DESIGN §10 names and no JavaScript errors."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.conftest import Factory
from tests.browser.pages import NAV, PRIVATE, PUBLIC, RANK, model_path

ERROR_PAGE = re.compile(r"^text/html")


def _visit(page: Page, path: str) -> Response:
    response = page.goto(path)
    assert response is not None, path
    return response


def _assert_html_page(page: Page, response: Response, path: str) -> None:
    content_type = response.headers.get("content-type", "")
    assert ERROR_PAGE.match(content_type), f"{path}: {response.status} {content_type}"
    body = page.locator("body").inner_text()
    assert body.strip(), f"{path}: an empty page"
    assert "Traceback" not in body, f"{path}: a stack trace"
    assert not body.lstrip().startswith("{"), f"{path}: JSON, not a page: {body[:200]}"


def _assert_logged_in_chrome(page: Page, role: str, path: str) -> None:
    nav = (
        page.get_by_role("navigation")
        .filter(has=page.get_by_role("link", name="Account", exact=True))
        .first
    )
    for name in NAV:
        expect(nav.get_by_role("link", name=name, exact=True), f"{path}: {name}").to_be_visible()
    publish = nav.get_by_role("link", name="Publish", exact=True)
    admin = nav.get_by_role("link", name="Admin", exact=True)
    expect(publish, f"{path}: Publish link").to_have_count(1 if RANK[role] >= 1 else 0)
    expect(admin, f"{path}: Admin link").to_have_count(1 if role == "admin" else 0)
    expect(page.get_by_role("button", name="Log out", exact=True), path).to_be_visible()


def test_the_logged_out_home_page_links_to_register_and_log_in(page: Page) -> None:
    response = _visit(page, "/")
    assert response.status == 200
    register = page.get_by_role("link", name=re.compile(r"^(Create account|Register)$")).first
    expect(register).to_be_visible()
    page.get_by_role("link", name="Log in", exact=True).first.click()
    page.wait_for_url("**/ui/login")
    expect(page.get_by_label("Email", exact=True)).to_be_visible()
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible()


def test_logged_out_pages(page: Page) -> None:
    for path in PUBLIC:
        response = _visit(page, path)
        assert response.status == 200, path
        _assert_html_page(page, response, path)
        expect(page.get_by_role("button", name="Log out", exact=True)).to_have_count(0)
    for path in PRIVATE:
        response = _visit(page, path)
        assert re.search(r"/ui/login(\?|$)", page.url), f"{path} -> {page.url}"
        first = response.request.redirected_from
        assert first is not None, f"{path}: no redirect"
        assert first.response() is not None
        assert first.response().status == 303, path  # type: ignore[union-attr]


def test_logged_out_catalogue_and_model_page_load_or_ask_to_log_in(
    page: Page, as_role: Callable[..., Page]
) -> None:
    demo = model_path(as_role("user"))
    for path in ("/ui/models", demo):
        response = _visit(page, path)
        if re.search(r"/ui/login(\?|$)", page.url):
            continue  # the catalogue may ask for a log-in first
        assert response.status == 200, path
        _assert_html_page(page, response, path)


@pytest.mark.parametrize("role", ["user", "publisher", "admin"])
def test_every_page_for_each_role(role: str, as_role: Callable[..., Page]) -> None:
    page = as_role(role)
    demo = model_path(page)
    for path in [*PUBLIC, "/ui/models", demo, *PRIVATE]:
        response = _visit(page, path)
        allowed = path not in PRIVATE or RANK[role] >= RANK[PRIVATE[path]]
        expected = "< 400" if allowed else "403"
        assert (response.status < 400) if allowed else (response.status == 403), (
            f"{role} {path}: {response.status}, expected {expected}"
        )
        _assert_html_page(page, response, path)
        _assert_logged_in_chrome(page, role, path)


@pytest.mark.parametrize("path", ["/ui/models/no-such-model", "/ui/no-such-page"])
def test_unknown_pages_are_html_404s(
    path: str, open_page: Factory, as_role: Callable[..., Page]
) -> None:
    for page in (open_page(), as_role("user")):
        response = _visit(page, path)
        if path.startswith("/ui/models/") and re.search(r"/ui/login(\?|$)", page.url):
            continue  # logged out: a model page asks for a log-in before saying 404
        assert response.status == 404, f"{path}: {response.status}"
        _assert_html_page(page, response, path)


def test_swagger_ui_works_offline(page: Page, base_url: str) -> None:
    """/docs draws Swagger UI from assets the project ships (no CDN)."""
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url))
    response = _visit(page, "/docs")
    assert response.status == 200
    expect(page.locator(".swagger-ui")).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    outside = [url for url in outside if not url.startswith(base_url)]
    assert not outside, f"requests outside the stack: {outside}"
