"""Web UI benchmarks (issue 12), run by benchmarks/run.py (`make bench`) or alone:

    .venv/bin/python benchmarks/web.py

  warm page render      /ui/account (a user with 50 ledger entries: 25 credits, 25 real
                        predictions) and /ui/models/{id} (a ready model with 4 named
                        features, seen by its owner, a publisher, so the manage section
                        renders too): the web function's real handler (runtime.invoke of
                        WebFunction with the event API Gateway would send, session cookie
                        from a real log-in through the same handler), in-process moto,
                        median and p95 of 200 warm renders               target <= 20 ms;
                        and the same minus the time inside AWS calls (the product's own
                        cost: moto's share is not DynamoDB's), with the Jinja2 render
                        alone and the AWS calls per render reported beside
  page weight           /ui/account, /ui/models/{id} and /ui/usage (30 days of spend and
                        revenue on the charts): the HTML plus every asset it references
                        (link rel=stylesheet/icon href, script src, img src), each fetched
                        through the handler                              target <= 250 KB
                        (1 KB = 1,000 bytes); every referenced URL same-origin (starts with
                        one "/"): target 0 others. /docs (vendored Swagger UI) is reported
                        the same way, for information: the issue sets it no target.

The total render time is mostly moto's: serializing the ledger page's Query response alone
takes it ~35 ms; the "minus AWS" rows are the product's own cost, as in benchmarks/reports.py.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
sys.path.insert(0, str(ROOT / "benchmarks"))

from reports import _debits, _timing_aws_calls, in_process_aws  # noqa: E402
from stack import percentile as _percentile  # noqa: E402

FEATURES = ("income", "debt", "age", "years_employed")
PASSWORD = "benchmark web pw 1"  # noqa: S105 - a benchmark user's
PAGE_BYTES_LIMIT = 250_000
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@cache
def _template() -> Any:
    from creditml.devstack.template import Template

    return Template(ROOT / "template.yaml")


class Browser:
    """Requests as API Gateway hands them to the template's functions, cookies kept."""

    def __init__(self) -> None:
        self.template = _template()
        self.cookies: dict[str, str] = {}

    def event(self, method: str, url: str, form: dict[str, str] | None = None) -> Any:
        """(function spec, gateway event) for one request."""
        from creditml.devstack.gateway import build_event

        parts = urlsplit(url)
        headers = {"host": "web.bench"}
        body = b""
        if form is not None:
            body = urlencode(form).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        found = self.template.route_for(method, parts.path)
        assert found is not None, url
        route, parameters = found
        event = build_event(method, parts.path, parts.query, headers, body, route, parameters)
        return self.template.functions[route.function], event

    def answer(self, response: Any) -> tuple[int, bytes]:
        """Status and body of a handler's response; its cookies kept."""
        from creditml.devstack.gateway import to_http_response

        status, headers, body = to_http_response(response)
        for line in filter(None, headers.get("set-cookie", "").split("\n")):
            jar: SimpleCookie = SimpleCookie()
            jar.load(line)
            self.cookies.update({name: morsel.value for name, morsel in jar.items()})
        return status, body

    def request(self, method: str, url: str, form: dict[str, str] | None = None) -> Any:
        from creditml.devstack import runtime

        spec, event = self.event(method, url, form)
        return self.answer(runtime.invoke(spec, event))

    def log_in(self, email: str) -> None:
        _, form = self.request("GET", "/ui/login")
        found = CSRF.search(form.decode())
        assert found, form[:500]
        fields = {"csrf_token": found.group(1), "email": email, "password": PASSWORD}
        status, body = self.request("POST", "/ui/login", fields)
        assert status == 303, body[:500]
        assert "creditml_session" in self.cookies


def _model_file() -> bytes:
    import io

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, len(FEATURES)))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    # Fitted on a plain array (no pandas here): record the names, as a DataFrame would.
    model.feature_names_in_ = np.array(FEATURES, dtype=object)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def _predict(model_id: str, token: str, rows: int) -> None:
    """One real prediction through the predict function's handler (a debit entry)."""
    from creditml.devstack import runtime

    event = json.loads(
        (ROOT / "events" / "predictions_create.json")
        .read_text()
        .replace("<access-token>", token)
        .replace("<model-id>", model_id)
        .replace("<idempotency-key>", uuid.uuid4().hex)
    )
    event["body"] = json.dumps({"inputs": [[0.1 * n] * len(FEATURES) for n in range(rows)]})
    response = runtime.invoke(_template().functions["PredictFunction"], event)
    assert response["statusCode"] == 200, response


