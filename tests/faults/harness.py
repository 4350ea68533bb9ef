"""The money scenarios the fault suite drives: top-ups, grants and predictions through the
real handlers (API Gateway events, as Lambda receives them), and the checks every answer and
the ledger must pass whatever failed underneath."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from creditml.billing.verify import verify_ledger
from creditml.composition import forget_components
from creditml.composition.core import ledger_repository
from creditml.devstack import runtime
from creditml.devstack.gateway import to_http_response
from creditml.devstack.template import Template
from tests.conftest import load_event, with_body
from tests.faults import injector

PROBLEM_JSON = "application/problem+json"
ROW = [0.3, -1.2, 0.8, 0.1]
PRICE = 2  # the model's price per row
START = 1000  # the user's credits at the start
# Rows whose outputs and probabilities are too big to keep inline on the ledger entry
# (INLINE_OUTPUTS_BYTES): they go to the outputs bucket.
BIG_ROWS = 150


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed") == "true"


class Money:
    """Calls the billing and predict functions' handlers as one client would."""

    def __init__(self, template: Template) -> None:
        self._template = template

    def call(self, function: str, event: dict[str, Any]) -> Answer:
        response = runtime.invoke(self._template.functions[function], event)
        plan = injector.armed()
        if plan is not None and plan.killed:
            # Mangum answers a BaseException with a bare 500; a dead process answers nothing.
            plan.killed = False
            raise injector.ContainerKilled("the function's process died before replying")
        status, headers, raw = to_http_response(response)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        return Answer(status, headers, body, raw)

    def top_up(self, token: str, amount: int, key: str) -> Answer:
        event = load_event("billing_top_up", access_token=token, idempotency_key=key)
        return self.call("BillingFunction", with_body(event, {"amount": amount}))

    def grant(self, admin_token: str, user_id: str, amount: int, key: str) -> Answer:
        event = load_event(
            "billing_grant", access_token=admin_token, demo_user_id=user_id, idempotency_key=key
        )
        body = {"amount": amount, "user_id": user_id, "note": "fault suite"}
        return self.call("BillingFunction", with_body(event, body))

    def predict(self, token: str, model_id: str, rows: int, key: str) -> Answer:
        event = load_event(
            "predictions_create", access_token=token, model_id=model_id, idempotency_key=key
        )
        return self.call("PredictFunction", with_body(event, {"inputs": [ROW] * rows}))

    def balance(self, token: str) -> int:
        answer = self.call("BillingFunction", load_event("billing_balance", access_token=token))
        assert answer.status == 200, answer
        return int(answer.body["balance"])


def new_key() -> str:
    return str(uuid.uuid4())


def fresh_container() -> None:
    """What a new Lambda container starts with: no cached services, models or states."""
    forget_components()


def assert_clear_failure(answer: Answer, retryable: bool) -> None:
    """A failure the client can act on: problem details with a stable code, no stack trace,
    a 5xx for a dependency's failure, and 503 with Retry-After when a retry may succeed."""
    assert answer.status >= 500, answer
    assert answer.headers.get("content-type", "").startswith(PROBLEM_JSON), answer
    assert isinstance(answer.body, dict), answer
    assert answer.body.get("code"), answer
    assert answer.body.get("status") == answer.status, answer
    text = answer.raw.decode(errors="replace")
    for leak in ("Traceback", "botocore", "pynamodb", 'File "'):
        assert leak not in text, text
    if retryable:
        assert answer.status == 503, answer
        assert int(answer.headers.get("retry-after", "0")) >= 1, answer


def ledger_entries() -> dict[str, Any]:
    """Every ledger entry of every account, by entry id (read with no fault armed)."""
    found: dict[str, Any] = {}
    for _, _, entries in ledger_repository().scan_accounts():
        for entry in entries:
            found[entry.id] = entry
    return found


def assert_ledger_consistent() -> None:
    """Every balance equals the sum of its entries (and the other ledger rules hold)."""
    report = verify_ledger(ledger_repository().scan_accounts())
    assert report.ok, [str(mismatch) for mismatch in report.mismatches]
