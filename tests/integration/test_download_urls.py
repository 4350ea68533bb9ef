"""A download's presigned GET of a big part, on the embedded AWS the local stack runs: it is
reachable over plain HTTP from outside the function (what the client does), gives back the
stored bytes, and is signed (Signature V4) for a bounded time."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from creditml.devstack.aws import provision
from creditml.devstack.template import Template
from creditml.storage.model_parts import ModelParts
from tests.conftest import ROOT
from tests.integration.conftest import embedded_aws


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    with embedded_aws():
        provisioned = provision(Template(ROOT / "template.yaml"), f"dl-{uuid.uuid4().hex[:8]}")
        yield provisioned.physical["ModelsBucket"]


def test_the_presigned_get_serves_the_big_part_over_http(bucket: str) -> None:
    big = os.urandom(70_000)
    key = f"{uuid.uuid4()}/1/{uuid.uuid4().hex}.part"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=big)
    url = ModelParts("unused-parts", bucket, "unused-models").big_url(key, 300)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == big