def _publisher_with_history(entries: int) -> tuple[str, str]:
    """A publisher with a ready 4-feature model of their own and `entries` ledger entries
    (half credits, half predictions), and 30 days of usage counters; (email, model id)."""
    from stack import publish_directly as _publish_directly

    from creditml.auth.roles import Role
    from creditml.billing.entries import EntryKind
    from creditml.composition.auth import auth_service
    from creditml.composition.core import ledger, token_signer
    from creditml.composition.reports import usage_counters
    from creditml.settings import get_settings
    from creditml.storage.users import UserRepository

    email = f"web-{uuid.uuid4().hex[:6]}@example.com"
    user = auth_service().register(email, PASSWORD)
    UserRepository(get_settings().users_table).set_role(user.id, Role.PUBLISHER)
    model_id = _publish_directly(user.id, _model_file(), price=2)
    credits = entries - entries // 2
    for n in range(credits):
        ledger().credit(
            user.id,
            1_000 + n,
            EntryKind.TOP_UP if n % 2 else EntryKind.GRANT,
            actor_id="bench-admin",
            idempotency_key=str(uuid.uuid4()),
            request="bench",
        )
    token = token_signer().issue_access(user.id, Role.PUBLISHER)
    for n in range(entries - credits):
        _predict(model_id, token, rows=1 + n % 3)
    # The usage page's charts as the aggregator would have left them after a month.
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    debits = _debits(600, users=1, models=1, start=start - timedelta(days=29), step=4000)
    debits = [
        d.__class__(**{**d.__dict__, "account_id": user.id, "model_id": model_id}) for d in debits
    ]
    usage_counters().count(debits, {model_id: user.id})
    return email, model_id


