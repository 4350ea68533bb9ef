"""Text that people read: names and descriptions must not carry characters that hide or
reorder what is shown (bidi controls, "Trojan Source", CVE-2021-42574) or that act on
terminals and logs (control characters).

Refused, with the code points named:
- Cc, control characters (NUL, ESC, DEL, C1 controls, ...); multi-line text keeps \\n and \\t;
- Cf, format characters: the bidi embeddings, overrides and isolates (U+202A-U+202E,
  U+2066-U+2069), the bidi marks, zero-width space, word joiner and invisible operators,
  the byte-order mark, soft hyphen, interlinear annotations and the tag characters
  (U+E0000-U+E007F, invisible "ASCII smuggling"), except ZWNJ (U+200C) and ZWJ (U+200D),
  which Persian, Indic scripts and emoji sequences need and which reorder nothing;
- Zl, Zp, the line and paragraph separators (U+2028, U+2029), newlines in disguise;
- Cs, lone surrogates (JSON's "\\ud800" escapes reach Python as such).

Use `SafeName` (one line) and `SafeText` (multi-line) as Pydantic field types.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})
_MULTILINE_WHITESPACE = frozenset({"\n", "\t"})


def unsafe_characters(text: str, *, multiline: bool = False) -> list[str]:
    """The refused characters of `text` as code points ("U+202E"), in order, each once."""
    allowed = _ALLOWED_FORMAT | (_MULTILINE_WHITESPACE if multiline else frozenset())
    found: dict[str, None] = {}
    for char in text:
        if char not in allowed and unicodedata.category(char) in _REFUSED_CATEGORIES:
            found[f"U+{ord(char):04X}"] = None
    return list(found)


def check_safe_text(text: str, *, multiline: bool = False) -> str:
    """`text` unchanged when it holds no refused character; ValueError naming them (a 422
    at the API boundary) otherwise."""
    unsafe = unsafe_characters(text, multiline=multiline)
    if unsafe:
        shown = ", ".join(unsafe[:5])
        raise ValueError(f"must not contain control or invisible formatting characters ({shown})")
    return text


def _single_line(text: str) -> str:
    return check_safe_text(text)


def _multi_line(text: str) -> str:
    return check_safe_text(text, multiline=True)


SafeName = Annotated[str, AfterValidator(_single_line)]
"""A one-line string shown to people: no control or dangerous format characters."""

SafeText = Annotated[str, AfterValidator(_multi_line)]
"""Like SafeName, but line feeds and tabs are allowed (descriptions)."""
