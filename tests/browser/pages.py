"""What the browser tests know about the pages: paths, who may see them, and small helpers
that find things the way a person would (by link text)."""

from __future__ import annotations

from playwright.sync_api import Page

from creditml.devstack.events import DEMO_MODEL_NAME

# The demo model's features, in its input schema's order, and one iris row for them.
DEMO_ROW = {
    "sepal_length": "5.1",
    "sepal_width": "3.5",
    "petal_length": "1.4",
    "petal_width": "0.2",
}
NAV = ("Models", "Account", "History", "Usage")
# Pages that need a log-in, with the least role that may see them.
PRIVATE = {
    "/ui/account": "user",
    "/ui/history": "user",
    "/ui/usage": "user",
    "/ui/publish": "publisher",
    "/ui/admin/users": "admin",
    "/ui/admin/reports": "admin",
}
PUBLIC = ("/", "/ui/register", "/ui/login")
RANK = {"user": 0, "publisher": 1, "admin": 2}


def model_path(page: Page, name: str = DEMO_MODEL_NAME) -> str:
    """The model page's path, found on the catalogue by the model's name."""
    page.goto("/ui/models")
    href = page.get_by_role("link", name=name, exact=True).first.get_attribute("href")
    assert href, f"no link to {name!r} on the catalogue"
    return href


def fill_demo_row(page: Page) -> None:
    for feature, value in DEMO_ROW.items():
        page.get_by_label(feature, exact=True).fill(value)
