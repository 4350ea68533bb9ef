"""`python -m creditml_client` as a person uses it, against the local stack: each command a
subprocess with its own config and cache folders."""

from __future__ import annotations

import csv
import json
import os
import pty
import socket
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.conftest import ROOT
from tests.e2e.conftest import PASSWORD, Account, RunningStack, bearer, new_account

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@dataclass
class Shell:
    """One person's shell: their own config and cache folders, the stack's URL."""

    url: str
    home: Path

    def environment(self, **env: str) -> dict[str, str]:
        environment = {
            **os.environ,
            # Until the package is installed into the project's virtualenv.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT / "client"), os.environ.get("PYTHONPATH")])
            ),
            "CREDITML_CONFIG_DIR": str(self.home / "config"),
            "CREDITML_CACHE_DIR": str(self.home / "cache"),
            "CREDITML_URL": self.url,
            **env,
        }
        for name in ("CREDITML_PASSWORD", "CREDITML_API_KEY"):
            if name not in env:
                environment.pop(name, None)
        return environment

    def run(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "creditml_client", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.environment(**env),
            stdin=subprocess.DEVNULL,
        )

    def on_a_terminal(self, *argv: str) -> tuple[str, str]:
        """stdout, and what the command drew on stderr when stderr is a terminal."""
        main, secondary = pty.openpty()
        drawn: list[bytes] = []

        def pump() -> None:  # keeps the pty's small buffer from blocking the command
            while True:
                try:
                    data = os.read(main, 4096)
                except OSError:  # EIO: the command ended and closed its side
                    return
                if not data:
                    return
                drawn.append(data)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "creditml_client", *argv],
                stdout=subprocess.PIPE,
                stderr=secondary,
                text=True,
                timeout=120,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(secondary)
            reader.join(timeout=10)
            os.close(main)
        assert done.returncode == 0, b"".join(drawn)
        return done.stdout, b"".join(drawn).decode()

    def ok(self, *argv: str, **env: str) -> str:
        done = self.run(*argv, **env)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done.stdout

    def json(self, *argv: str, **env: str) -> Any:
        return json.loads(self.ok(*argv, "--json", **env))

    def login(self, account: Account) -> None:
        self.ok("login", "--email", account.email, CREDITML_PASSWORD=PASSWORD)

    @property
    def credentials(self) -> Path:
        return self.home / "config" / "credentials.json"


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's single stderr line, after checking the exit status and stdout."""
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def shell(stack: RunningStack, tmp_path: Path) -> Shell:
    return Shell(stack.url, tmp_path)


@pytest.fixture
def customer(http: httpx.Client, shell: Shell) -> Account:
    """A logged-in user with 1,000 credits."""
    account = new_account(http, credits=1000)
    shell.login(account)
    return account


def _demo_model_id(shell: Shell) -> str:
    models = shell.json("models")["items"]
    return str(next(model["id"] for model in models if model["name"] == "iris-demo"))


def test_login_keeps_an_api_key_in_a_private_file(
    http: httpx.Client, shell: Shell, stack: RunningStack
) -> None:
    account = new_account(http)
    said = shell.ok("login", "--email", account.email, CREDITML_PASSWORD=PASSWORD)
    assert f"Logged in to {stack.url} as {account.email}" in said

    assert stat.S_IMODE(shell.credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(shell.credentials.parent.stat().st_mode) == 0o700
    text = shell.credentials.read_text()
    assert PASSWORD not in text
    assert "refresh" not in text
    stored = json.loads(text)["servers"][stack.url]
    assert stored["api_key"].startswith("cml_")
    keys = http.get("/api-keys", headers=account.headers()).json()["items"]
    assert [(key["id"], key["name"]) for key in keys] == [
        (stored["api_key_id"], f"creditml-client on {socket.gethostname()}")
    ]
    # Later commands act with that key (and name the user it belongs to).
    assert shell.json("me")["email"] == account.email
    assert shell.json("balance") == {"balance": 0}


def test_top_up_and_balance(shell: Shell, customer: Account) -> None:
    assert shell.ok("top-up", "1500") == "Added 1,500 credits; balance 2,500 credits.\n"
    assert shell.ok("balance") == "2,500 credits\n"
    entry = shell.json("top-up", "5")
    assert (entry["kind"], entry["amount"], entry["balance_after"]) == ("top_up", 5, 2505)


def test_models_lists_the_demo_model(shell: Shell, customer: Account) -> None:
    table = shell.ok("models").splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "STATUS", "PRICE"]
    assert any("iris-demo" in line and "ready" in line for line in table[1:])
    shown = shell.json("model", _demo_model_id(shell))
    assert shown["input_schema"]["feature_names"] == FEATURES
    assert "sepal_length, sepal_width" in shell.ok("model", shown["id"])


