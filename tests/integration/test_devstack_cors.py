"""S3's CORS on the embedded AWS (creditml.devstack.cors): the template's buckets, provisioned
as the local stack does with its gateway's origins, answer a browser's preflight and
presigned POST from each bucket's own rules, over real HTTP, as S3 does (moto alone grants
every origin)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest

from creditml.devstack.aws import EmbeddedAws, Provisioned, provision
from creditml.devstack.template import Template
from tests.conftest import ROOT
from tests.integration.conftest import embedded_aws

PAGE = "http://127.0.0.1:3999"
ALSO_PAGE = "http://localhost:3999"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedAws]:
    with embedded_aws() as aws:
        yield aws


@pytest.fixture(scope="module")
def provisioned(embedded: EmbeddedAws) -> Provisioned:
    """template.yaml's resources, with a gateway at PAGE (as `creditml dev` provisions)."""
    template = Template(ROOT / "template.yaml")
    return provision(template, f"cors-{uuid.uuid4().hex[:8]}", api_origins=[PAGE, ALSO_PAGE])


@pytest.fixture
def upload(provisioned: Provisioned) -> dict[str, Any]:
    """A presigned POST for a fresh key of the uploads bucket (as POST /models gives)."""
    post: dict[str, Any] = boto3.client("s3").generate_presigned_post(
        provisioned.physical["UploadsBucket"], f"models/{uuid.uuid4().hex}/v1", ExpiresIn=300
    )
    return post


def _preflight(url: str, origin: str | None, method: str | None = "POST", **headers: str) -> Any:
    sent = {"Origin": origin, "Access-Control-Request-Method": method, **headers}
    return httpx.options(url, headers={k: v for k, v in sent.items() if v is not None})


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize("origin", [PAGE, ALSO_PAGE])
def test_a_preflight_from_the_page_is_allowed(upload: dict[str, Any], origin: str) -> None:
    answer = _preflight(upload["url"], origin)
    assert answer.status_code == 200, answer.text
    assert _cors_headers(answer) == {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "POST",
        "access-control-max-age": "3600",
        "access-control-allow-credentials": "true",
    }
    assert answer.headers["vary"].startswith("Origin")


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        (EVIL, "POST", {}),
        ("http://127.0.0.1:4000", "POST", {}),  # another local port: another origin
        (PAGE, "PUT", {}),
        (PAGE, "POST", {"Access-Control-Request-Headers": "x-custom"}),
    ],
)
def test_a_preflight_the_rules_do_not_allow_is_refused(
    upload: dict[str, Any], origin: str, method: str, headers: dict[str, str]
) -> None:
    answer = _preflight(upload["url"], origin, method, **headers)
    assert answer.status_code == 403
    assert "<Code>AccessForbidden</Code>" in answer.text
    assert _cors_headers(answer) == {}


def test_a_preflight_without_origin_or_method_is_a_bad_request(upload: dict[str, Any]) -> None:
    assert _preflight(upload["url"], None).status_code == 400
    no_method = _preflight(upload["url"], PAGE, None)
    assert no_method.status_code == 400
    assert "Invalid Access-Control-Request-Method: null" in no_method.text


def test_the_presigned_post_answers_the_page_and_no_other_origin(
    upload: dict[str, Any], provisioned: Provisioned
) -> None:
    def post(origin: str) -> httpx.Response:
        return httpx.post(
            upload["url"],
            data=upload["fields"],
            files={"file": ("model.joblib", origin.encode())},
            headers={"Origin": origin},
        )

    # From another origin the upload happens (S3 leaves the refusal to the browser: the
    # presigned policy is the guard) but the answer grants nothing to read.
    foreign = post(EVIL)
    assert foreign.status_code == 204, foreign.text
    assert _cors_headers(foreign) == {}
    assert foreign.headers["vary"].startswith("Origin")
    allowed = post(PAGE)
    assert allowed.status_code == 204, allowed.text
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert allowed.headers["access-control-allow-credentials"] == "true"
    stored = boto3.client("s3").get_object(
        Bucket=provisioned.physical["UploadsBucket"], Key=upload["fields"]["key"]
    )
    assert stored["Body"].read() == PAGE.encode()


def test_a_bucket_without_cors_rules_grants_no_origin(provisioned: Provisioned) -> None:
    bucket = provisioned.physical["ModelsBucket"]
    url = f"{boto3.client('s3').meta.endpoint_url}/{bucket}"
    refused = _preflight(url, PAGE)
    assert refused.status_code == 403
    assert "CORS is not enabled for this bucket" in refused.text
    post = boto3.client("s3").generate_presigned_post(bucket, "anything", ExpiresIn=60)
    answer = httpx.post(
        post["url"], data=post["fields"], files={"file": ("f", b"x")}, headers={"Origin": PAGE}
    )
    assert answer.status_code == 204
    assert _cors_headers(answer) == {}


def test_sdk_calls_without_origin_are_untouched(provisioned: Provisioned) -> None:
    cors = boto3.client("s3").get_bucket_cors(Bucket=provisioned.physical["UploadsBucket"])
    assert cors["CORSRules"][0]["AllowedOrigins"] == [PAGE, ALSO_PAGE]
