"""register_model logs and counts through the shared observability setup, as itself: its
handler run as Lambda would under moto, its stdout read back line by line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Api
from tests.integration.publishing import deliver


def test_register_model_logs_json_and_metrics_under_its_own_name(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()

    result = deliver(api, "stray/not-an-upload.bin")

    assert result["registrations"][0]["outcome"] == "ignored"
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()
    ]
    logs = [line for line in lines if "level" in line]
    (ignored,) = [line for line in logs if line["message"].startswith("Ignoring an object")]
    assert ignored["level"] == "WARNING"
    assert ignored["key"] == "stray/not-an-upload.bin"
    assert ignored["function_name"] == "RegisterModelFunction"
    assert {line["service"] for line in logs} == {"register_model"}
    (counted,) = [blob for blob in lines if "ModelsIgnored" in blob]
    assert counted["service"] == "register_model"
