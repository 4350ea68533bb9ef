"""A caller's predictions as their ledger records them: the history pages and one
prediction with its outputs. No ML here: the web function reads history without the ML
layer, and the predict function serves the same answers through PredictionService."""

from __future__ import annotations

import json
from typing import Any, Protocol

from creditml.billing.entries import EntryKind, LedgerEntry, PageStart
from creditml.errors import ModelNotFound
from creditml.predictions.schemas import PredictionPublic


class OutputStore(Protocol):
    def key(self, user_id: str, prediction_id: str) -> str: ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...


class EntryReader(Protocol):
    def entry(self, account_id: str, entry_id: str) -> LedgerEntry | None: ...

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None: ...

    def entries(
        self, account_id: str, limit: int, start: PageStart | None, kind: EntryKind | None = None
    ) -> list[LedgerEntry]: ...


class PredictionNotFound(ModelNotFound):
    code = "prediction_not_found"
    title = "Prediction not found"


class PredictionHistory:
    """Predictions are debit entries of the caller's ledger; large outputs live in S3."""

    def __init__(self, entries: EntryReader, outputs: OutputStore) -> None:
        self._entries = entries
        self._outputs = outputs

    def page(
        self, user_id: str, limit: int, start: PageStart | None
    ) -> tuple[list[PredictionPublic], PageStart | None]:
        """`user_id`'s predictions, newest first, and where the next page starts (None
        after the last page)."""
        entries = self._entries.entries(user_id, limit, start, EntryKind.DEBIT)
        following = PageStart.after(entries, start) if len(entries) == limit else None
        return [self.public(entry, with_outputs=False) for entry in entries], following

    def show(self, user_id: str, prediction_id: str) -> PredictionPublic:
        """One of `user_id`'s predictions with its outputs; PredictionNotFound otherwise."""
        entry = self._entries.entry(user_id, prediction_id)
        if entry is None or entry.kind is not EntryKind.DEBIT:
            raise PredictionNotFound()
        return self.public(entry, with_outputs=True)

    def result(self, entry: LedgerEntry) -> dict[str, Any]:
        """The outputs (and probabilities) a debit entry recorded, inline or in S3."""
        if "result" in entry.details:
            result: dict[str, Any] = entry.details["result"]
            return result
        stored: dict[str, Any] = json.loads(self._outputs.get(entry.details["result_key"]))
        return stored

    def public(self, entry: LedgerEntry, with_outputs: bool) -> PredictionPublic:
        details = entry.details
        result = self.result(entry) if with_outputs else {}
        return PredictionPublic(
            id=entry.id,
            model_id=str(details["model_id"]),
            model_version=int(details["model_version"]),
            rows=int(details["rows"]),
            cost=-entry.amount,
            balance_after=entry.balance_after,
            balance_exact=entry.balance_exact,
            created_at=entry.created_at,
            latency_ms=float(details.get("latency_ms", 0.0)),
            outputs=result.get("outputs"),
            probabilities=result.get("probabilities"),
        )
