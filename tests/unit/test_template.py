"""The local stack reads template.yaml as CloudFormation would."""

from __future__ import annotations

from pathlib import Path

import pytest

from creditml.devstack.template import Resolver, Route, Template, TemplateError

SNIPPET = """
Parameters:
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Environment:
      Variables:
        TABLE: !Ref Things
        ARN: !GetAtt Things.Arn
        NAME: !Sub "creditml-${Stage}-${AWS::Region}"
        JOINED: !Join ["-", [a, !Ref Stage]]
Resources:
  Things:
    Type: AWS::DynamoDB::Table
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/fn/
      Handler: app.handler
      Environment: {Variables: {EXTRA: "1"}}
      Events:
        Get: {Type: HttpApi, Properties: {Path: "/things/{id}", Method: get}}
        Mine: {Type: HttpApi, Properties: {Path: /things/mine, Method: GET}}
        All: {Type: HttpApi, Properties: {Path: "/{proxy+}", Method: ANY}}
        Tick: {Type: Schedule, Properties: {Schedule: rate(1 day)}}
"""


@pytest.fixture
def template(tmp_path: Path) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(SNIPPET, encoding="utf-8")
    return Template(path)


def _resolver(template: Template) -> Resolver:
    return Resolver(
        template,
        physical={"Things": "local-Things"},
        attributes={"Things": {"Arn": "arn:aws:dynamodb:::table/local-Things"}},
        pseudo={"AWS::Region": "us-east-1"},
    )


def test_functions_take_globals_and_http_routes_only(template: Template) -> None:
    spec = template.functions["Fn"]
    assert spec.module_path == template.root / "functions" / "fn" / "app.py"
    assert spec.handler_name == "handler"
    assert set(spec.environment) == {"TABLE", "ARN", "NAME", "JOINED", "EXTRA"}
    assert {route.key for route in spec.routes} == {
        "GET /things/{id}",
        "GET /things/mine",
        "ANY /{proxy+}",
    }


def test_intrinsics_resolve(template: Template) -> None:
    env = _resolver(template).resolve(dict(template.functions["Fn"].environment))
    assert env == {
        "TABLE": "local-Things",
        "ARN": "arn:aws:dynamodb:::table/local-Things",
        "NAME": "creditml-dev-us-east-1",
        "JOINED": "a-dev",
        "EXTRA": "1",
    }


def test_unknown_references_are_errors_not_blanks(template: Template) -> None:
    with pytest.raises(TemplateError, match="Missing"):
        _resolver(template).resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match="Fn::GetAZs"):
        _resolver(template).resolve({"Fn::GetAZs": ""})


@pytest.mark.parametrize(
    ("method", "path", "expected", "params"),
    [
        ("GET", "/things/mine", "GET /things/mine", {}),
        ("GET", "/things/42", "GET /things/{id}", {"id": "42"}),
        ("POST", "/things/42", "ANY /{proxy+}", {"proxy": "things/42"}),
        ("GET", "/things/42/more", "ANY /{proxy+}", {"proxy": "things/42/more"}),
    ],
)
def test_routes_are_picked_like_api_gateway(
    template: Template, method: str, path: str, expected: str, params: dict[str, str]
) -> None:
    found = template.route_for(method, path)
    assert found is not None
    route, parameters = found
    assert (route.key, parameters) == (expected, params)


def test_parameters_do_not_cross_slashes() -> None:
    assert Route("GET", "/users/{id}", "Fn").match("GET", "/users/a/b") is None


def test_duplicate_routes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        SNIPPET + "  Fn2:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      CodeUri: x/\n      Events:\n        Again: {Type: HttpApi, Properties: "
        "{Path: /things/mine, Method: GET}}\n",
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match="twice"):
        _ = Template(path).routes
