"""Unicode spellings for tests, written as escapes or built from ASCII so the sources stay
free of look-alike characters."""

from __future__ import annotations


def fullwidth(ascii_text: str) -> str:
    """The same text in fullwidth forms (U+FF01-U+FF5E), which NFKC maps back to ASCII."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in ascii_text)
