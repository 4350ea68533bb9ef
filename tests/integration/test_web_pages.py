"""The web function's pages through its real handler under moto (tests/integration/web.py):
sessions and their cookies, CSRF, escaping, the money forms, who may see what. The same
flows run in a real browser in tests/browser/."""

from __future__ import annotations

import uuid

import boto3
import pytest

from creditml.auth.roles import Role
from creditml.composition.core import ledger_repository, user_directory
from creditml.devstack.template import Template
from creditml.settings import get_settings
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import grant, publish
from tests.integration.web import Browser, in_process_browser

PASSWORD = "correct horse battery"


@pytest.fixture
def browser(api: Api, template: Template, monkeypatch: pytest.MonkeyPatch) -> Browser:
    return in_process_browser(template, monkeypatch)


def _email(prefix: str = "web") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def _registered(browser: Browser, email: str | None = None) -> str:
    email = email or _email()
    form = browser.get("/ui/register")
    answer = browser.post(
        "/ui/register", {"csrf_token": form.csrf(), "email": email, "password": PASSWORD}
    )
    assert answer.status == 303, answer.text[:400]
    return email


def _balance(browser: Browser) -> int:
    page = browser.get("/ui/account")
    marker = 'data-testid="balance">'
    start = page.text.index(marker) + len(marker)
    return int(page.text[start : page.text.index("<", start)])


def _cookie_lines(browser: Browser, name: str) -> list[str]:
    return [line for line in browser.set_cookies if line.startswith(f"{name}=")]


def test_logged_out_home_sets_only_the_csrf_cookie(browser: Browser) -> None:
    page = browser.get("/")
    assert page.status == 200
    assert 'href="/ui/register"' in page.text
    assert "Create account" in page.text
    assert 'href="/ui/login"' in page.text
    assert [line.split("=")[0] for line in browser.set_cookies] == ["creditml_csrf"]
    (line,) = browser.set_cookies
    assert "HttpOnly" in line
    assert "SameSite=strict" in line
    assert "Secure" not in line  # plain HTTP here (x-forwarded-proto: http)


def test_cookies_are_secure_over_https(browser: Browser) -> None:
    browser.forwarded_proto = "https"
    _registered(browser)
    for name in ("creditml_csrf", "creditml_session"):
        (line,) = _cookie_lines(browser, name)
        assert "Secure" in line
        assert "HttpOnly" in line
        assert "SameSite=strict" in line


def test_register_logs_in_with_an_httponly_strict_session(browser: Browser) -> None:
    email = _registered(browser)
    (line,) = _cookie_lines(browser, "creditml_session")
    assert "HttpOnly" in line
    assert "SameSite=strict" in line
    assert "Path=/" in line
    account = browser.get("/ui/account")
    assert account.status == 200
    assert email in account.text
    assert "Log out" in account.text
    assert _balance(browser) == 0
    assert "No entries yet" in account.text


def test_failed_log_in_says_so_and_starts_no_session(browser: Browser) -> None:
    email = _registered(Browser(browser.template))
    form = browser.get("/ui/login")
    answer = browser.post(
        "/ui/login", {"csrf_token": form.csrf(), "email": email, "password": "wrong password"}
    )
    assert answer.status == 401
    assert "Invalid email or password" in answer.text
    assert "creditml_session" not in browser.cookies
    unknown = browser.post(
        "/ui/login", {"csrf_token": form.csrf(), "email": _email(), "password": PASSWORD}
    )
    assert unknown.status == 401
    assert "Invalid email or password" in unknown.text


def test_pages_that_need_a_session_send_to_log_in(browser: Browser) -> None:
    for path in ("/ui/account", "/ui/models", "/ui/history", "/ui/usage", "/ui/publish"):
        answer = browser.get(path)
        assert answer.status == 303
        assert answer.location == f"/ui/login?next={path.replace('/', '%2F')}" or (
            answer.location == f"/ui/login?next={path}"
        )


def test_log_in_never_redirects_off_site(browser: Browser) -> None:
    email = _registered(Browser(browser.template))
    form = browser.get("/ui/login")
    answer = browser.post(
        "/ui/login",
        {
            "csrf_token": form.csrf(),
            "email": email,
            "password": PASSWORD,
            "next": "//evil.example/",
        },
    )
    assert answer.status == 303
    assert answer.location == "/ui/models"


