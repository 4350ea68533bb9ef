"""The suite's own JavaScript-error watch catches what it must and lets pass only a page's own
document answering 4xx on purpose (pages served by a route, no stack needed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.browser.conftest import PageWatch

ORIGIN = "http://watch.test"
PAGES = {
    "/throws": (200, "<script>throw new Error('boom')</script>"),
    "/logs": (200, "<script>console.error('logged')</script>"),
    "/missing-script": (200, "<script src='/gone.js'></script>"),
    "/missing-fetch": (200, "<script>fetch('/gone.json')</script>"),
    "/forbidden": (403, "<h1>Forbidden</h1>"),
    "/fine": (200, "<h1>Fine</h1><script>console.log('not an error')</script>"),
}


def _serve(route: Route) -> None:
    path = "/" + route.request.url.removeprefix(ORIGIN + "/")
    status, body = PAGES.get(path, (404, "not found"))
    route.fulfill(status=status, body=body, content_type="text/html")


@pytest.fixture
def watched(browser: Browser) -> Iterator[tuple[Page, PageWatch]]:
    context = browser.new_context()
    context.route(f"{ORIGIN}/**", _serve)
    watch = PageWatch()
    yield watch.watch(context.new_page()), watch
    context.close()


@pytest.mark.parametrize(
    ("path", "caught"),
    [
        ("/throws", "boom"),
        ("/logs", "logged"),
        ("/missing-script", "404"),
        ("/missing-fetch", "404"),
    ],
)
def test_the_watch_catches_javascript_errors(
    path: str, caught: str, watched: tuple[Page, PageWatch]
) -> None:
    page, watch = watched
    page.goto(ORIGIN + path)
    page.wait_for_load_state("networkidle")
    assert len(watch.errors) == 1, watch.errors
    assert caught in watch.errors[0]


@pytest.mark.parametrize("path", ["/forbidden", "/fine"])
def test_the_watch_lets_pages_answering_4xx_on_purpose_pass(
    path: str, watched: tuple[Page, PageWatch]
) -> None:
    page, watch = watched
    page.goto(ORIGIN + path)
    page.wait_for_load_state("networkidle")
    assert watch.errors == []
