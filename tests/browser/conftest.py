"""Browser tests: Playwright driving Debian's chromium against one local stack per session.

Every page a test opens comes from `open_page` (or is `page`): its console errors and
uncaught exceptions fail the test when it ends, so "no JavaScript errors on any page" holds
for every page the suite visits. Logins are made through the UI once per role and reused
as storage states; tests that end or change a session (log out, role changes) use accounts
of their own."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    Account,
    RunningStack,
    copy_project,
    new_account,
    start_stack,
)

CHROMIUM = os.environ.get("CREDITML_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
TIMEOUT_MS = 15_000
# Chromium logs one console error for any response of 400 or more, the page's own document
# included. A page that answers 403/404/402 on purpose is not a JavaScript error; the same
# message for a script, a stylesheet or a fetch the page makes still fails the test.
FAILED_RESOURCE = re.compile(r"^Failed to load resource: the server responded with a status of")

Factory = Callable[..., Page]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The local stack every browser test shares, in a project copy of its own."""
    running = start_stack(cwd=copy_project(tmp_path_factory.mktemp("browser-stack")))
    yield running
    try:
        code = running.stop()
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"the stack stopped with {code}; its last lines:\n" + "".join(
        running.output[-40:]
    )


@pytest.fixture(scope="session")
def base_url(stack: RunningStack) -> str:
    return stack.url


@pytest.fixture
def http(stack: RunningStack) -> Iterator[httpx.Client]:
    with stack.client() as client:
        yield client


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    launched = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True)
    yield launched
    launched.close()


@dataclass
class PageWatch:
    """What went wrong in the JavaScript of the pages one test opened."""

    errors: list[str] = field(default_factory=list)
    failed_documents: set[str] = field(default_factory=set)

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("response", self._response)
        return page

    def _response(self, response: Response) -> None:
        if response.status >= 400 and response.request.resource_type == "document":
            self.failed_documents.add(response.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = str(message.location.get("url", ""))
        if FAILED_RESOURCE.match(message.text) and url in self.failed_documents:
            return
        self.errors.append(f"console.error at {url}: {message.text}")


@pytest.fixture
def open_page(browser: Browser, base_url: str) -> Iterator[Factory]:
    """`open_page(storage_state=None, width=1280)`: a page in a fresh context, watched for
    JavaScript errors until the test ends."""
    watch = PageWatch()
    contexts: list[BrowserContext] = []

    def factory(storage_state: Any = None, width: int = 1280, height: int = 900) -> Page:
        context = browser.new_context(
            base_url=base_url,
            storage_state=storage_state,
            viewport={"width": width, "height": height},
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return watch.watch(context.new_page())

    yield factory
    for context in contexts:
        with contextlib.suppress(PlaywrightError):  # already closed by the test
            context.close()
    assert not watch.errors, "JavaScript errors:\n" + "\n".join(watch.errors)


@pytest.fixture
def page(open_page: Factory) -> Page:
    """A logged-out page in a fresh context."""
    return open_page()


def ui_login(page: Page, email: str, password: str = PASSWORD) -> None:
    """Log in through the log-in form and wait for the catalogue."""
    page.goto("/ui/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.wait_for_url("**/ui/models")


def balance_of(page: Page) -> int:
    """The number in data-testid=balance (thousands separators removed)."""
    text = page.get_by_test_id("balance").inner_text()
    return int(text.replace(",", "").strip())


@dataclass(frozen=True)
class Person:
    """An account with its password and a UI session saved after logging in once."""

    role: str
    email: str
    password: str
    storage_state: Any
    account: Account | None = None


@pytest.fixture(scope="session")
def people(stack: RunningStack, browser: Browser) -> dict[str, Person]:
    """One logged-in UI session per role, made once: a user with credits, a publisher and
    the seeded admin. Tests must not log these out, log them in again (a new log-in ends
    the person's previous session) or change their roles."""
    with stack.client() as http:
        user = new_account(http, credits=1_000, prefix="ui-user")
        publisher = new_account(http, role="publisher", credits=1_000, prefix="ui-pub")
    logins = [
        ("user", user.email, PASSWORD, user),
        ("publisher", publisher.email, PASSWORD, publisher),
        ("admin", ADMIN_EMAIL, ADMIN_PASSWORD, None),
    ]
    result: dict[str, Person] = {}
    for role, email, password, account in logins:
        context = browser.new_context(base_url=stack.url)
        context.set_default_timeout(TIMEOUT_MS)
        ui_login(context.new_page(), email, password)
        result[role] = Person(role, email, password, context.storage_state(), account)
        context.close()
    return result


@pytest.fixture
def as_role(open_page: Factory, people: dict[str, Person]) -> Callable[..., Page]:
    """`as_role("user" | "publisher" | "admin", width=...)`: a page logged in as that role."""

    def factory(role: str, **options: Any) -> Page:
        return open_page(storage_state=people[role].storage_state, **options)

    return factory