def test_predict_from_a_csv_with_a_header_and_from_json_agree(
    http: httpx.Client, shell: Shell, customer: Account
) -> None:
    model_id = _demo_model_id(shell)
    # Columns in another order than the model's features: the CLI reorders them.
    shuffled = ["petal_width", "sepal_length", "petal_length", "sepal_width"]
    table = shell.home / "rows.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(shuffled)
        for row in IRIS_ROWS:
            writer.writerow([row[FEATURES.index(name)] for name in shuffled])
    listed = shell.home / "rows.json"
    listed.write_text(json.dumps(IRIS_ROWS))
    wrapped = shell.home / "inputs.json"
    wrapped.write_text(json.dumps({"inputs": IRIS_ROWS}))

    from_csv = shell.json("predict", model_id, "--input", str(table))
    from_json = shell.json("predict", model_id, "--input", str(listed))
    from_inputs = shell.json("predict", model_id, "--input", str(wrapped))

    direct = http.post(
        f"/models/{model_id}/predictions",
        json={"inputs": IRIS_ROWS},
        headers=bearer(customer.token, "cli-direct-" + customer.id),
    ).json()
    assert from_csv["outputs"] == from_json["outputs"] == from_inputs["outputs"]
    assert from_csv["outputs"] == direct["outputs"]
    assert len(set(map(str, direct["outputs"]))) > 1  # the rows really are told apart
    assert [from_csv["cost"], from_json["balance"]] == [3, 1000 - 2 * 3]

    said = shell.ok("predict", model_id, "--input", str(table)).splitlines()
    assert said[0].split() == ["ROW", "OUTPUT", "PROBABILITY"]
    assert said[-1].startswith("Cost 3 credits; balance 985 credits (model version 1")
    history = shell.json("predictions")["items"]
    assert len(history) == 5
    assert "ROWS" in shell.ok("predictions").splitlines()[0]


def test_usage_reads_the_report(shell: Shell, customer: Account) -> None:
    report = shell.json("usage", "--group-by", "model")
    assert (report["group_by"], report["scope"]) == ("model", "own")
    lines = shell.ok("usage").splitlines()
    assert lines[0].endswith("scope own, by day")
    assert lines[1].split() == ["DAY", "PREDICTIONS", "ROWS", "CREDITS"]
    assert lines[-1].split()[0] == "total"


def test_a_missing_file_is_one_line(shell: Shell, customer: Account) -> None:
    missing = shell.home / "nope.csv"
    line = one_line_error(shell.run("predict", "some-model", "--input", str(missing)))
    assert line == f"error: no such file: {missing} (file_not_found)"
    model = shell.home / "nope.joblib"
    line = one_line_error(shell.run("publish", str(model), "--name", "x", "--price", "1"))
    assert line == f"error: no such file: {model} (file_not_found)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_bad_url_is_one_line(shell: Shell) -> None:
    unreachable = f"http://127.0.0.1:{_free_port()}"
    done = shell.run(
        "--url",
        unreachable,
        "login",
        "--email",
        "a@example.com",
        CREDITML_PASSWORD=PASSWORD,
        CREDITML_RETRY_SECONDS="0.5",
    )
    assert one_line_error(done).startswith("error: cannot reach the server: ")
    assert one_line_error(shell.run("--url", "ftp://example.com", "me")) == (
        "error: not an http(s) URL: ftp://example.com (bad_url)"
    )
    assert not shell.credentials.exists()


def test_a_wrong_password_is_one_line_and_stores_nothing(http: httpx.Client, shell: Shell) -> None:
    account = new_account(http)
    done = shell.run("login", "--email", account.email, CREDITML_PASSWORD="not it")
    assert one_line_error(done).endswith("(invalid_credentials)")
    assert not shell.credentials.exists()


def test_logout_revokes_the_key(
    http: httpx.Client, shell: Shell, customer: Account, stack: RunningStack
) -> None:
    key_id = json.loads(shell.credentials.read_text())["servers"][stack.url]["api_key_id"]
    # Keys cannot manage keys: logout revokes it with the password.
    said = shell.ok("logout", CREDITML_PASSWORD=PASSWORD)
    assert said == f"Logged out of {stack.url}; its API key is revoked.\n"
    keys = http.get("/api-keys", headers=customer.headers()).json()["items"]
    assert key_id not in [key["id"] for key in keys]
    assert "cml_" not in shell.credentials.read_text()
    assert one_line_error(shell.run("me")) == (
        f"error: not logged in to {stack.url}; run `creditml-client login --email EMAIL` "
        "(not_logged_in)"
    )