@contextmanager
def _timing_renders() -> Iterator[Callable[[], float]]:
    """Seconds spent in Jinja2's Template.render from now on."""
    from jinja2 import Template

    spent = [0.0]
    original = Template.render

    def timed(self: Any, *args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    Template.render = timed  # type: ignore[method-assign]
    try:
        yield lambda: spent[0]
    finally:
        Template.render = original  # type: ignore[method-assign]


def _renders(browser: Browser, url: str, renders: int, warmup: int = 10) -> dict[str, float]:
    """Warm renders of `url`: total handler time, minus AWS, Jinja2 alone (ms); AWS calls."""
    from run import _count_aws_calls

    from creditml.devstack import runtime

    calls = _count_aws_calls(lambda: browser.request("GET", url))
    totals, own, jinja = [], [], []
    inside_aws, restore = _timing_aws_calls()
    try:
        with _timing_renders() as inside_jinja:
            for n in range(warmup + renders):
                spec, event = browser.event("GET", url)
                aws_before, jinja_before = inside_aws(), inside_jinja()
                started = time.perf_counter()
                response = runtime.invoke(spec, event)
                elapsed = time.perf_counter() - started
                assert response["statusCode"] == 200, response
                if n >= warmup:
                    totals.append(elapsed * 1000)
                    own.append((elapsed - (inside_aws() - aws_before)) * 1000)
                    jinja.append((inside_jinja() - jinja_before) * 1000)
    finally:
        restore()
    return {
        "median_ms": statistics.median(totals),
        "p95_ms": _percentile(totals, 0.95),
        "own_median_ms": statistics.median(own),
        "own_p95_ms": _percentile(own, 0.95),
        "jinja_median_ms": statistics.median(jinja),
        "aws_calls": len(calls),
    }


class _References(HTMLParser):
    """The URLs a page makes the browser load: stylesheets, icons, scripts, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        rel = (found.get("rel") or "").lower().split()
        if tag == "link" and {"stylesheet", "icon", "preload", "modulepreload"} & set(rel):
            self.urls.append(found.get("href") or "")
        elif tag in ("script", "img") and found.get("src") is not None:
            self.urls.append(found["src"] or "")


def _same_origin(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


def page_weight(browser: Browser, url: str) -> dict[str, Any]:
    """Bytes of `url`'s HTML and of every asset it references, fetched through the
    handlers; the references that are not same-origin."""
    status, html = browser.request("GET", url)
    assert status == 200, html[:500]
    parser = _References()
    parser.feed(html.decode())
    assets: dict[str, int] = {}
    foreign = [ref for ref in parser.urls if not _same_origin(ref)]
    for ref in parser.urls:
        if _same_origin(ref) and ref not in assets:
            status, body = browser.request("GET", ref)
            assert status == 200, (ref, status)
            assets[ref] = len(body)
    return {
        "html_bytes": len(html),
        "assets": assets,
        "total_bytes": len(html) + sum(assets.values()),
        "foreign_urls": foreign,
        "html": html.decode(),
    }


def bench_web(renders: int = 200, entries: int = 50) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with in_process_aws():
        email, model_id = _publisher_with_history(entries)
        browser = Browser()
        browser.log_in(email)
        pages = {"account": "/ui/account", "model": f"/ui/models/{model_id}"}
        weights = {
            **{name: page_weight(browser, url) for name, url in pages.items()},
            "usage": page_weight(browser, "/ui/usage"),
            "docs": page_weight(browser, "/docs"),
        }
        # What the rendered pages must show for the numbers to mean anything.
        model_html = weights["model"]["html"]
        assert all(f">{name}</label>" in model_html for name in FEATURES), model_html[:2000]
        assert "Change price" in model_html
        assert "Archive" in model_html
        rows = weights["account"]["html"].count("<tr>") - 1  # the header's
        assert rows == min(entries, 20), rows  # a full page of entries
        assert "<svg" in weights["usage"]["html"]
        _, openapi = browser.request("GET", "/openapi.json")
        for name, url in pages.items():
            for key, value in _renders(browser, url, renders).items():
                results[f"web_{name}_render_{key}"] = value
    results["web_renders"] = renders
    results["web_ledger_entries"] = entries
    for name, weight in weights.items():
        results[f"web_{name}_page_kb"] = weight["total_bytes"] / 1000
        results[f"web_{name}_page_bytes"] = {"html": weight["html_bytes"], **weight["assets"]}
    ui = [weights[name] for name in ("account", "model", "usage")]
    results["web_foreign_urls"] = [url for weight in ui for url in weight["foreign_urls"]]
    results["web_foreign_url_count"] = len(results["web_foreign_urls"])
    results["web_docs_foreign_urls"] = weights["docs"]["foreign_urls"]
    results["web_docs_openapi_kb"] = len(openapi) / 1000
    return results


def _within(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def _info(value: float) -> bool:
    return True


Row = tuple[str, str, str, Callable[[float], bool], str]


def _render_rows(name: str, path: str) -> list[Row]:
    key = f"web_{name}_render"
    return [
        (f"{path} warm render (median)", f"{key}_median_ms", "ms", _within(20), "<= 20"),
        ("  same, p95", f"{key}_p95_ms", "ms", _info, "report"),
        ("  same, product's own (minus AWS)", f"{key}_own_median_ms", "ms", _within(20), "<= 20"),
        ("  same, own p95", f"{key}_own_p95_ms", "ms", _info, "report"),
        ("  of which Jinja2 render (median)", f"{key}_jinja_median_ms", "ms", _info, "report"),
        ("  AWS calls per render", f"{key}_aws_calls", "", _info, "report"),
    ]


def _weight_row(name: str, path: str) -> Row:
    limit = PAGE_BYTES_LIMIT / 1000
    return (f"{path} + assets", f"web_{name}_page_kb", "KB", _within(limit), f"<= {limit:g}")


# Rows of run.py's table: (name, results key, unit, target met?, target; "report": no target)
TARGETS: list[Row] = [
    *_render_rows("account", "/ui/account"),
    *_render_rows("model", "/ui/models/{id}"),
    _weight_row("account", "/ui/account"),
    _weight_row("model", "/ui/models/{id}"),
    _weight_row("usage", "/ui/usage"),
    ("UI pages' asset URLs not same-origin", "web_foreign_url_count", "", lambda v: v == 0, "== 0"),
    ("/docs + assets (Swagger UI, no target)", "web_docs_page_kb", "KB", _info, "report"),
]


def notes(results: dict[str, Any]) -> list[str]:
    """Lines under the table: what the page weights are made of."""
    lines = []
    for name in ("account", "model", "usage", "docs"):
        parts = ", ".join(f"{k} {v:,}" for k, v in results[f"web_{name}_page_bytes"].items())
        lines.append(f"(web {name} page bytes: {parts})")
    lines.append(
        f"(/docs also fetches /openapi.json, {results['web_docs_openapi_kb']:.1f} KB; "
        "Swagger UI's bundle is vendored, served from this origin, cached immutable)"
    )
    if results["web_foreign_urls"]:
        lines.append(f"(NOT same-origin: {', '.join(results['web_foreign_urls'])})")
    return lines


if __name__ == "__main__":
    from run import record_alone

    measured = bench_web()
    record_alone(measured, TARGETS, notes(measured))
