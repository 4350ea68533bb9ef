"""The prediction service: charged if and only if delivered.

    authenticate -> validate rows -> load model (warm: cache) -> predict
    -> ONE transaction: debit rows x price + ledger entry (= the prediction record),
       conditioned on the model still serving that version at that price
    -> receipt {prediction_id, outputs, probabilities?, cost, balance, model_version}

Validation errors, unknown/unready/archived models and load or predict failures happen
before any write, so they cost nothing. A replay (same Idempotency-Key, same body) returns
the stored receipt; the same key with another body is refused. Warm, a prediction makes one
DynamoDB call and no S3/KMS call: model metadata and models are cached per container, and
the transaction itself proves the cached price and version are still current.
"""

from __future__ import annotations

import sys
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.billing.entries import (
    IdempotencySlot,
    LedgerEntry,
    ModelStillServing,
    PageStart,
    request_fingerprint,
)
from creditml.billing.ledger import Ledger, PreconditionNotMet
from creditml.errors import (
    DomainError,
    IdempotencyKeyReused,
    InsufficientCredits,
    ModelArchived,
    ModelNotFound,
    ModelNotReady,
    ModelUnavailable,
    NonFiniteOutput,
    PredictionFailed,
    ServiceUnavailable,
)
from creditml.models.records import Model
from creditml.models.schema import ModelSchema
from creditml.predictions.history import (
    EntryReader,
    OutputStore,
    PredictionHistory,
    PredictionNotFound,
)
from creditml.predictions.inputs import dumps, parse_body, parse_rows, to_json_values
from creditml.predictions.schemas import PredictionPublic, Receipt

MAX_PRECONDITION_RETRIES = 3

# Models fitted on named columns warn on every call given a plain matrix, which is how rows
# always reach them (names are checked against the schema first). A process-wide filter,
# set once: `warnings.catch_warnings()` per call is not thread-safe, and leaked the warning
# when the local stack served predictions concurrently.
warnings.filterwarnings(
    "ignore", message="X does not have valid feature names", category=UserWarning
)


class ModelDirectory(Protocol):
    def head(self, model_id: str) -> Model: ...


class ModelSource(Protocol):
    def load(self, model_id: str, version: int) -> tuple[Any, bool]: ...