def test_top_up_form_charges_once_per_form(browser: Browser) -> None:
    _registered(browser)
    account = browser.get("/ui/account")
    form = {"csrf_token": account.csrf(), "idempotency_key": account.key(), "amount": "40"}
    first = browser.post("/ui/account/top-ups", form)
    second = browser.post("/ui/account/top-ups", form)  # a double click
    assert first.status == second.status == 303
    assert _balance(browser) == 40
    again = browser.get("/ui/account")
    assert again.key() != account.key()  # the next form is another operation
    browser.post("/ui/account/top-ups", {**form, "idempotency_key": again.key()})
    assert _balance(browser) == 80


@pytest.mark.parametrize("amount", ["0", "-5", "1.5", "lots", "", "100000000000"])
def test_a_bad_amount_is_explained_and_changes_nothing(browser: Browser, amount: str) -> None:
    _registered(browser)
    account = browser.get("/ui/account")
    form = {"csrf_token": account.csrf(), "idempotency_key": account.key(), "amount": amount}
    answer = browser.post("/ui/account/top-ups", form)
    assert answer.status == 422
    assert 'role="alert"' in answer.text
    assert "Amount" in answer.text
    assert _balance(browser) == 0


def test_forged_forms_are_refused_and_change_nothing(browser: Browser) -> None:
    _registered(browser)
    account = browser.get("/ui/account")
    key = account.key()
    for token in ("", "forged", account.csrf() + "x"):
        refused = browser.post(
            "/ui/account/top-ups", {"csrf_token": token, "idempotency_key": key, "amount": "5"}
        )
        assert refused.status == 403
        assert "expired or came from another site" in refused.text
    cross_site = browser.post(
        "/ui/account/top-ups",
        {"csrf_token": account.csrf(), "idempotency_key": key, "amount": "5"},
        origin="https://evil.example",
    )
    assert cross_site.status == 403
    assert _balance(browser) == 0


def test_logout_ends_the_session_on_the_server(browser: Browser) -> None:
    _registered(browser)
    stolen = browser.cookies["creditml_session"]
    page = browser.get("/ui/account")
    answer = browser.post("/ui/logout", {"csrf_token": page.csrf()})
    assert answer.status == 303
    assert "creditml_session" not in browser.cookies
    replay = Browser(browser.template, cookies={"creditml_session": stolen})
    assert replay.get("/ui/account").status == 303  # to log in: the session is over


def test_user_text_is_escaped_everywhere(api: Api, browser: Browser) -> None:
    publisher = register_and_login(api, _email("pub"), PASSWORD, role=Role.PUBLISHER)
    model_id = publish(api, publisher["access"])
    from creditml.composition.models import model_repository

    hostile = "<script>alert(1)</script>"
    model_repository().update(model_id, None, f"{hostile} & description")
    _rename(model_id, hostile)
    _registered(browser)
    for path in ("/ui/models", f"/ui/models/{model_id}"):
        page = browser.get(path)
        assert page.status == 200
        assert hostile not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def _rename(model_id: str, name: str) -> None:
    import boto3

    from creditml.settings import get_settings
    from creditml.storage.models import MODEL_SK

    boto3.resource("dynamodb").Table(get_settings().models_table).update_item(
        Key={"model_id": model_id, "sk": MODEL_SK},
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues={":n": name},
    )


