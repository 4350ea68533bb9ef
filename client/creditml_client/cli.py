"""`creditml-client` (also `python -m creditml_client`): CreditML from the shell.

A thin layer over `creditml_client.Client`: it parses arguments, reads input files, keeps
the login in a 0600 file, and prints either aligned tables or (with `--json`) the API's JSON.

  creditml-client login --email you@example.com      (password: CREDITML_PASSWORD or a prompt)
  creditml-client login --api-key                    (the key: CREDITML_API_KEY or a prompt)
  creditml-client logout
  creditml-client me | balance | top-up AMOUNT
  creditml-client models | model ID
  creditml-client publish FILE --name N --price P [--description D] [--download-price X]
  creditml-client predict MODEL_ID --input FILE.csv|FILE.json
  creditml-client predictions [--limit N]
  creditml-client usage [--from DATE] [--to DATE] [--group-by day|model] [--scope own|...]
  creditml-client devices | devices add NAME | devices remove ID
  creditml-client download MODEL_ID [--version V]
  creditml-client api-keys | api-keys create NAME | api-keys revoke ID

The server is `--url`, else $CREDITML_URL, else the one of the last login. Every command
takes `--json`. Errors are one line on stderr; the exit status is 1 (2 for a usage error,
130 when interrupted). Files: the login in <config>/credentials.json ($CREDITML_CONFIG_DIR,
else e.g. ~/.config/creditml), downloads under $CREDITML_CACHE_DIR (else e.g.
~/.cache/creditml). An unreachable server is retried for $CREDITML_RETRY_SECONDS (10).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import getpass
import io
import json
import math
import os
import socket
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from creditml_client import paths
from creditml_client.client import Client
from creditml_client.errors import (
    ApiError,
    CreditMLError,
    DeviceNotRegistered,
    InsufficientCredits,
    TransportFailed,
    ValidationFailed,
)

PROG = "creditml-client"
CREDENTIALS_FILE = "credentials.json"


class CliError(Exception):
    """A failure the CLI explains in one line: `error: <message> (<code>)`."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --- output --------------------------------------------------------------------------------
# The only writers to stdout: the CLI's output is its product (ruff's T20 bans print in a
# library, and this package is one).

# Control characters (ESC, C1 controls, ...), bidi and invisible formatting characters, line
# and paragraph separators, lone surrogates: never written to a terminal as they are.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_KEPT = frozenset({"\n", "\t", "\u200c", "\u200d"})


