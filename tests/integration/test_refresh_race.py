"""Two presentations of one refresh token at the same instant count as reuse.

DynamoDB answers the loser of such a race with TransactionConflict rather than a failed
condition; moto serializes everything and never does, so the conflict is injected here at
pynamodb's commit, exactly as botocore reports it."""

from __future__ import annotations

import pytest
from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError
from pynamodb.transactions import TransactWrite

from creditml.auth.tokens import RefreshClaims
from creditml.settings import get_settings
from creditml.storage.sessions import RotationOutcome, SessionRepository


def _conflict(*args: object, **kwargs: object) -> None:
    cause = VerboseClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}},
        "TransactWriteItems",
        cancellation_reasons=[None, None, CancellationReason(code="TransactionConflict")],
    )
    raise TransactWriteError("Failed to write transaction items", cause=cause)


@pytest.mark.usefixtures("aws")
def test_a_conflicting_rotation_is_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = SessionRepository(get_settings().sessions_table, revocation_retention_seconds=960)
    first = RefreshClaims("u1", "t1", "f1", 2_000_000_000)
    sessions.start(first, family_expires_at=2_000_000_000)
    monkeypatch.setattr(TransactWrite, "_commit", _conflict)
    outcome = sessions.rotate(first, RefreshClaims("u1", "t2", "f1", 2_000_000_000))
    assert outcome is RotationOutcome.REUSED