def test_predict_form_shows_the_receipt_and_history_names_the_model(
    api: Api, browser: Browser
) -> None:
    publisher = register_and_login(api, _email("pub"), PASSWORD, role=Role.PUBLISHER)
    model_id = publish(api, publisher["access"], price=3)
    email = _registered(browser)
    user_id = _user_id(email)
    page = browser.get(f"/ui/models/{model_id}")
    assert [f'<label for="feature-{i}">x{i}</label>' in page.text for i in range(4)] == [True] * 4
    form = {"csrf_token": page.csrf(), "idempotency_key": page.key(), "mode": "row"}
    form.update({f"feature.x{i}": str(0.5 * i) for i in range(4)})
    poor = browser.post(f"/ui/models/{model_id}/predictions", form)
    assert poor.status == 402
    assert "Top up" in poor.text
    assert "Nothing was charged" in poor.text
    grant(api, user_id, 10)
    paid = browser.post(f"/ui/models/{model_id}/predictions", form)
    assert paid.status == 200
    assert 'data-testid="receipt"' in paid.text
    assert "<dt>Cost</dt><dd>3 credits</dd>" in paid.text
    replay = browser.post(f"/ui/models/{model_id}/predictions", form)  # reload of the POST
    assert replay.status == 200
    assert _balance(browser) == 7
    history = browser.get("/ui/history")
    assert history.text.count("<td>m</td>") == 1  # the model's name, once
    entries = ledger_repository().entries(user_id, 10, None)
    assert sum(1 for entry in entries if entry.amount < 0) == 1


def test_csv_rows_with_a_header_in_any_order(api: Api, browser: Browser) -> None:
    publisher = register_and_login(api, _email("pub"), PASSWORD, role=Role.PUBLISHER)
    model_id = publish(api, publisher["access"], price=1)
    email = _registered(browser)
    grant(api, _user_id(email), 10)
    page = browser.get(f"/ui/models/{model_id}")
    csv_text = "x3,x2,x1,x0\n0,0,0,1\n0,0,0,-1\n"
    form = {
        "csrf_token": page.csrf(),
        "idempotency_key": page.key(),
        "mode": "csv",
        "csv": csv_text,
    }
    answer = browser.post(f"/ui/models/{model_id}/predictions", form)
    assert answer.status == 200, answer.text[-800:]
    assert "<dt>Cost</dt><dd>2 credits</dd>" in answer.text
    bad = {**form, "idempotency_key": str(uuid.uuid4()), "csv": "1,2,3\n"}
    refused = browser.post(f"/ui/models/{model_id}/predictions", bad)
    assert refused.status == 422
    assert "row 1 has 3 values; the model takes 4" in refused.text
    assert _balance(browser) == 8


def _user_id(email: str) -> str:
    users, _ = user_directory().page(100, None)
    return next(user.id for user in users if user.email == email)


def test_who_may_see_what(api: Api, browser: Browser) -> None:
    _registered(browser)
    for path, status in (
        ("/ui/publish", 403),
        ("/ui/admin/users", 403),
        ("/ui/admin/reports", 403),
        ("/ui/models/no-such-model", 404),
        ("/ui/history/no-such-prediction", 404),
        ("/ui/no-such-page", 404),
        ("/ui/usage?days=many", 422),
    ):
        page = browser.get(path)
        assert page.status == status, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert "<h1>" in page.text, path
        assert "Traceback" not in page.text, path
    nav = browser.get("/ui/account").text
    assert ">Publish<" not in nav
    assert ">Admin<" not in nav
    for label in ("Models", "Account", "History", "Usage"):
        assert f">{label}</a>" in nav


def test_every_page_has_a_strict_content_security_policy(browser: Browser) -> None:
    _registered(browser)
    for path in ("/", "/ui/login", "/ui/account", "/ui/models", "/ui/history", "/ui/usage"):
        policy = browser.get(path).headers["content-security-policy"]
        script = next(part for part in policy.split(";") if "script-src" in part)
        assert script.strip() == "script-src 'self'"
        assert "frame-ancestors 'none'" in policy


def test_admin_changes_a_role_and_grants_credits(api: Api, browser: Browser) -> None:
    admin_email = _email("admin")
    register_and_login(api, admin_email, PASSWORD, role=Role.ADMIN)
    target_email = _registered(Browser(browser.template))
    target = _user_id(target_email)
    browser.log_in(admin_email, PASSWORD)
    users = browser.get("/ui/admin/users")
    assert users.status == 200
    assert target_email in users.text
    changed = browser.post(
        f"/ui/admin/users/{target}/role", {"csrf_token": users.csrf(), "role": "publisher"}
    )
    assert changed.status == 303
    assert user_directory().stored_role(target) is Role.PUBLISHER
    granted = browser.post(
        f"/ui/admin/users/{target}/grants",
        {"csrf_token": users.csrf(), "idempotency_key": users.key(), "amount": "25"},
    )
    assert granted.status == 303
    assert ledger_repository().balance(target) == 25
    refused = browser.post(
        f"/ui/admin/users/{target}/role", {"csrf_token": users.csrf(), "role": "emperor"}
    )
    assert refused.status == 422
    assert user_directory().stored_role(target) is Role.PUBLISHER


