"""A stopping local gateway (creditml.devstack.gateway): requests still arriving on kept-alive
connections are refused plainly, not handed to a functions' pool that is going away."""

from __future__ import annotations

import json
import threading

import pytest

from creditml.devstack.gateway import Gateway
from creditml.devstack.template import Template
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_a_request_after_shutdown_is_answered_503_without_running_a_function() -> None:
    gateway = Gateway(Template(ROOT / "template.yaml"), "127.0.0.1", 0)
    serving = threading.Thread(target=gateway.serve_forever, daemon=True)
    serving.start()
    # Given a gateway told to stop (its functions' pool shut down)
    gateway.shutdown()
    gateway.server_close()
    serving.join(timeout=30)
    # When a request still comes (on a connection kept alive from before)
    status, headers, body = gateway.dispatch("GET", "/openapi.json", {}, b"", "127.0.0.1")
    # Then it is refused as unavailable, not reported as a failed function (502)
    assert status == 503
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "stack_stopping"