def visible(text: str) -> str:
    """`text` with each control, bidi or invisible formatting character written as
    `\\uXXXX`: what the server relays from other people (a model's name, description,
    feature names) must not move the cursor, retitle or clear the terminal, write the
    clipboard (OSC 52) or reorder what is shown. Valid inside JSON strings too."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        char
        if char in _KEPT or unicodedata.category(char) not in _UNSAFE_CATEGORIES
        else f"\\u{ord(char):04x}"
        for char in text
    )


def out(text: str = "") -> None:
    """One line of human output on stdout."""
    sys.stdout.write(visible(text) + "\n")


def out_json(document: Any) -> None:
    """The API's JSON on stdout, nothing else (its strings' control characters escaped)."""
    sys.stdout.write(visible(json.dumps(document, indent=2, ensure_ascii=False)) + "\n")


def err(text: str) -> None:
    sys.stderr.write(visible(text) + "\n")
    sys.stderr.flush()


def credits(amount: Any) -> str:
    """1234567 -> '1,234,567'."""
    return f"{amount:,}" if isinstance(amount, int) and not isinstance(amount, bool) else "-"


def balance_of(item: dict[str, Any], field: str = "balance_after") -> str:
    """A balance the server answered, with ">=" when it is a lower bound (other operations
    on the account overlapped the one that reported it)."""
    shown = credits(item.get(field))
    return shown if item.get("balance_exact", True) else f">={shown}"


def utc(value: Any) -> str:
    """An API timestamp as '2024-05-01 12:34:56 UTC' (the API speaks UTC; say so)."""
    if not value:
        return "-"
    try:
        # Python 3.10's fromisoformat does not read a trailing Z.
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}" if math.isfinite(value) else str(value)
    return visible(str(value))  # before the widths are measured


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[str] = ()
) -> str:
    """Aligned columns: text to the left, the `numeric` columns to the right."""
    texts = [[cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in texts:
        widths = [max(width, len(text)) for width, text in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if header in numeric else value.ljust(width)
            for header, value, width in zip(headers, values, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in texts)])


class ProgressBar:
    """`progress(done_bytes, total_bytes)` drawn on stderr: a bar redrawn in place on a
    terminal, nothing at all when stderr is a file or a pipe (logs stay clean)."""

    def __init__(
        self,
        label: str,
        stream: IO[str] | None = None,
        enabled: bool | None = None,
        then: str = "",
    ) -> None:
        self.label = label
        self.then = then  # said once the bar is full, e.g. what is waited for next
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._drawn = ""

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        fraction = min(1.0, done / total) if total > 0 else 1.0
        width = 30
        filled = int(fraction * width)
        text = (
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{fraction:4.0%} {_size(done)}/{_size(total)}"
        )
        if text != self._drawn:  # redraw only when something visible changed
            self.stream.write(text)
            self.stream.flush()
            self._drawn = text
        if done >= total and self.then:
            self.stream.write(f"\n{self.then}")
            self.stream.flush()
            self.then = ""

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = ""


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


@contextlib.contextmanager
def progress_bar(label: str, then: str = "") -> Iterator[ProgressBar]:
    bar = ProgressBar(label, then=then)
    try:
        yield bar
    finally:
        bar.finish()


# --- where things live ---------------------------------------------------------------------


def normalize_url(url: str) -> str:
    """'HTTP://Host:3000/' -> 'http://host:3000'; anything but an http(s) URL is refused."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - reading it validates the port (ValueError when out of range)
    except ValueError:
        raise CliError(f"not an http(s) URL: {url}", "bad_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise CliError(f"not an http(s) URL: {url}", "bad_url")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class Login:
    """What `login` keeps for one server.

    It keeps an API key, never the password, and not the refresh token either: refresh
    tokens rotate and a reused one revokes its whole family, so two CLI processes refreshing
    the one stored token at the same time (a cron job and a shell) would trip reuse
    detection and log each other out. An API key is stable, revocable on its own (`logout`),
    and never touches /auth/*."""

    url: str
    email: str | None
    api_key: str
    api_key_id: str | None  # None: the user brought the key (`login --api-key`), we keep it


class CredentialStore:
    """`<config_dir>/credentials.json` (mode 0600, its folder 0700): one Login per base
    URL, plus the URL of the last login (used when neither --url nor $CREDITML_URL says)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / CREDENTIALS_FILE

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"current": None, "servers": {}}
        try:
            document = json.loads(text)
        except ValueError:
            raise CliError(
                f"{self.path} is not valid JSON; delete it and log in again", "bad_credentials"
            ) from None
        if not isinstance(document, dict) or not isinstance(document.get("servers"), dict):
            raise CliError(f"{self.path} is not a credentials file", "bad_credentials")
        return document

    def _write(self, document: Mapping[str, Any]) -> None:
        # A 0600 temporary file renamed over the old one: the key never sits in a file
        # others can read, and a crash never leaves half a file.
        paths.ensure_private_dir(self.folder)
        paths.write_private(self.path, (json.dumps(document, indent=2) + "\n").encode())

    def current_url(self) -> str | None:
        current = self._read().get("current")
        return current if isinstance(current, str) else None

    def get(self, url: str) -> Login | None:
        entry = self._read()["servers"].get(url)
        if not isinstance(entry, dict) or not isinstance(entry.get("api_key"), str):
            return None
        return Login(url, entry.get("email"), entry["api_key"], entry.get("api_key_id"))

    def put(self, login: Login) -> None:
        document = self._read()
        document["servers"][login.url] = {
            "email": login.email,
            "api_key": login.api_key,
            "api_key_id": login.api_key_id,
        }
        document["current"] = login.url
        self._write(document)

    def forget(self, url: str) -> None:
        document = self._read()
        # `current` stays: the next command names the server it is not logged in to.
        document["servers"].pop(url, None)
        self._write(document)


# --- the session a command runs in ---------------------------------------------------------


class Session:
    """The resolved server, the credential store, and clients built on demand."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = bool(args.json)
        self.store = CredentialStore(paths.config_dir())
        given = args.url or os.environ.get("CREDITML_URL") or self.store.current_url()
        if not given:
            raise CliError(
                f"no server: pass --url URL or set CREDITML_URL (or run `{PROG} login`)",
                "no_url",
            )
        self.url = normalize_url(given)

    def client(self, **credentials: Any) -> Client:
        return Client(
            self.url,
            config_dir=paths.config_dir(),
            cache_dir=paths.cache_dir(),
            max_retry_seconds=_retry_seconds(),
            **credentials,
        )

    def login(self) -> Login:
        login = self.store.get(self.url)
        if login is None:
            raise CliError(
                f"not logged in to {self.url}; run `{PROG} login --email EMAIL`",
                "not_logged_in",
            )
        return login

    def authed(self) -> Client:
        """A client acting with the stored API key."""
        return self.client(api_key=self.login().api_key)

    def with_password(self, email: str | None = None) -> Client:
        """A client that logs in with a password (API keys cannot manage API keys)."""
        login = self.store.get(self.url)
        address = email or (login.email if login else None)
        if not address:
            raise CliError(f"no email known for {self.url}; pass --email", "email_required")
        why = "API keys are managed with your password: "
        return self.client(email=address, password=read_secret("CREDITML_PASSWORD", address, why))


def _retry_seconds() -> float:
    # A person at a shell waits less for an unreachable server than a program would.
    text = os.environ.get("CREDITML_RETRY_SECONDS", "10")
    try:
        return max(0.0, float(text))
    except ValueError:
        raise CliError(f"CREDITML_RETRY_SECONDS is not a number: {text}", "bad_config") from None


def read_secret(variable: str, subject: str, why: str = "") -> str:
    """A password or key from $variable, else a no-echo prompt on the terminal."""
    value = os.environ.get(variable)
    if value:
        return value
    if not sys.stdin.isatty():
        raise CliError(f"{why}set {variable} or run in a terminal to be asked", "secret_required")
    what = "API key" if "KEY" in variable else f"Password for {subject}"
    secret = getpass.getpass(f"{what}: ")
    if not secret:
        raise CliError("nothing entered", "secret_required")
    return secret


# --- predict inputs ------------------------------------------------------------------------


def read_inputs(path: Path, feature_names: Sequence[str] | None) -> list[Any]:
    """Rows for POST /models/{id}/predictions from a .csv or .json file.

    CSV: a header row of feature names is put in the model's feature order; a file without
    a header (every cell of its first row a number) is sent as it is. JSON: a list of rows,
    or `{"inputs": [...]}`, sent as it is."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise CliError(f"{path}: --input takes a .csv or .json file", "bad_input")
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: spreadsheets write a BOM
    except FileNotFoundError:
        raise CliError(f"no such file: {path}", "file_not_found") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text", "bad_input") from None
    rows = _json_rows(path, text) if suffix == ".json" else _csv_rows(path, text, feature_names)
    if not rows:
        raise CliError(f"{path}: no rows to predict", "bad_input")
    return rows


def _json_rows(path: Path, text: str) -> list[Any]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise CliError(f"{path}: not valid JSON ({error})", "bad_input") from None
    if isinstance(document, dict) and "inputs" in document:
        document = document["inputs"]
    if not isinstance(document, list):
        raise CliError(f'{path}: expected a list of rows or {{"inputs": [...]}}', "bad_input")
    return document


def _number(text: str, path: Path, line: int, column: int) -> float | int:
    value = text.strip()
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        raise CliError(
            f"{path}: line {line}, column {column}: not a number: {text!r}", "bad_input"
        ) from None
    if not math.isfinite(number):
        raise CliError(f"{path}: line {line}, column {column}: not finite: {text!r}", "bad_input")
    return number


def _is_number(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def _csv_rows(path: Path, text: str, feature_names: Sequence[str] | None) -> list[Any]:
    reader = csv.reader(io.StringIO(text))
    records = [(reader.line_num, row) for row in reader if any(value.strip() for value in row)]
    if not records:
        return []
    header: list[str] | None = None
    order: list[int] | None = None
    if not all(_is_number(value) for value in records[0][1]):  # a header row
        header = [name.strip() for name in records[0][1]]
        order = _column_order(path, header, feature_names)
        records = records[1:]
    return [_csv_row(path, line, record, header, order) for line, record in records]


def _csv_row(
    path: Path, line: int, record: list[str], header: list[str] | None, order: list[int] | None
) -> list[float | int]:
    if header is not None and len(record) != len(header):
        raise CliError(
            f"{path}: line {line} has {len(record)} values, the header {len(header)}",
            "bad_input",
        )
    indexes = order if order is not None else range(len(record))
    return [_number(record[index], path, line, index + 1) for index in indexes]


def _column_order(path: Path, header: list[str], feature_names: Sequence[str] | None) -> list[int]:
    """Indexes of the header's columns in the model's feature order (the file's own order
    when the model has no feature names)."""
    if len(set(header)) != len(header):
        raise CliError(f"{path}: the header names a column twice", "bad_input")
    if not feature_names:
        return list(range(len(header)))
    missing = [name for name in feature_names if name not in header]
    extra = [name for name in header if name not in feature_names]
    if missing or extra:
        problems = [f"missing column(s) {', '.join(missing)}"] if missing else []
        problems += [f"unknown column(s) {', '.join(extra)}"] if extra else []
        raise CliError(
            f"{path}: {'; '.join(problems)} (the model takes {', '.join(feature_names)})",
            "bad_input",
        )
    return [header.index(name) for name in feature_names]


# --- commands ------------------------------------------------------------------------------


def _items(result: Any) -> list[Any]:
    """A list route's rows, whether the client hands back the list or the `{items}` page."""
    if isinstance(result, dict):
        items = result.get("items", [])
        return list(items) if isinstance(items, list) else []
    return list(result or [])


def _page(result: Any) -> Any:
    """The API's JSON for a list route: `{items, ...}` (as the client gave it, or rebuilt)."""
    return result if isinstance(result, dict) else {"items": _items(result)}


def _fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        out(f"{name.ljust(width)}  {value if isinstance(value, str) else cell(value)}")


def cmd_login(session: Session) -> int:
    args = session.args
    password_client: Client | None = None
    if args.api_key:
        key = read_secret("CREDITML_API_KEY", "")
        profile = session.client(api_key=key).me()
        login = Login(session.url, profile.get("email"), key, None)
    else:
        password_client = session.client(
            email=args.email, password=read_secret("CREDITML_PASSWORD", args.email)
        )
        # Key names are at most 100 characters; a long host name is cut, not refused.
        created = password_client.create_api_key(f"{PROG} on {socket.gethostname()}"[:100])
        login = Login(session.url, args.email, created["key"], created["id"])
        # Checks the new key before it replaces a working login.
        profile = session.client(api_key=login.api_key).me()
    previous = session.store.get(session.url)
    session.store.put(login)
    _retire(previous, login, password_client)
    if session.json:
        out_json(profile)
        return 0
    kind = "your API key" if login.api_key_id is None else f"API key {PROG} on this machine"
    out(f"Logged in to {session.url} as {profile.get('email')} ({profile.get('role')}).")
    out(f"Stored {kind} in {session.store.path} (readable by you only).")
    return 0


def _retire(previous: Login | None, current: Login, password_client: Client | None) -> None:
    """Revoke the key an earlier `login` made here, now replaced (best effort: it may be
    gone already, or belong to another account)."""
    if previous is None or previous.api_key_id is None or password_client is None:
        return
    if previous.api_key_id == current.api_key_id or previous.email != current.email:
        return
    with contextlib.suppress(ApiError, TransportFailed):
        password_client.revoke_api_key(previous.api_key_id)


def cmd_logout(session: Session) -> int:
    login = session.login()
    if login.api_key_id is not None:
        _revoke_stored_key(session, login, login.api_key_id)
    session.store.forget(session.url)
    if session.json:
        out_json({"url": session.url, "revoked_api_key_id": login.api_key_id})
        return 0
    if login.api_key_id is None:
        out(f"Logged out of {session.url} (your own API key was forgotten here, not revoked).")
    else:
        out(f"Logged out of {session.url}; its API key is revoked.")
    return 0


def _revoke_stored_key(session: Session, login: Login, key_id: str) -> None:
    try:
        session.authed().revoke_api_key(key_id)
        return
    except ApiError as error:
        if error.status == 404:  # revoked already
            return
        if error.status not in (401, 403):
            raise
    # API keys cannot manage API keys (§11): the account's password can.
    try:
        session.with_password(login.email).revoke_api_key(key_id)
    except ApiError as error:
        if error.status != 404:
            raise


def cmd_me(session: Session) -> int:
    profile = session.authed().me()
    if session.json:
        out_json(profile)
        return 0
    _fields(
        [
            ("email", str(profile.get("email"))),
            ("role", str(profile.get("role"))),
            ("id", str(profile.get("id"))),
            ("balance", f"{credits(profile.get('balance'))} credits"),
            ("server", session.url),
        ]
    )
    return 0


def cmd_balance(session: Session) -> int:
    balance = session.authed().balance()
    if session.json:
        out_json({"balance": balance})
    else:
        out(f"{credits(balance)} credits")
    return 0


def cmd_top_up(session: Session) -> int:
    entry = session.authed().top_up(session.args.amount)
    if session.json:
        out_json(entry)
    else:
        out(f"Added {credits(entry.get('amount'))} credits; balance {balance_of(entry)} credits.")
    return 0


def _model_rows(models: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            model.get("id"),
            model.get("name"),
            model.get("status"),
            model.get("price"),
            model.get("download_price"),
            model.get("version"),
            (model.get("input_schema") or {}).get("n_features"),
        ]
        for model in models
    ]


