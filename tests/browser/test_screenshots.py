"""Screenshots of the main pages at a phone's and a desktop's width, kept in
tests/browser/screenshots/ so a reviewer can look without running anything. At 375 px no page
may scroll sideways (readable on a phone)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import SCREENSHOTS, Factory
from tests.browser.pages import model_path

# (file name, role or None for logged out, path; "{model}" is the demo model's page)
SHOTS = [
    ("home", None, "/"),
    ("register", None, "/ui/register"),
    ("login", None, "/ui/login"),
    ("models", "user", "/ui/models"),
    ("model", "user", "{model}"),
    ("account", "user", "/ui/account"),
    ("history", "user", "/ui/history"),
    ("usage", "user", "/ui/usage"),
    ("publish", "publisher", "/ui/publish"),
    ("usage-publisher", "publisher", "/ui/usage"),
    ("admin-users", "admin", "/ui/admin/users"),
    ("admin-reports", "admin", "/ui/admin/reports"),
]
# The element reaching furthest right, to say what makes a page scroll sideways.
WIDEST = """() => {
  let worst = null, right = 0;
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect().right;
    if (r > right) { right = r; worst = e; }
  }
  return worst ? `${worst.tagName.toLowerCase()}.${worst.className} (${Math.round(right)} px)` : '';
}"""


@pytest.mark.parametrize("width", [375, 1440])
def test_screenshots_of_the_main_pages(
    width: int, open_page: Factory, as_role: Callable[..., Page]
) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    pages = {None: open_page(width=width)}
    for role in ("user", "publisher", "admin"):
        pages[role] = as_role(role, width=width)
    model = model_path(pages["user"])
    too_wide: list[str] = []
    for name, role, path in SHOTS:
        page = pages[role]
        path = path.format(model=model)
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, f"{path}: {response.status}"
        page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            too_wide.append(f"{path}: {scroll_width} px, widest: {page.evaluate(WIDEST)}")
    assert not too_wide, f"pages wider than {width} px: {too_wide}"