def test_usage_page_draws_charts_even_when_empty(browser: Browser) -> None:
    _registered(browser)
    page = browser.get("/ui/usage")
    assert page.status == 200
    assert page.text.count("<svg") == 2
    assert "No credits yet" in page.text
    assert "Nothing yet" in page.text


def test_a_regressor_receipt_and_the_next_prediction_from_the_same_page(
    api: Api, browser: Browser
) -> None:
    from sklearn.linear_model import LinearRegression

    from tests.integration.publishing import LABELS, ROWS, model_file

    publisher = register_and_login(api, _email("pub"), PASSWORD, role=Role.PUBLISHER)
    regressor = LinearRegression().fit(ROWS, LABELS.astype(float))
    model_id = publish(api, publisher["access"], data=model_file(regressor), price=3)
    email = _registered(browser)
    grant(api, _user_id(email), 10)
    page = browser.get(f"/ui/models/{model_id}")
    form = {"csrf_token": page.csrf(), "idempotency_key": page.key(), "mode": "row"}
    form.update({f"feature.x{i}": "0.5" for i in range(4)})
    paid = browser.post(f"/ui/models/{model_id}/predictions", form)
    assert paid.status == 200, paid.text[-600:]
    assert "Probabilities" not in paid.text  # a regressor has none
    expected = regressor.predict([[0.5] * 4])[0]
    assert f"{expected}" in paid.text
    # The receipt's page offers a new operation: another row is charged, not refused.
    second = {**form, "idempotency_key": paid.key(), "feature.x0": "1.5"}
    assert paid.key() != form["idempotency_key"]
    again = browser.post(f"/ui/models/{model_id}/predictions", second)
    assert again.status == 200, again.text[-600:]
    assert _balance(browser) == 4


def test_an_ended_session_stays_ended_after_its_revocation_marker_expires(
    browser: Browser,
) -> None:
    import boto3

    from creditml.settings import get_settings

    _registered(browser)
    stolen = browser.cookies["creditml_session"]
    page = browser.get("/ui/account")
    browser.post("/ui/logout", {"csrf_token": page.csrf()})
    table = boto3.resource("dynamodb").Table(get_settings().sessions_table)
    markers = [
        item["pk"] for item in table.scan()["Items"] if str(item["pk"]).startswith("REVOKED#")
    ]
    assert markers
    for key in markers:  # what their TTL does 16 minutes after a logout
        table.delete_item(Key={"pk": key})
    replay = Browser(browser.template, cookies={"creditml_session": stolen})
    assert replay.get("/ui/account").status == 303


def test_a_spent_refresh_token_is_no_session(api: Api, browser: Browser) -> None:
    from creditml.composition.auth import auth_service

    email = _email()
    account = register_and_login(api, email, PASSWORD)
    auth_service().refresh(account["refresh"])  # an API client rotated it
    replay = Browser(browser.template, cookies={"creditml_session": account["refresh"]})
    assert replay.get("/ui/account").status == 303
    fresh = register_and_login(api, _email(), PASSWORD)
    valid = Browser(browser.template, cookies={"creditml_session": fresh["refresh"]})
    assert valid.get("/ui/account").status == 200


def test_logging_in_again_ends_the_previous_session(browser: Browser) -> None:
    email = _registered(browser)
    first = browser.cookies["creditml_session"]
    page = browser.get("/ui/account")  # the log-in page itself sends a logged-in person on
    again = browser.post(
        "/ui/login", {"csrf_token": page.csrf(), "email": email, "password": PASSWORD}
    )
    assert again.status == 303
    assert browser.cookies["creditml_session"] != first
    replay = Browser(browser.template, cookies={"creditml_session": first})
    assert replay.get("/ui/account").status == 303


