"""Names and descriptions refuse characters that hide or reorder what people read."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from creditml.auth.emails import canonical_email
from creditml.text import SafeName, SafeText, unsafe_characters
from tests.text_forms import fullwidth

BIDI = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]


class _Model(BaseModel):
    name: SafeName
    description: SafeText | None = None


@pytest.mark.parametrize("char", BIDI, ids=lambda c: f"U+{ord(c):04X}")
def test_every_bidi_control_is_refused_in_names_and_descriptions(char: str) -> None:
    with pytest.raises(ValidationError, match=f"U\\+{ord(char):04X}"):
        _Model(name=f"iris{char}-demo")
    with pytest.raises(ValidationError):
        _Model(name="iris", description=f"safe {char}txt.exe")


@pytest.mark.parametrize(
    "char",
    [
        "\x00",  # NUL
        "\x1b",  # ESC: terminal escape sequences
        "\x7f",  # DEL
        "\x85",  # NEL, a C1 control
        "\r",
        "\u200b",  # zero-width space
        "\u200e",  # left-to-right mark
        "\u2060",  # word joiner
        "\ufeff",  # byte-order mark
        "\u00ad",  # soft hyphen
        "\U000e0041",  # TAG LATIN CAPITAL LETTER A: invisible text
        "\u2028",  # line separator
        "\u2029",  # paragraph separator
        "\ud800",  # a lone surrogate
    ],
    ids=lambda c: f"U+{ord(c):04X}",
)
def test_control_and_invisible_format_characters_are_refused(char: str) -> None:
    assert unsafe_characters(f"a{char}b", multiline=True) == [f"U+{ord(char):04X}"]


def test_descriptions_keep_newlines_and_tabs_names_do_not() -> None:
    assert _Model(name="iris", description="line one\n\tline two").description
    with pytest.raises(ValidationError):
        _Model(name="iris\ndemo")


@pytest.mark.parametrize(
    "text",
    [
        "iris-demo v2 (sklearn)",
        "D\u00e9j\u00e0 vu, na\u00efve Bayes, \u6771\u4eac",  # other scripts
        "\u0645\u0631\u062d\u0628\u0627 model",  # RTL letters, no controls
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # ZWNJ, needed in Persian
        "\U0001f469\u200d\U0001f4bb classifier",  # ZWJ emoji sequence
        "\u00a0non-breaking",
    ],
)
def test_ordinary_text_of_any_script_passes(text: str) -> None:
    assert _Model(name=text, description=text).name == text


def test_each_refused_character_is_named_once() -> None:
    assert unsafe_characters("\u202e\u202e\x00") == ["U+202E", "U+0000"]


@pytest.mark.parametrize(
    ("email", "canonical"),
    [
        ("Bob@Example.COM", "bob@example.com"),
        (fullwidth("bob@example") + ".com", "bob@example.com"),
        ("\u212aim@example.com", "kim@example.com"),
        ("STRA\u1e9eE@example.com", "strasse@example.com"),
        ("cafe\u0301@example.com", "café@example.com"),
        ("  pad@example.com ", "pad@example.com"),
    ],
)
def test_canonical_email(email: str, canonical: str) -> None:
    assert canonical_email(email) == canonical


def test_ascii_emails_keep_the_key_they_had_before_nfkc() -> None:
    # Stored claims are keyed by casefold(); for ASCII the canonical key is the same.
    ascii_chars = "".join(chr(c) for c in range(0x21, 0x7F))
    assert canonical_email(ascii_chars) == ascii_chars.casefold() == ascii_chars.lower()
