"""The embedded AWS's HTTP server (creditml.devstack.aws): connections stay open between
SDK calls, request bodies of every framing arrive whole, HEAD keeps its Content-Length."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import pytest

from tests.integration.conftest import embedded_aws

pytestmark = pytest.mark.integration


@pytest.fixture
def endpoint() -> Iterator[str]:
    with embedded_aws() as aws:
        boto3.client("s3").create_bucket(Bucket="things")
        yield aws.endpoint


def _connection(endpoint: str) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    assert parts.hostname is not None
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def test_one_connection_serves_request_after_request(endpoint: str) -> None:
    connection = _connection(endpoint)
    try:
        sockets = []
        for key in ("a", "b", "c"):
            connection.request("PUT", f"/things/{key}", body=key.encode() * 10)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
            assert (answer.getheader("Connection") or "").lower() != "close"
            sockets.append(connection.sock)
        # the same socket each time: the server kept it open
        assert sockets[0] is not None
        assert sockets == [sockets[0]] * 3
    finally:
        connection.close()
    body = boto3.client("s3").get_object(Bucket="things", Key="b")["Body"].read()
    assert body == b"b" * 10


def test_a_chunked_request_body_arrives_whole_and_the_connection_lives_on(
    endpoint: str,
) -> None:
    connection = _connection(endpoint)
    try:
        parts = [b"first part ", b"second part"]
        connection.request("PUT", "/things/chunked", body=iter(parts), encode_chunked=True)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200
        connection.request("PUT", "/things/after", body=b"next")
        again = connection.getresponse()
        again.read()
        assert again.status == 200
    finally:
        connection.close()
    s3 = boto3.client("s3")
    assert s3.get_object(Bucket="things", Key="chunked")["Body"].read() == b"".join(parts)
    assert s3.get_object(Bucket="things", Key="after")["Body"].read() == b"next"


def test_head_answers_the_objects_length(endpoint: str) -> None:
    s3 = boto3.client("s3")
    s3.put_object(Bucket="things", Key="sized", Body=b"x" * 1234)
    assert s3.head_object(Bucket="things", Key="sized")["ContentLength"] == 1234
