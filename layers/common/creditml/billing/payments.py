"""The payment step of a user's top-up.

STUB: no money moves. `StubPaymentGateway` approves every charge and returns a reference
derived from the Idempotency-Key, the way a real provider (e.g. Stripe, which takes the same
idempotency key) would answer a retried charge with the original result. Replace it with a
real gateway before taking money; the BillingService depends only on `PaymentGateway`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PaymentReceipt:
    reference: str
    provider: str


class PaymentGateway(Protocol):
    def charge(self, user_id: str, credits: int, idempotency_key: str) -> PaymentReceipt: ...


class StubPaymentGateway:
    """Approves every charge. For development and tests only; see the module docstring."""

    provider = "stub"

    def charge(self, user_id: str, credits: int, idempotency_key: str) -> PaymentReceipt:
        digest = hashlib.sha256(f"{user_id}\n{idempotency_key}".encode()).hexdigest()[:20]
        return PaymentReceipt(reference=f"stub_{digest}", provider=self.provider)
