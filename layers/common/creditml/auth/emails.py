"""The canonical form of an email address, under which it is unique.

NFKC folds compatibility forms onto their plain ones (fullwidth letters onto ASCII ones, the "fi"
ligature onto "f" + "i", mathematical letters), case folding ignores letter case the Unicode way
("ß" ~ "ss", "K" Kelvin sign ~ "k"); NFKC again after folding, because folding can leave a
string that NFKC would change further (Unicode's NFKC_Casefold does the same). For an
all-ASCII address this is exactly `lower()`, so the claims stored before (keyed by
`casefold()`) keep matching for every ASCII address. Invisible characters are refused at
registration instead (an address with a zero-width space looks like one without).
Confusable letters of other scripts (a Cyrillic "a" for a Latin one) are not folded: NFKC
does not map them, and a skeleton mapping (UTS #39) would also merge legitimate addresses.
"""

from __future__ import annotations

import unicodedata

# Characters that show nothing (or only space) and would let two addresses look alike:
# controls, format characters (ZWJ and ZWNJ included), surrogates, separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"})


def canonical_email(email: str) -> str:
    """The key under which `email` is unique: NFKC, case folded, NFKC again, trimmed."""
    folded = unicodedata.normalize("NFKC", email.strip()).casefold()
    return unicodedata.normalize("NFKC", folded)


def legacy_email_key(email: str) -> str:
    """The key claims were stored under before NFKC (case fold only); differs from
    canonical_email only for some non-ASCII addresses."""
    return email.strip().casefold()


def has_invisible_characters(email: str) -> bool:
    """Whether `email` holds a character that shows nothing (registration refuses it)."""
    return any(unicodedata.category(char) in _INVISIBLE for char in email)