def cmd_models(session: Session) -> int:
    result = session.authed().models()
    if session.json:
        out_json(_page(result))
        return 0
    models = _items(result)
    if not models:
        out("No models.")
        return 0
    headers = ["ID", "NAME", "STATUS", "PRICE", "DOWNLOAD", "VERSION", "FEATURES"]
    out(table(headers, _model_rows(models), numeric=("PRICE", "DOWNLOAD", "VERSION", "FEATURES")))
    return 0


def cmd_model(session: Session) -> int:
    model = session.authed().model(session.args.model_id)
    if session.json:
        out_json(model)
        return 0
    schema = model.get("input_schema") or {}
    pairs: list[tuple[str, Any]] = [
        ("id", str(model.get("id"))),
        ("name", str(model.get("name"))),
        ("description", model.get("description") or "-"),
        ("status", str(model.get("status"))),
        ("reason", model.get("reason") or "-"),
        ("price", f"{credits(model.get('price'))} credits per row"),
        ("download price", _download_price(model.get("download_price"))),
        ("version", model.get("version")),
        ("owner", str(model.get("owner_id"))),
        ("created", utc(model.get("created_at"))),
        ("updated", utc(model.get("updated_at"))),
    ]
    if schema:
        pairs += [
            ("task", str(schema.get("task"))),
            ("estimator", str(schema.get("estimator"))),
            ("features", ", ".join(schema.get("feature_names") or []) or schema.get("n_features")),
            ("classes", ", ".join(map(str, schema.get("classes") or [])) or "-"),
        ]
    _fields(pairs)
    return 0