def test_web_requests_count_against_the_request_limit(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creditml.composition import forget_components

    _registered(browser)
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "3")
    forget_components()
    statuses = [browser.get("/ui/account").status for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429, 429]
    assert "<h1>" in browser.get("/ui/models").text


def test_the_owner_opens_a_version_and_edits_the_description(api: Api, browser: Browser) -> None:
    import json

    from tests.integration.publishing import model_file, upload_and_register

    email = _email("pub")
    owner = register_and_login(api, email, PASSWORD, role=Role.PUBLISHER)
    model_id = publish(api, owner["access"])
    browser.log_in(email, PASSWORD)
    page = browser.get(f"/ui/models/{model_id}")
    assert "Upload version" in page.text
    opened = browser.post(f"/ui/models/{model_id}/versions", {"csrf_token": page.csrf()})
    assert opened.status == 201
    ticket = json.loads(opened.text)
    assert ticket["page"] == f"/ui/models/{model_id}"
    pending = browser.get(f"/ui/models/{model_id}")
    assert "Version 2 is waiting" in pending.text
    assert 'data-poll="3000"' in pending.text
    result = upload_and_register(api, model_id, 2, model_file(), ticket["upload"]["fields"])
    assert result["registrations"][0]["outcome"] == "ready"
    ready = browser.get(f"/ui/models/{model_id}")
    assert "<dt>Version serving</dt><dd>2</dd>" in ready.text
    assert "Version 2 is waiting" not in ready.text
    changed = browser.post(
        f"/ui/models/{model_id}/description",
        {"csrf_token": page.csrf(), "description": "<b>bold</b> claims"},
    )
    assert changed.status == 303
    shown = browser.get(f"/ui/models/{model_id}").text
    assert "&lt;b&gt;bold&lt;/b&gt; claims" in shown
    assert "<b>bold</b>" not in shown
    stranger = Browser(browser.template)
    _registered(stranger)
    refused = stranger.post(
        f"/ui/models/{model_id}/versions", {"csrf_token": stranger.get("/ui/account").csrf()}
    )
    assert refused.status == 403
    assert json.loads(refused.text)["code"] == "forbidden"


def test_a_lower_bound_balance_is_shown_as_at_least(api: Api, browser: Browser) -> None:
    # Given an entry written while other operations on the account overlapped it: its
    # balance_after is a lower bound (as a bounded write stores it)
    email = _registered(browser)
    user_id = _user_id(email)
    grant(api, user_id, 50)
    (entry,) = ledger_repository().entries(user_id, 10, None)
    table = boto3.resource("dynamodb").Table(get_settings().ledger_table)
    table.update_item(
        Key={"account_id": user_id, "sk": f"ENTRY#{entry.id}"},
        UpdateExpression="SET balance_exact = :no, balance_after = :low",
        ExpressionAttributeValues={":no": False, ":low": 42},
    )
    # the account page says "at least", and the exact balance stays exact
    page = browser.get("/ui/account")
    assert "≥</abbr> 42</td>" in page.text
    assert _balance(browser) == 50


def test_the_model_page_says_what_serves_each_version(api: Api, browser: Browser) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from tests.integration.publishing import LABELS, ROWS, model_file, upload_and_register

    email = _email("pub")
    owner = register_and_login(api, email, PASSWORD, role=Role.PUBLISHER)
    model_id = publish(api, owner["access"])  # a forest: its exact graph serves it
    browser.log_in(email, PASSWORD)
    assert "ONNX Runtime (exact graph)" in browser.get(f"/ui/models/{model_id}").text
    # Version 2 has no exact converter: scikit-learn serves it, and the page says why.
    page = browser.get(f"/ui/models/{model_id}")
    opened = browser.post(f"/ui/models/{model_id}/versions", {"csrf_token": page.csrf()})
    assert opened.status == 201
    pipeline = make_pipeline(StandardScaler(), SVC()).fit(ROWS, LABELS)
    upload_and_register(api, model_id, 2, model_file(pipeline))
    text = browser.get(f"/ui/models/{model_id}").text
    assert "scikit-learn: no exact ONNX converter for Pipeline[StandardScaler, SVC]" in text
