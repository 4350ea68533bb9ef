"""Ledger page cursors: opaque, strict, and never skipping an entry that shares its
sequence with the last one shown (two overlapping writes can share one)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from creditml.billing.entries import SEEN_ID_CHARS, EntryKind, LedgerEntry, PageStart
from creditml.billing.service import MAX_SEEN, decode_cursor, encode_cursor
from creditml.errors import InvalidCursor


def _entry(entry_id: str, sequence: int) -> LedgerEntry:
    return LedgerEntry(
        id=entry_id,
        account_id="u1",
        sequence=sequence,
        kind=EntryKind.DEBIT,
        amount=-1,
        balance_after=0,
        created_at=datetime.now(UTC),
        actor_id="u1",
        idempotency_key="k",
    )


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_cursor_round_trips_with_the_entries_already_shown() -> None:
    start = PageStart(1_796_000_000_000_123, ("a" * SEEN_ID_CHARS, "b" * SEEN_ID_CHARS))
    assert decode_cursor(encode_cursor(start)) == start
    assert len(encode_cursor(start)) < 128


def test_the_next_page_starts_at_the_last_sequence_shown_and_skips_what_was_shown() -> None:
    page = [_entry("c" * 32, 30), _entry("d" * 32, 20), _entry("e" * 32, 20)]
    start = PageStart.after(page, None)
    assert start == PageStart(20, ("d" * SEEN_ID_CHARS, "e" * SEEN_ID_CHARS))
    assert start.skips(_entry("d" * 32, 20))
    assert not start.skips(_entry("f" * 32, 20))  # same sequence, not shown yet: listed
    assert not start.skips(_entry("d" * 32, 19))


def test_a_page_made_only_of_one_sequence_keeps_what_earlier_pages_showed() -> None:
    first = PageStart(20, ("d" * SEEN_ID_CHARS,))
    then = PageStart.after([_entry("e" * 32, 20)], first)
    assert then.seen == ("d" * SEEN_ID_CHARS, "e" * SEEN_ID_CHARS)


def test_cursors_of_earlier_versions_still_work() -> None:
    assert decode_cursor(_b64("v1:42")) == PageStart(41)


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        _b64("v3:42:"),
        _b64("v2:x:"),
        _b64("v2:-1:"),
        _b64("v1:0"),
        _b64("v1:42:" + "a" * SEEN_ID_CHARS),
        _b64("v2:42:short"),
        _b64("v2:42:" + "a" * (SEEN_ID_CHARS - 1) + "/"),
        _b64("v2:42:" + ".".join(["a" * SEEN_ID_CHARS] * (MAX_SEEN + 1))),
    ],
)
def test_anything_else_is_an_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