class PredictionService:
    def __init__(
        self,
        models: ModelDirectory,
        loader: ModelSource,
        ledger: Ledger,
        entries: EntryReader,
        outputs: OutputStore,
        max_rows: int,
        max_request_bytes: int,
        inline_outputs_bytes: int,
        clock: Callable[[], float] = time.perf_counter,
        observe: Callable[[str, float], None] = lambda name, value: None,
    ) -> None:
        self._models = models
        self._observe = observe  # business metrics (name, value); a no-op by default
        self._loader = loader
        self._ledger = ledger
        self._entries = entries
        self._outputs = outputs
        self._max_rows = max_rows
        self._max_request_bytes = max_request_bytes
        self._inline_outputs_bytes = inline_outputs_bytes
        self._clock = clock
        self._heads: dict[str, Model] = {}
        self._history = PredictionHistory(entries, outputs)

    def predict(
        self, caller: AccessClaims, model_id: str, body: bytes, idempotency_key: str
    ) -> tuple[Receipt, bool]:
        """Predict and charge. Returns the receipt and whether it replays an earlier one."""
        document = parse_body(body, self._max_request_bytes)
        slot = IdempotencySlot.of(caller.user_id, idempotency_key)
        # The exact bytes identify the request: a retry resends them as they were.
        fingerprint = request_fingerprint("predict", model_id.encode() + b"\n" + body)
        for _ in range(MAX_PRECONDITION_RETRIES):
            try:
                model, schema = self._serving_model(caller, model_id)
                rows = parse_rows(document, schema, self._max_rows)
                outputs, probabilities, latency_ms = self._run(model, rows)
            except DomainError:
                # The model may have changed since this key was charged (archived, new
                # version, new schema): a retry of that request still gets its receipt, not
                # an error. One read, only on error paths.
                charged = self._charged(slot, fingerprint)
                if charged is not None:
                    return self._receipt(charged), True
                raise
            cost = len(rows) * model.price
            try:
                entry, replayed = self._charge(
                    slot, model, cost, len(rows), outputs, probabilities, latency_ms, fingerprint
                )
            except InsufficientCredits:
                self._observe("InsufficientCredits", 1)
                raise
            except PreconditionNotMet:
                # Price, version or status changed since this container cached the model.
                self._heads.pop(model_id, None)
                continue
            if replayed:  # the stored receipt, outputs as first delivered
                return self._receipt(entry), True
            self._observe("Predictions", 1)
            self._observe("PredictedRows", len(rows))
            self._observe("CreditsDebited", cost)
            return Receipt(
                prediction_id=entry.id,
                outputs=outputs,
                probabilities=probabilities,
                cost=cost,
                balance=entry.balance_after,
                balance_exact=entry.balance_exact,
                model_version=model.serving_version,
            ), False
        raise ModelUnavailable("The model kept changing while predicting; retry.")

    def _serving_model(self, caller: AccessClaims, model_id: str) -> tuple[Model, ModelSchema]:
        """The model as this container last saw it serving, and the schema its rows must fit;
        ModelArchived when it was archived and ModelNotReady when it has never served, to
        its owner and admins; ModelNotFound to everyone else (an unpublished model does not
        exist for them, as on GET /models/{id}). Metadata is cached per container: the
        charge's transaction re-checks it."""
        model = self._heads.get(model_id)
        if model is None:
            model = self._models.head(model_id)
        if model.archived or model.serving_version is None or model.serving_schema is None:
            self._heads.pop(model_id, None)
            # Archived or unpublished, another's model does not exist for the caller (no
            # existence oracle: the same 404 as an id that never existed).
            if caller.role is not Role.ADMIN and caller.user_id != model.owner_id:
                raise ModelNotFound()
            if model.archived:
                raise ModelArchived()
            raise ModelNotReady()
        self._heads[model_id] = model
        return model, model.serving_schema

    def _charged(self, slot: IdempotencySlot, fingerprint: str) -> LedgerEntry | None:
        """The entry this key already charged (None if none); IdempotencyKeyReused when it
        charged another request."""
        taken = self._entries.slot(slot.actor_id, slot.entry_id)
        if taken is None:
            return None
        entry, stored = taken
        if stored != fingerprint:
            raise IdempotencyKeyReused()
        return entry

    def _run(self, model: Model, rows: Any) -> tuple[list[Any], list[list[float]] | None, float]:
        assert model.serving_version is not None
        loading = self._clock()
        try:
            estimator, cached = self._loader.load(model.id, model.serving_version)
        except ServiceUnavailable:  # throttled or failing on AWS's side: a 503, retry
            raise
        except Exception as exc:  # any other load failure: no charge, a clear 500
            raise ModelUnavailable() from exc
        if not cached:
            self._observe("ModelCacheMisses", 1)
            self._observe("ModelLoadTime", (self._clock() - loading) * 1000)
        started = self._clock()
        # Finite inputs can still leave float range inside the model (a scaler turning
        # 1e308 into inf, inf - inf into NaN). numpy reports each such step here (per
        # thread/context), so a failure it caused is the inputs' fault (422), not the
        # model's (500); either way, nothing is charged.
        overflows: list[str] = []
        try:
            with np.errstate(
                over="call", invalid="call", call=lambda kind, _: overflows.append(kind)
            ):
                predicted, probable = _predict(
                    estimator,
                    rows,
                    bool(model.serving_schema and model.serving_schema.probabilities),
                )
        except Exception as exc:  # the model's own failure: no charge
            if overflows:
                raise NonFiniteOutput() from exc
            raise PredictionFailed() from exc
        outputs = to_json_values(predicted)  # NonFiniteOutput for inf/NaN: no charge
        probabilities = None if probable is None else to_json_values(probable)
        return outputs, probabilities, round((self._clock() - started) * 1000, 3)

    def _charge(
        self,
        slot: IdempotencySlot,
        model: Model,
        cost: int,
        rows: int,
        outputs: list[Any],
        probabilities: list[list[float]] | None,
        latency_ms: float,
        fingerprint: str,
    ) -> tuple[LedgerEntry, bool]:
        assert model.serving_version is not None
        result = {"outputs": outputs, "probabilities": probabilities}
        details: dict[str, Any] = {
            "model_id": model.id,
            "model_version": model.serving_version,
            "rows": rows,
            "price": model.price,
            "latency_ms": latency_ms,
        }
        encoded = dumps(result)
        stored_key = None
        if len(encoded) <= self._inline_outputs_bytes:
            details["result"] = result
        else:
            # A key of this attempt's own: a concurrent or later attempt with the same
            # Idempotency-Key can never overwrite or delete the outputs of the charged one.
            stored_key = self._outputs.key(slot.actor_id, f"{slot.entry_id}/{uuid.uuid4().hex}")
            self._outputs.put(stored_key, encoded)
            details["result_key"] = stored_key
        try:
            entry, replayed = self._ledger.debit(
                slot.actor_id,
                cost,
                slot=slot,
                request=fingerprint,
                details=details,
                precondition=ModelStillServing(model.id, model.price, model.serving_version),
            )
        except (InsufficientCredits, IdempotencyKeyReused, PreconditionNotMet):
            # Definitely not written: this attempt's outputs belong to nothing. (After any
            # other error the write may have committed, so they stay.)
            if stored_key is not None:
                self._outputs.delete(stored_key)
            raise
        if replayed and stored_key is not None and entry.details.get("result_key") != stored_key:
            # The stored receipt points at its own outputs. (It may point at this attempt's:
            # when the SDK retried a write whose reply was lost, the "replay" is our own.)
            self._outputs.delete(stored_key)
        return entry, replayed

    def _result(self, entry: LedgerEntry) -> dict[str, Any]:
        return self._history.result(entry)

    def _receipt(self, entry: LedgerEntry) -> Receipt:
        result = self._result(entry)
        return Receipt(
            prediction_id=entry.id,
            outputs=result["outputs"],
            probabilities=result.get("probabilities"),
            cost=-entry.amount,
            balance=entry.balance_after,
            balance_exact=entry.balance_exact,
            model_version=int(entry.details["model_version"]),
        )

    def history(
        self, caller: AccessClaims, limit: int, start: PageStart | None
    ) -> tuple[list[PredictionPublic], PageStart | None]:
        """The caller's predictions, newest first, and where the next page starts."""
        return self._history.page(caller.user_id, limit, start)

    def show(self, caller: AccessClaims, prediction_id: str) -> PredictionPublic:
        return self._history.show(caller.user_id, prediction_id)


def _predict(estimator: Any, rows: Any, probabilities: bool) -> tuple[Any, Any]:
    """The estimator's predict (and predict_proba): a version served by ONNX answers both
    from one session run. (Looked up, not imported: only the predict function ships ONNX
    Runtime, and no OnnxModel exists unless its module was loaded.)"""
    serving = sys.modules.get("creditml.models.onnx_runtime")
    if serving is not None and isinstance(estimator, serving.OnnxModel):
        predicted, probable = estimator.run(rows)
        return predicted, probable if probabilities else None
    return estimator.predict(rows), estimator.predict_proba(rows) if probabilities else None


__all__ = ["PredictionNotFound", "PredictionService"]