def _download_price(price: Any) -> str:
    return "not downloadable" if price is None else f"{credits(price)} credits per device"


def cmd_publish(session: Session) -> int:
    args = session.args
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}", "file_not_found")
    client = session.authed()
    with progress_bar(f"uploading {path.name}", then="checking the model...") as bar:
        model = client.publish(
            args.name, path, args.price, description=args.description, progress=bar
        )
    model_id = str(model["id"])
    if args.download_price is not None:
        model = client.update_model(model_id, download_price=args.download_price)
    if session.json:
        out_json(model)
        return 0
    out(f"Published {args.name} as {model_id}, version {model.get('version')}: ready.")
    out(f"Price {credits(model.get('price'))} credits per row.")
    if args.download_price is not None:
        out(f"Download price {_download_price(model.get('download_price'))}.")
    return 0


def cmd_predict(session: Session) -> int:
    args = session.args
    client = session.authed()
    path = Path(args.input)

    def feature_names() -> list[str] | None:
        schema = client.model(args.model_id).get("input_schema") or {}
        names = schema.get("feature_names")
        return list(names) if names else None

    rows = read_inputs(path, None if path.suffix.lower() == ".json" else _Lazy(feature_names))
    receipt = client.predict(args.model_id, rows)
    if session.json:
        out_json(receipt)
        return 0
    outputs = receipt.get("outputs") or []
    probabilities = receipt.get("probabilities")
    if probabilities:
        headers = ["ROW", "OUTPUT", "PROBABILITY"]
        pairs = zip(outputs, probabilities, strict=False)
        body = [[i + 1, o, max(p)] for i, (o, p) in enumerate(pairs)]
    else:
        headers, body = ["ROW", "OUTPUT"], [[i + 1, o] for i, o in enumerate(outputs)]
    out(table(headers, body, numeric=("ROW", "PROBABILITY")))
    out(
        f"Cost {credits(receipt.get('cost'))} credits; balance "
        f"{balance_of(receipt, 'balance')} credits (model version "
        f"{receipt.get('model_version')}, prediction {receipt.get('prediction_id')})."
    )
    return 0


