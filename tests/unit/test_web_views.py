"""The web UI's pure parts: charts, form parsing, the CSV reader, formatting, redirects and
the security headers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from starlette.requests import Request

from creditml.auth.schemas import RegisterRequest
from creditml.web.auth_pages import safe_next
from creditml.web.charts import Bar, bar_chart, nice_ceiling
from creditml.web.forms import Form, FormInvalid, whole_number
from creditml.web.model_pages import feature_names, rows_from_csv, rows_from_fields
from creditml.web.render import content_security_policy, credit_count, environment, number, utc
from creditml.web.session import CsrfRefused, check_csrf, is_https
from creditml.web.validation import validated

pytestmark = pytest.mark.unit


def _request(headers: dict[str, str], method: str = "POST") -> Request:
    return Request(
        {
            "type": "http",
            "method": method,
            "path": "/ui/account/top-ups",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "scheme": "https",
            "server": ("web.test", 443),
        }
    )


@pytest.mark.parametrize(
    ("value", "top"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (11, 20), (999, 1000), (1001, 2000)]
)
def test_axis_top_is_a_round_number_at_least_the_value(value: int, top: int) -> None:
    assert nice_ceiling(value) == top


def test_an_empty_chart_still_draws_and_says_so() -> None:
    svg = str(bar_chart("Spend per day", []))
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "No credits yet" in svg
    assert "<rect" not in svg


def test_chart_bars_are_proportional_and_labels_escaped() -> None:
    svg = str(bar_chart("Spend", [Bar("<b>m</b>", 50), Bar("other", 100)]))
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', svg)]
    assert heights[1] == pytest.approx(2 * heights[0])
    assert "<b>" not in svg
    assert "&lt;b&gt;m&lt;/b&gt;" in svg


def test_a_long_series_labels_at_most_ten_bars() -> None:
    bars = [Bar(f"d{i}", i) for i in range(60)]
    svg = str(bar_chart("Spend", bars))
    assert svg.count('<rect class="bar"') == 60
    assert svg.count('class="tick" x=') - 2 <= 10  # two axis ticks besides the labels


@pytest.mark.parametrize(("text", "number"), [("5", 5), ("1,000", 1000), (" 2 500 ", 2500)])
def test_whole_numbers_as_people_type_them(text: str, number: int) -> None:
    assert whole_number(text.strip(), "Amount", minimum=1) == number


@pytest.mark.parametrize("text", ["", "-1", "1.5", "1e3", "ten", "0"])
def test_not_a_whole_number_names_the_field(text: str) -> None:
    with pytest.raises(FormInvalid, match=r"^Amount"):
        whole_number(text, "Amount", minimum=1)


def test_csv_rows_follow_a_header_in_any_order() -> None:
    names = ["a", "b", "c"]
    assert rows_from_csv("c,a,b\n3,1,2\n6,4,5\n", names) == [[1, 2, 3], [4, 5, 6]]
    assert rows_from_csv("1,2,3\n\n4,5,6", names) == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "paste at least one row"),
        ("1,2\n", "row 1 has 2 values; the model takes 3"),
        ("1,2,x\n", "Row 1, c: enter a number"),
        ("1,2,nan\n", "enter a finite number"),
        ("a,b,c\n", "paste at least one row"),
    ],
)
def test_bad_csv_is_explained(text: str, message: str) -> None:
    with pytest.raises(FormInvalid, match=re.escape(message)):
        rows_from_csv(text, ["a", "b", "c"])


def test_one_row_from_the_feature_fields() -> None:
    form = Form({"feature.a": "1.5", "feature.b": " -2 "})
    assert rows_from_fields(form, ["a", "b"]) == [[1.5, -2.0]]
    with pytest.raises(FormInvalid, match=r"^b: enter a number"):
        rows_from_fields(Form({"feature.a": "1"}), ["a", "b"])


def test_feature_fields_are_named_or_numbered() -> None:
    from creditml.models.schema import ModelSchema

    named = ModelSchema(
        n_features=2,
        feature_names=["x", "y"],
        task="regression",
        estimator="E",
        probabilities=False,
    )
    numbered = named.model_copy(update={"feature_names": None, "n_features": 3})
    assert feature_names(named) == ["x", "y"]
    assert feature_names(numbered) == ["x0", "x1", "x2"]
    assert feature_names(None) == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/ui/models"),
        ("/ui/account", "/ui/account"),
        ("//evil.example/ui/", "/ui/models"),
        ("https://evil.example/", "/ui/models"),
        ("/docs", "/ui/models"),
    ],
)
def test_after_log_in_only_pages_of_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_numbers_and_times_as_shown() -> None:
    assert number(1234567) == "1,234,567"
    assert number(None) == "—"
    assert credit_count(1) == "1 credit"
    assert credit_count(1000) == "1,000 credits"
    moment = datetime(2026, 11, 30, 14, 5, tzinfo=timezone(timedelta(hours=2)))
    assert utc(moment) == "2026-11-30 12:05 UTC"
    assert utc(datetime(2026, 1, 2, 3, 4)) == "2026-01-02 03:04 UTC"
    assert utc(date(2026, 1, 2)) == "2026-01-02"
    assert utc(datetime(2026, 1, 2, tzinfo=UTC)).endswith("UTC")


def test_every_template_escapes_user_text() -> None:
    env = environment()
    hostile = "<script>alert(1)</script>"
    rendered = env.from_string("<p>{{ name }}</p>").render(name=hostile)
    assert hostile not in rendered
    for name in env.list_templates():
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        assert "|safe" not in source.replace(" ", ""), name
        assert "<script>" not in source, name  # the CSP allows no inline script
        assert " style=" not in source, name  # nor inline style


def test_policy_allows_no_inline_script_and_names_extra_origins() -> None:
    policy = content_security_policy(["https://uploads.example"])
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "connect-src 'self' https://uploads.example" in policy


def test_https_unless_the_gateway_says_http() -> None:
    assert is_https(_request({"x-forwarded-proto": "https"}))
    assert is_https(_request({}))
    assert not is_https(_request({"x-forwarded-proto": "http"}))


def test_csrf_needs_the_cookie_the_field_and_the_origin() -> None:
    token = "t" * 43
    good = {"cookie": f"creditml_csrf={token}", "host": "web.test"}
    check_csrf(_request(good), token)
    check_csrf(_request({**good, "origin": "https://web.test"}), token)
    refusals = [
        (good, None),
        (good, "other"),
        ({"host": "web.test"}, token),
        ({**good, "origin": "https://evil.example"}, token),
        ({**good, "origin": "http://web.test"}, token),  # a downgrade is another origin
    ]
    for headers, submitted in refusals:
        with pytest.raises(CsrfRefused):
            check_csrf(_request(headers), submitted)


def test_forms_are_validated_by_the_api_models() -> None:
    with pytest.raises(FormInvalid, match=r"^Password"):
        validated(RegisterRequest, {"email": "a@example.com", "password": "short"})
    with pytest.raises(FormInvalid, match=r"^Email"):
        validated(RegisterRequest, {"email": "not an email", "password": "long enough pw"})


@pytest.mark.parametrize("text", ["²", "1" * 19, "٣"])
def test_digits_that_are_not_an_amount(text: str) -> None:
    with pytest.raises(FormInvalid, match=r"^Amount must be a whole number"):
        whole_number(text, "Amount", minimum=1)


def test_a_csv_field_too_long_for_the_reader_is_explained() -> None:
    with pytest.raises(FormInvalid, match=r"not readable as CSV"):
        rows_from_csv('"' + "1" * 200_000 + '"', ["a"])
