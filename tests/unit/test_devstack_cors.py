"""S3's CORS rules as the local stack applies them (creditml.devstack.cors), and the
template's CorsConfiguration for the uploads bucket as the local stack reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from creditml.devstack.cors import CorsRule, first_allowing, local_origins, template_rules
from creditml.devstack.template import Resolver, Template, TemplateError
from tests.conftest import ROOT

PAGE = "http://127.0.0.1:3000"
UPLOADS = CorsRule(allowed_methods=("POST",), allowed_origins=(PAGE,), max_age_seconds=3600)


@pytest.mark.parametrize(
    ("origin", "method", "headers", "allowed"),
    [
        (PAGE, "POST", (), True),
        ("https://evil.example", "POST", (), False),
        (PAGE + "0", "POST", (), False),  # a prefix of the origin is not the origin
        ("http://127.0.0.1:300", "POST", (), False),
        (PAGE, "PUT", (), False),
        (PAGE, "POST", ("x-custom",), False),  # no header is allowed
    ],
)
def test_a_rule_allows_its_origin_method_and_headers_only(
    origin: str, method: str, headers: tuple[str, ...], allowed: bool
) -> None:
    assert UPLOADS.allows(origin, method, headers) is allowed


def test_wildcards_stand_for_any_characters_and_headers_ignore_case() -> None:
    rule = CorsRule(
        allowed_methods=("GET", "POST"),
        allowed_origins=("https://*.example.com",),
        allowed_headers=("x-amz-*", "Content-Type"),
    )
    assert rule.allows("https://app.example.com", "GET", ("X-Amz-Date", "content-type"))
    assert not rule.allows("https://example.com", "GET")
    assert not rule.allows("https://app.example.com.evil.example", "GET")
    assert not rule.allows("https://app.example.com", "GET", ("authorization",))


def test_the_first_allowing_rule_answers_with_its_headers() -> None:
    anyone = CorsRule(allowed_methods=("GET",), allowed_origins=("*",))
    rules = (UPLOADS, anyone)
    assert first_allowing(rules, PAGE, "POST") is UPLOADS
    assert first_allowing(rules, PAGE, "GET") is anyone
    assert first_allowing(rules, PAGE, "DELETE") is None
    assert UPLOADS.headers(PAGE, ["x-requested"]) == {
        "Access-Control-Allow-Origin": PAGE,
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "x-requested",
        "Access-Control-Max-Age": "3600",
        "Access-Control-Allow-Credentials": "true",
    }
    # A rule for every origin answers `*`, without credentials, as S3 does.
    assert anyone.headers(PAGE) == {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET",
    }


def test_the_local_pages_origins_are_the_gateways_on_loopback() -> None:
    assert local_origins("127.0.0.1", 3000) == ["http://127.0.0.1:3000", "http://localhost:3000"]
    assert local_origins("0.0.0.0", 8080) == ["http://127.0.0.1:8080", "http://localhost:8080"]  # noqa: S104
    assert local_origins("192.0.2.7", 1) == [
        "http://127.0.0.1:1",
        "http://localhost:1",
        "http://192.0.2.7:1",
    ]


def _uploads_rules(template: Template, api_origins: list[str]) -> list[dict[str, object]]:
    pseudo = {"AWS::Region": "eu-west-1", "AWS::URLSuffix": "amazonaws.com"}
    resolver = Resolver(template, {"HttpApi": "abc123"}, {}, pseudo)
    config = template.resources["UploadsBucket"]["Properties"]["CorsConfiguration"]
    deployed = "https://abc123.execute-api.eu-west-1.amazonaws.com"
    return template_rules(resolver.resolve(config), {deployed: api_origins})


def test_the_uploads_bucket_allows_the_apis_origin_to_post() -> None:
    # Given the template as deployed (no WebOrigin) and the local gateway's origins
    rules = _uploads_rules(Template(ROOT / "template.yaml"), [PAGE, "http://localhost:3000"])
    # Then the API's origin stands for them, and only POST is allowed
    assert rules == [
        {
            "ID": "WebUploads",
            "AllowedMethods": ["POST"],
            "AllowedOrigins": [PAGE, "http://localhost:3000"],
            "MaxAgeSeconds": 3600,
        }
    ]
    # Without a local gateway (moto in-process) the rule has no origin left: no CORS at all.
    assert _uploads_rules(Template(ROOT / "template.yaml"), []) == []


def test_a_web_origin_parameter_adds_its_origin(tmp_path: Path) -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    text = text.replace(
        '  WebOrigin:\n    Type: String\n    Default: ""',
        '  WebOrigin:\n    Type: String\n    Default: "https://credit.example.com"',
    )
    (tmp_path / "template.yaml").write_text(text, encoding="utf-8")
    rules = _uploads_rules(Template(tmp_path / "template.yaml"), [PAGE])
    assert rules[0]["AllowedOrigins"] == [PAGE, "https://credit.example.com"]


def test_conditions_judge_the_parameters_and_no_value_drops_the_item(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        """
Parameters:
  Given: {Type: String, Default: "x"}
  Empty: {Type: String, Default: ""}
Conditions:
  HasGiven: !Not [!Equals [!Ref Given, ""]]
  HasEmpty: !Not [!Equals [!Ref Empty, ""]]
  Both: !And [!Condition HasGiven, !Condition HasEmpty]
  Either: !Or [!Condition HasGiven, !Condition HasEmpty]
""",
        encoding="utf-8",
    )
    resolver = Resolver(Template(path), {}, {}, {})
    value = {
        "Items": [
            "a",
            {"Fn::If": ["HasGiven", {"Ref": "Given"}, {"Ref": "AWS::NoValue"}]},
            {"Fn::If": ["HasEmpty", {"Ref": "Empty"}, {"Ref": "AWS::NoValue"}]},
        ],
        "Both": {"Fn::If": ["Both", "yes", "no"]},
        "Either": {"Fn::If": ["Either", "yes", "no"]},
        "Gone": {"Fn::If": ["HasEmpty", "kept", {"Ref": "AWS::NoValue"}]},
    }
    assert resolver.resolve(value) == {"Items": ["a", "x"], "Both": "no", "Either": "yes"}
    with pytest.raises(TemplateError, match="Missing"):
        resolver.resolve({"Fn::If": ["Missing", "a", "b"]})