class _Lazy(Sequence[str]):
    """The model's feature names, fetched only when a CSV has a header row to order."""

    def __init__(self, fetch: Callable[[], list[str] | None]) -> None:
        self._fetch = fetch
        self._names: list[str] | None = None
        self._fetched = False

    def _get(self) -> list[str]:
        if not self._fetched:
            self._names, self._fetched = self._fetch(), True
        return self._names or []

    def __bool__(self) -> bool:
        return bool(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, index: Any) -> Any:
        return self._get()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __contains__(self, name: object) -> bool:
        return name in self._get()


def cmd_predictions(session: Session) -> int:
    result = session.authed().predictions(limit=session.args.limit)
    if session.json:
        out_json(_page(result))
        return 0
    items = _items(result)
    if not items:
        out("No predictions yet.")
        return 0
    rows = [
        [
            item.get("id"),
            item.get("model_id"),
            item.get("model_version"),
            item.get("rows"),
            item.get("cost"),
            balance_of(item),
            utc(item.get("created_at")),
        ]
        for item in items
    ]
    headers = ["ID", "MODEL", "VERSION", "ROWS", "COST", "BALANCE AFTER", "CREATED"]
    out(table(headers, rows, numeric=("VERSION", "ROWS", "COST", "BALANCE AFTER")))
    return 0


