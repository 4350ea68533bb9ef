"""The billing function's services."""

from __future__ import annotations

from creditml.billing.payments import StubPaymentGateway
from creditml.billing.service import BillingService
from creditml.composition import component
from creditml.composition.core import ledger, ledger_repository
from creditml.settings import get_settings


@component
def billing_service() -> BillingService:
    return BillingService(
        ledger=ledger(),
        reader=ledger_repository(),
        payments=StubPaymentGateway(),
        max_top_up=get_settings().max_top_up_credits,
    )
