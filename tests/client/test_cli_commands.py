"""The CLI's commands over a stand-in Client: what they send, print, store and exit with.
(The same commands against the real local stack: tests/e2e/test_client_cli.py.)"""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from typing import Any, ClassVar

import pytest

from creditml_client import cli
from creditml_client.errors import AuthenticationFailed, Forbidden, NotFound, PublishFailed

pytestmark = pytest.mark.unit

URL = "http://api.test"
PROFILE = {"id": "u1", "email": "ann@example.com", "role": "user", "balance": 1234}
MODEL = {
    "id": "m1",
    "name": "iris",
    "status": "ready",
    "price": 2,
    "version": 1,
    "input_schema": {"n_features": 2, "feature_names": ["a", "b"]},
}


class FakeClient:
    """Records every call; `behaviour` maps a method name to a result or an exception."""

    made: ClassVar[list[FakeClient]] = []
    behaviour: ClassVar[dict[str, Any]] = {}

    def __init__(self, base_url: str, **options: Any) -> None:
        self.base_url = base_url
        self.options = options
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        FakeClient.made.append(self)

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            result = FakeClient.behaviour.get(name)
            key = self.options.get("api_key") or "password"
            if isinstance(result, dict) and key in result:  # per-credential behaviour
                result = result[key]
            if isinstance(result, BaseException):
                raise result
            return result(*args, **kwargs) if callable(result) else result

        return method


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FakeClient]:
    monkeypatch.setattr(cli, "Client", FakeClient)
    monkeypatch.setenv("CREDITML_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CREDITML_PASSWORD", "correct horse battery")
    monkeypatch.delenv("CREDITML_URL", raising=False)
    monkeypatch.delenv("CREDITML_API_KEY", raising=False)
    FakeClient.made = []
    FakeClient.behaviour = {
        "create_api_key": {"id": "k1", "name": "x", "key": "cml_secret", "created_at": "now"},
        "me": PROFILE,
        "model": MODEL,
        "predict": {
            "prediction_id": "p1",
            "outputs": ["x"],
            "cost": 2,
            "balance": 1232,
            "model_version": 1,
        },
    }
    return FakeClient


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _login(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--url", URL, "login", "--email", "ann@example.com")[0] == 0
    FakeClient.made = []


def test_login_stores_a_new_api_key_never_the_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, stdout, stderr = run(capsys, "--url", URL + "/", "login", "--email", "ann@example.com")
    assert (code, stderr) == (0, "")
    assert "Logged in to http://api.test as ann@example.com" in stdout
    password_client, key_client = FakeClient.made
    assert password_client.options["email"] == "ann@example.com"
    assert password_client.calls[0][:2] == (
        "create_api_key",
        (f"creditml-client on {socket.gethostname()}",),
    )
    assert key_client.options["api_key"] == "cml_secret"
    stored = tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    text = stored.read_text()
    assert "correct horse battery" not in text
    assert json.loads(text)["servers"][URL] == {
        "email": "ann@example.com",
        "api_key": "cml_secret",
        "api_key_id": "k1",
    }


def test_a_second_login_revokes_the_key_of_the_first(capsys: pytest.CaptureFixture[str]) -> None:
    _login(capsys)
    FakeClient.behaviour["create_api_key"] = {"id": "k2", "name": "x", "key": "cml_2"}
    assert run(capsys, "login", "--email", "ann@example.com")[0] == 0  # the stored URL
    assert ("revoke_api_key", ("k1",), {}) in FakeClient.made[0].calls


@pytest.mark.parametrize("before", [True, False])
def test_json_goes_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str], before: bool
) -> None:
    _login(capsys)
    argv = ["--json", "me"] if before else ["me", "--json"]
    code, stdout, _ = run(capsys, *argv)
    assert (code, json.loads(stdout)) == (0, PROFILE)