def cmd_usage(session: Session) -> int:
    args = session.args
    query = {
        name: value
        for name, value in (
            ("from", args.date_from),
            ("to", args.date_to),
            ("group_by", args.group_by),
            ("scope", args.scope),
        )
        if value is not None
    }
    report = session.authed().usage(**query)
    if session.json:
        out_json(report)
        return 0
    by_model = report.get("group_by") == "model"
    out(
        f"Usage {report.get('from')} to {report.get('to')} (UTC days), "
        f"scope {report.get('scope')}, by {report.get('group_by')}"
    )
    headers = ["MODEL", "NAME"] if by_model else ["DAY"]
    headers += ["PREDICTIONS", "ROWS", "CREDITS"]
    rows = [
        [item.get("key"), *([item.get("model_name")] if by_model else []), *_counts(item)]
        for item in report.get("items") or []
    ]
    rows.append(["total", *([""] if by_model else []), *_counts(report.get("totals") or {})])
    out(table(headers, rows, numeric=("PREDICTIONS", "ROWS", "CREDITS")))
    return 0


def _counts(item: Mapping[str, Any]) -> list[Any]:
    return [item.get("predictions"), item.get("rows"), item.get("credits")]


def cmd_devices(session: Session) -> int:
    action = session.args.devices_action
    client = session.authed()
    if action == "add":
        device = client.register_device(session.args.name)
        if session.json:
            out_json(device)
        else:
            out(
                f"Registered this machine as device {device.get('name')} ({device.get('id')}); "
                "downloads here use it."
            )
        return 0
    if action == "remove":
        client.delete_device(session.args.device_id)
        if session.json:
            out_json({"id": session.args.device_id, "deleted": True})
        else:
            out(f"Removed device {session.args.device_id}.")
        return 0
    result = client.devices()
    if session.json:
        out_json(_page(result))
        return 0
    items = _items(result)
    if not items:
        out(f"No devices. Register this machine with `{PROG} devices add NAME`.")
        return 0
    rows = [[d.get("id"), d.get("name"), utc(d.get("created_at"))] for d in items]
    out(table(["ID", "NAME", "CREATED"], rows))
    return 0


