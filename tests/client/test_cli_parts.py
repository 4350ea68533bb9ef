"""The CLI's pieces that need no server: input files, tables, the credentials file."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from creditml_client.cli import (
    CliError,
    CredentialStore,
    Login,
    ProgressBar,
    balance_of,
    describe,
    normalize_url,
    read_inputs,
    table,
    utc,
)
from creditml_client.errors import InsufficientCredits, TransportFailed, ValidationFailed

pytestmark = pytest.mark.unit

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_csv_header_is_put_in_the_models_feature_order(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "rows.csv",
        "petal_width,sepal_length,petal_length,sepal_width\n0.2,5.1,1.4,3.5\n2.3,6.7,5.2,3.0\n",
    )
    assert read_inputs(path, FEATURES) == [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def test_a_csv_without_header_is_sent_as_it_is(tmp_path: Path) -> None:
    path = _file(tmp_path, "rows.csv", "5.1,3.5,1.4,0.2\n\n6,3,5,2\n")
    assert read_inputs(path, FEATURES) == [[5.1, 3.5, 1.4, 0.2], [6, 3, 5, 2]]


def test_a_header_is_kept_in_file_order_for_a_model_without_feature_names(
    tmp_path: Path,
) -> None:
    path = _file(tmp_path, "rows.csv", "b,a\n1,2\n")
    assert read_inputs(path, None) == [[1, 2]]


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes("\ufeffpetal_width,sepal_length,petal_length,sepal_width\n1,2,3,4\n".encode())
    assert read_inputs(path, FEATURES) == [[2, 4, 3, 1]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sepal_length,sepal_width,petal_length\n1,2,3\n", "missing column(s) petal_width"),
        ("sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,4,x\n", "species"),
        ("sepal_length,sepal_width,petal_length,petal_width\n1,2,3\n", "line 2 has 3 values"),
        ("sepal_length,sepal_width,petal_length,petal_width\n1,2,x,4\n", "line 2, column 3"),
        ("1,2,3,4\n1,2,nan,4\n", "line 2, column 3: not finite"),
        ("a,a\n1,2\n", "names a column twice"),
    ],
)
def test_bad_csv_files_are_named_precisely(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(CliError, match=r"rows\.csv") as raised:
        read_inputs(_file(tmp_path, "rows.csv", text), FEATURES)
    assert expected in raised.value.message


@pytest.mark.parametrize(
    "document", [[[1, 2, 3, 4]], {"inputs": [[1, 2, 3, 4]]}, [{"sepal_length": 1}]]
)
def test_json_is_a_list_of_rows_or_an_inputs_object(tmp_path: Path, document: object) -> None:
    path = _file(tmp_path, "rows.json", json.dumps(document))
    expected = document["inputs"] if isinstance(document, dict) else document
    assert read_inputs(path, FEATURES) == expected


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("rows.json", "{", "not valid JSON"),
        ("rows.json", '{"rows": []}', "expected a list of rows"),
        ("rows.json", "[]", "no rows"),
        ("rows.txt", "1,2", "takes a .csv or .json file"),
    ],
)
def test_bad_json_and_other_files_are_refused(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(CliError) as raised:
        read_inputs(_file(tmp_path, name, text), FEATURES)
    assert expected in raised.value.message


def test_a_missing_input_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CliError) as raised:
        read_inputs(tmp_path / "nope.csv", FEATURES)
    assert raised.value.message == f"no such file: {tmp_path / 'nope.csv'}"


def test_tables_align_and_separate_thousands() -> None:
    text = table(["NAME", "CREDITS"], [["a", 1234567], ["longer", 5]], numeric=("CREDITS",))
    assert text.splitlines() == [
        "NAME      CREDITS",
        "a       1,234,567",
        "longer          5",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:34:56.789Z", "2024-05-01 12:34:56 UTC"),
        ("2024-05-01T14:34:56+02:00", "2024-05-01 12:34:56 UTC"),
        ("2024-05-01T12:34:56", "2024-05-01 12:34:56 UTC"),
        (None, "-"),
    ],
)
def test_dates_are_shown_in_utc_and_say_so(value: str | None, expected: str) -> None:
    assert utc(value) == expected


def test_a_lower_bound_balance_says_so() -> None:
    assert balance_of({"balance_after": 1234}) == "1,234"
    assert balance_of({"balance_after": 1234, "balance_exact": True}) == "1,234"
    assert balance_of({"balance_after": 1234, "balance_exact": False}) == ">=1,234"
    assert balance_of({"balance": 7, "balance_exact": False}, "balance") == ">=7"


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    stream = io.StringIO()
    bar = ProgressBar("uploading", stream, enabled=True)
    for done in (0, 512, 512, 1024):
        bar(done, 1024)
    bar.finish()
    drawn = stream.getvalue()
    assert drawn.count("\r") == 3  # the repeated 512 is not drawn again
    assert "100% 1.0 KB/1.0 KB" in drawn
    assert drawn.endswith("\n")
    waiting = io.StringIO()
    then = ProgressBar("uploading", waiting, enabled=True, then="checking the model...")
    then(2, 2)
    then(2, 2)
    then.finish()
    assert waiting.getvalue().endswith("2 B/2 B\nchecking the model...\n")
    quiet = io.StringIO()
    silent = ProgressBar("uploading", quiet, enabled=False)
    silent(1, 2)
    silent.finish()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("HTTP://Example.com:3000/", "http://example.com:3000"),
        ("https://a.b/api/", "https://a.b/api"),
    ],
)
def test_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    "given", ["ftp://example.com", "example.com", "http://", "http://[::1", "http://a:99999"]
)
def test_anything_but_http_urls_is_refused(given: str) -> None:
    with pytest.raises(CliError, match="not an http"):
        normalize_url(given)


def test_credentials_are_private_and_kept_per_url(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    store = CredentialStore(folder)
    first = Login("http://a", "a@example.com", "cml_a", "k1")
    second = Login("http://b", None, "cml_b", None)
    store.put(first)
    store.put(second)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert (store.get("http://a"), store.current_url()) == (first, "http://b")
    store.forget("http://b")
    assert (store.get("http://b"), store.current_url()) == (None, "http://b")


def test_a_damaged_credentials_file_is_one_clear_error(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(CliError, match="not valid JSON"):
        store.get("http://a")


def test_errors_become_one_line_with_their_code() -> None:
    broke = InsufficientCredits(
        402, "insufficient_credits", "Not enough credits", {"balance": 1500, "required": 2000}
    )
    assert describe(broke) == (
        "insufficient credits: balance 1,500, required 2,000 (insufficient_credits)"
    )
    invalid = ValidationFailed(
        422,
        "validation_error",
        "Invalid request",
        {"errors": [{"field": "body.amount", "message": "too big", "type": "x"}]},
    )
    assert describe(invalid) == "Invalid request: body.amount: too big (validation_error)"
    lost = TransportFailed("connection refused", "http://127.0.0.1:9")
    assert describe(lost) == "cannot reach the server: connection refused (transport_failed)"
    assert describe(FileNotFoundError(2, "No such file", "x.joblib")) == "no such file: x.joblib"