def test_api_keys_are_listed_created_and_revoked(
    http: httpx.Client, shell: Shell, customer: Account
) -> None:
    # Keys cannot manage keys: these commands take the password.
    refused = one_line_error(shell.run("api-keys", "create", "nightly job"))
    assert refused == (
        "error: API keys are managed with your password: set CREDITML_PASSWORD or run in a "
        "terminal to be asked (secret_required)"
    )
    created = shell.json("api-keys", "create", "nightly job", CREDITML_PASSWORD=PASSWORD)
    assert created["key"].startswith("cml_")
    listed = json.loads(shell.ok("api-keys", "--json", CREDITML_PASSWORD=PASSWORD))["items"]
    assert created["id"] in [key["id"] for key in listed]
    # A program uses the key; the shell logs in with it too.
    assert http.get("/users/me", headers=bearer(created["key"])).json()["id"] == customer.id
    other = Shell(shell.url, shell.home / "other")
    other.ok("login", "--api-key", CREDITML_API_KEY=created["key"])
    assert other.json("me")["id"] == customer.id
    said = shell.ok("api-keys", "revoke", created["id"], CREDITML_PASSWORD=PASSWORD)
    assert said == f"Revoked API key {created['id']}.\n"
    table = shell.ok("api-keys", CREDITML_PASSWORD=PASSWORD)
    assert created["id"] not in table
    assert "creditml-client on" in table


def _model_file(folder: Path) -> Path:
    rows = np.array(IRIS_ROWS * 4)
    model = LogisticRegression(max_iter=500).fit(rows, [0, 1, 2] * 4)
    path = folder / "model.joblib"
    joblib.dump(model, path)
    return path


def test_publish_download_and_devices(http: httpx.Client, shell: Shell) -> None:
    publisher = new_account(http, role="publisher", prefix="publisher")
    shell.login(publisher)
    model = _model_file(shell.home)
    said, drawn = shell.on_a_terminal(
        "publish", str(model), "--name", "cli-model", "--price", "2", "--download-price", "7"
    )
    assert f"uploading model.joblib [{'#' * 30}] 100% " in drawn
    assert "checking the model..." in drawn
    assert "version 1: ready" in said
    assert "Download price 7 credits per device." in said
    model_id = next(m["id"] for m in shell.json("models")["items"] if m["name"] == "cli-model")
    assert shell.json("model", model_id)["download_price"] == 7

    # No device yet: one line that says what to do.
    assert "devices add" in one_line_error(shell.run("download", model_id))
    device = shell.json("devices", "add", "laptop")
    assert [d["id"] for d in shell.json("devices")["items"]] == [device["id"]]
    assert "laptop" in shell.ok("devices")

    said, drawn = shell.on_a_terminal("download", model_id)
    assert "downloading the big part [" in drawn
    assert "100%" in drawn
    first = said.splitlines()
    assert first[1].startswith("Big part (")
    assert ") downloaded: " in first[1]
    assert first[2] == "Cost 0 credits; balance 0 credits."  # the owner's own model
    again = shell.json("download", model_id)
    assert (again["cached"], again["version"], again["cost"]) == (True, 1, 0)
    assert Path(again["big_path"]).is_file()
    assert Path(again["big_path"]).is_relative_to(shell.home / "cache")
    assert "read from the cache" in shell.ok("download", model_id)

    assert shell.ok("devices", "remove", device["id"]) == f"Removed device {device['id']}.\n"
    assert shell.json("devices")["items"] == []


def test_a_rejected_model_is_one_line_with_its_reason(http: httpx.Client, shell: Shell) -> None:
    publisher = new_account(http, role="publisher", prefix="publisher")
    shell.login(publisher)
    junk = shell.home / "junk.joblib"
    junk.write_bytes(b"this is not a model")
    line = one_line_error(shell.run("publish", str(junk), "--name", "junk", "--price", "1"))
    assert line.endswith("(model_rejected)")


def test_a_plain_user_cannot_publish(http: httpx.Client, shell: Shell, customer: Account) -> None:
    model = _model_file(shell.home)
    line = one_line_error(shell.run("publish", str(model), "--name", "x", "--price", "1"))
    assert line.endswith("(forbidden)")


def test_insufficient_credits_name_balance_and_price(http: httpx.Client, shell: Shell) -> None:
    account = new_account(http)
    shell.login(account)
    rows = shell.home / "rows.json"
    rows.write_text(json.dumps(IRIS_ROWS))
    line = one_line_error(shell.run("predict", _demo_model_id(shell), "--input", str(rows)))
    assert line == "error: insufficient credits: balance 0, required 3 (insufficient_credits)"