def cmd_download(session: Session) -> int:
    args = session.args
    client = session.authed()
    with progress_bar("downloading the big part") as bar:
        result = client.download(args.model_id, version=args.version, progress=bar)
    if session.json:
        out_json(result)
        return 0
    size = _size(int(result.get("big_size") or 0))
    source = "read from the cache" if result.get("cached") else "downloaded"
    out(f"Model {result.get('model_id')} version {result.get('version')} for this device.")
    out(f"Big part ({size}) {source}: {result.get('big_path')}")
    out(
        f"Cost {credits(result.get('cost'))} credits; "
        f"balance {credits(result.get('balance'))} credits."
    )
    return 0


def cmd_api_keys(session: Session) -> int:
    """API keys are managed with the account's password: a key cannot make or list keys."""
    args = session.args
    client = session.with_password(args.email)
    if args.keys_action == "create":
        return _created_key(session, client.create_api_key(args.name))
    if args.keys_action == "revoke":
        client.revoke_api_key(args.key_id)
        stored = session.store.get(session.url)
        if stored is not None and stored.api_key_id == args.key_id:
            session.store.forget(session.url)  # that was this CLI's own login
        if session.json:
            out_json({"id": args.key_id, "revoked": True})
        else:
            out(f"Revoked API key {args.key_id}.")
        return 0
    result = client.api_keys()
    if session.json:
        out_json(_page(result))
        return 0
    rows = [
        [k.get("id"), k.get("name"), utc(k.get("created_at")), k.get("last_used_day") or "never"]
        for k in _items(result)
    ]
    out(table(["ID", "NAME", "CREATED", "LAST USED (UTC DAY)"], rows) if rows else "No API keys.")
    return 0


def _created_key(session: Session, created: Mapping[str, Any]) -> int:
    if session.json:
        out_json(created)
        return 0
    out(f"Created API key {created.get('name')} ({created.get('id')}).")
    out("Its secret is shown only this once; keep it somewhere safe:")
    out(f"  {created.get('key')}")
    return 0


# --- arguments -----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    if text.strip() == "0":
        return 0
    return _positive_int(text)