def test_human_output_names_the_balance_with_separators(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _login(capsys)
    FakeClient.behaviour["balance"] = 1234567
    assert run(capsys, "balance") == (0, "1,234,567 credits\n", "")
    assert run(capsys, "balance", "--json") == (0, '{\n  "balance": 1234567\n}\n', "")


def test_without_a_login_commands_say_to_log_in(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run(capsys, "--url", URL, "models")
    assert (code, stdout) == (1, "")
    assert stderr == (
        "error: not logged in to http://api.test; run `creditml-client login --email EMAIL` "
        "(not_logged_in)\n"
    )


def test_without_any_url_the_error_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, stderr = run(capsys, "me")
    assert code == 1
    assert stderr.startswith("error: no server: pass --url URL or set CREDITML_URL")


def test_predict_orders_a_csv_header_by_the_models_features(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _login(capsys)
    rows = tmp_path / "rows.csv"
    rows.write_text("b,a\n2,1\n")
    code, stdout, _ = run(capsys, "predict", "m1", "--input", str(rows))
    assert code == 0
    assert ("predict", ("m1", [[1, 2]]), {}) in FakeClient.made[0].calls
    assert "Cost 2 credits; balance 1,232 credits" in stdout


def test_predict_from_json_does_not_ask_for_the_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _login(capsys)
    rows = tmp_path / "rows.json"
    rows.write_text('{"inputs": [[1, 2]]}')
    assert run(capsys, "predict", "m1", "--input", str(rows))[0] == 0
    assert [name for name, _, _ in FakeClient.made[0].calls] == ["predict"]


def test_logout_revokes_with_the_password_when_keys_may_not(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _login(capsys)
    refused = Forbidden(403, "forbidden", "API keys cannot manage API keys", {})
    FakeClient.behaviour["revoke_api_key"] = {"cml_secret": refused, "password": None}
    code, stdout, _ = run(capsys, "logout")
    assert (code, stdout) == (0, "Logged out of http://api.test; its API key is revoked.\n")
    _, password_client = FakeClient.made
    assert password_client.calls == [("revoke_api_key", ("k1",), {})]
    assert json.loads((tmp_path / "config" / "credentials.json").read_text())["servers"] == {}


def test_logout_of_a_key_revoked_already_still_logs_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _login(capsys)
    FakeClient.behaviour["revoke_api_key"] = {
        "cml_secret": AuthenticationFailed(401, "not_authenticated", "Bad key", {}),
        "password": NotFound(404, "not_found", "Not found", {}),
    }
    assert run(capsys, "logout")[0] == 0
    assert run(capsys, "me")[2].startswith("error: not logged in")


def test_a_rejected_model_is_one_line_with_its_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _login(capsys)
    model = tmp_path / "model.joblib"
    model.write_bytes(b"x")
    FakeClient.behaviour["publish"] = PublishFailed(
        422, "model_rejected", "the file is not a scikit-learn estimator"
    )
    code, stdout, stderr = run(capsys, "publish", str(model), "--name", "n", "--price", "1")
    assert (code, stdout) == (1, "")
    assert stderr == "error: the file is not a scikit-learn estimator (model_rejected)\n"


def test_publish_of_a_missing_file_sends_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    _login(capsys)
    code, _, stderr = run(capsys, "publish", "nope.joblib", "--name", "n", "--price", "1")
    assert (code, stderr) == (1, "error: no such file: nope.joblib (file_not_found)\n")
    assert FakeClient.made == []


def test_ctrl_c_exits_130_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    _login(capsys)
    FakeClient.behaviour["me"] = KeyboardInterrupt()
    code, _, stderr = run(capsys, "me")
    assert (code, stderr) == (130, "\n")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["top-up", "-5"])
    assert raised.value.code == 2


def test_usage_passes_the_reports_query_names(capsys: pytest.CaptureFixture[str]) -> None:
    _login(capsys)
    FakeClient.behaviour["usage"] = {
        "from": "2024-05-01",
        "to": "2024-05-02",
        "group_by": "model",
        "scope": "own",
        "items": [
            {"key": "m1", "model_name": "iris", "predictions": 2, "rows": 3, "credits": 4500}
        ],
        "totals": {"predictions": 2, "rows": 3, "credits": 4500},
    }
    code, stdout, _ = run(capsys, "usage", "--from", "2024-05-01", "--group-by", "model")
    assert code == 0
    assert FakeClient.made[0].calls == [("usage", (), {"from": "2024-05-01", "group_by": "model"})]
    assert stdout.splitlines()[1:] == [
        "MODEL  NAME  PREDICTIONS  ROWS  CREDITS",
        "m1     iris            2     3    4,500",
        "total                  2     3    4,500",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["devices", "add", "laptop", "--json"],
        ["devices", "--json", "add", "laptop"],
        ["--json", "devices", "add", "laptop"],
    ],
)
def test_json_is_accepted_after_an_action_too(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    _login(capsys)
    FakeClient.behaviour["register_device"] = {"id": "d1", "name": "laptop"}
    code, stdout, _ = run(capsys, *argv)
    assert (code, json.loads(stdout)) == (0, {"id": "d1", "name": "laptop"})


HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eexe.txt"


@pytest.mark.parametrize("as_json", [False, True])
def test_text_from_the_server_cannot_act_on_the_terminal(
    capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """Another publisher's model name is printed, never executed by the terminal: escape
    sequences (OSC retitle, CSI clear, C1 CSI) and bidi overrides come out as \\uXXXX."""
    _login(capsys)
    FakeClient.behaviour["models"] = [{**MODEL, "name": HOSTILE, "description": HOSTILE}]
    code, stdout, stderr = run(capsys, "models", *(["--json"] if as_json else []))
    assert (code, stderr) == (0, "")
    for char in "\x1b\x07\x9b\u202e":
        assert char not in stdout
    assert "\\u001b]0;pwned\\u0007" in stdout
    if as_json:
        document = json.loads(stdout)  # still the same JSON document
        assert document["items"][0]["name"] == HOSTILE
    FakeClient.behaviour["model"] = {**MODEL, "name": HOSTILE, "description": HOSTILE}
    code, stdout, _ = run(capsys, "model", "m1")
    assert code == 0
    assert "\x1b" not in stdout
    assert "\u202e" not in stdout


def test_an_unexpected_answer_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _login(capsys)
    FakeClient.behaviour["me"] = KeyError("id")  # e.g. a proxy answering 200 with {}
    code, stdout, stderr = run(capsys, "me")
    assert (code, stdout) == (1, "")
    assert stderr == "error: unexpected answer or failure (KeyError) (unexpected)\n"