def _shared_options(defaults: bool) -> argparse.ArgumentParser:
    """--url and --json, accepted before and after the command. The subcommands' copies
    default to SUPPRESS so they do not overwrite a value given before the command."""
    shared = argparse.ArgumentParser(add_help=False)
    default: Any = None if defaults else argparse.SUPPRESS
    shared.add_argument(
        "--url", default=default, help="the API (default: $CREDITML_URL, else the last login's)"
    )
    shared.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="print the API's JSON, nothing else",
    )
    return shared


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_shared_options(True)],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = _shared_options(False)

    def command(name: str, run: Callable[[Session], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[shared], help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    login = command("login", cmd_login, "log in and keep an API key for this machine")
    how = login.add_mutually_exclusive_group(required=True)
    how.add_argument("--email", help="your account's email (password: $CREDITML_PASSWORD)")
    how.add_argument(
        "--api-key", action="store_true", help="log in with an API key ($CREDITML_API_KEY)"
    )
    command("logout", cmd_logout, "revoke this machine's API key and forget it")
    command("me", cmd_me, "who you are logged in as, and your balance")
    command("balance", cmd_balance, "your balance in credits")
    top_up = command("top-up", cmd_top_up, "buy credits (payment stub)")
    top_up.add_argument("amount", type=_positive_int, metavar="AMOUNT")
    command("models", cmd_models, "the models you can use")
    model = command("model", cmd_model, "one model: its price, status and input schema")
    model.add_argument("model_id", metavar="MODEL_ID")
    _publish_arguments(command("publish", cmd_publish, "upload a model file and wait for it"))
    predict = command("predict", cmd_predict, "predict with a model from a CSV or JSON file")
    predict.add_argument("model_id", metavar="MODEL_ID")
    predict.add_argument("--input", required=True, metavar="FILE.csv|FILE.json")
    predictions = command("predictions", cmd_predictions, "your latest predictions")
    predictions.add_argument("--limit", type=_positive_int, default=None)
    _usage_arguments(command("usage", cmd_usage, "credits spent (or earned), per day or model"))
    _devices_arguments(command("devices", cmd_devices, "this account's devices"), shared)
    download = command("download", cmd_download, "download a model to this device")
    download.add_argument("model_id", metavar="MODEL_ID")
    download.add_argument("--version", type=_positive_int, default=None)
    _keys_arguments(command("api-keys", cmd_api_keys, "list, create or revoke API keys"), shared)
    return parser


def _publish_arguments(publish: argparse.ArgumentParser) -> None:
    publish.add_argument("file", metavar="FILE", help="a joblib/pickle file of a fitted model")
    publish.add_argument("--name", required=True)
    publish.add_argument("--price", required=True, type=_positive_int, help="credits per row")
    publish.add_argument("--description", default=None)
    publish.add_argument(
        "--download-price",
        type=_non_negative_int,
        default=None,
        help="credits others pay to download it to a device (default: not downloadable)",
    )


def _usage_arguments(usage: argparse.ArgumentParser) -> None:
    usage.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", default=None)
    usage.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", default=None)
    usage.add_argument("--group-by", choices=("day", "model"), default=None)
    usage.add_argument("--scope", choices=("own", "published", "all"), default=None)


def _devices_arguments(devices: argparse.ArgumentParser, shared: argparse.ArgumentParser) -> None:
    actions = devices.add_subparsers(dest="devices_action", metavar="ACTION")
    add = actions.add_parser("add", parents=[shared], help="register this machine as a device")
    add.add_argument("name", metavar="NAME")
    remove = actions.add_parser("remove", parents=[shared], help="delete a device")
    remove.add_argument("device_id", metavar="ID")


def _keys_arguments(keys: argparse.ArgumentParser, shared: argparse.ArgumentParser) -> None:
    keys.add_argument("--email", default=None, help="the account (default: the logged-in one)")
    actions = keys.add_subparsers(dest="keys_action", metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[shared], help="create a key (its secret is shown once)"
    )
    create.add_argument("name", metavar="NAME")
    revoke = actions.add_parser("revoke", parents=[shared], help="revoke a key")
    revoke.add_argument("key_id", metavar="ID")


# --- errors and the entry point ------------------------------------------------------------


def describe(error: BaseException) -> str:
    """The one line an error becomes: `<what happened> (<code>)`."""
    if isinstance(error, CreditMLError):
        return _describe_client_error(error)
    if isinstance(error, CliError):
        return f"{error.message} ({error.code})" if error.code else error.message
    if isinstance(error, EOFError):
        return "no input: the prompt reached the end of its input (no_input)"
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"no such file: {error.filename}"
    if isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror or error}{where}"
    return str(error)


def _describe_client_error(error: CreditMLError) -> str:
    if isinstance(error, TransportFailed):
        return f"cannot reach the server: {error} (transport_failed)"
    if isinstance(error, InsufficientCredits):
        return (
            f"insufficient credits: balance {credits(error.balance)}, "
            f"required {credits(error.required)} ({error.code})"
        )
    if isinstance(error, ValidationFailed):
        fields = "; ".join(
            f"{item.get('field', '?')}: {item.get('message', '')}"
            for item in (error.errors or [])
            if isinstance(item, dict)
        )
        return f"{error.detail}{': ' + fields if fields else ''} ({error.code})"
    if isinstance(error, ApiError):
        return f"{error.detail or 'request failed'} ({error.code or error.status})"
    if isinstance(error, DeviceNotRegistered):
        return f"this machine is no device yet: run `{PROG} devices add NAME` first"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.run(Session(args))
        sys.stdout.flush()
        return int(result)
    except KeyboardInterrupt:
        err("")
        return 130
    except BrokenPipeError:
        # stdout went away (`| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CliError, CreditMLError, OSError, ValueError, EOFError) as error:
        err(f"error: {describe(error)}")
        return 1
    except Exception as error:  # noqa: BLE001 - one line, never a traceback (an odd answer)
        err(f"error: unexpected answer or failure ({type(error).__name__}) (unexpected)")
        return 1
