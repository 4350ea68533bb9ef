"""Routes of the billing function: /billing/*."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from creditml.api.dependencies import (
    BillingServiceDep,
    IdempotencyKey,
    Principal,
    UserDirectoryDep,
    verified_principal,
)
from creditml.api.problems import PROBLEM_RESPONSES, problem_doc
from creditml.billing.schemas import Balance, EntryPage, EntryPublic, TopUpRequest
from creditml.billing.service import CURSOR_MAX_LENGTH

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["billing"])
REPLAYED_HEADER = "Idempotent-Replayed"


@router.get("/billing/balance", response_model=Balance)
def balance(principal: Principal, service: BillingServiceDep) -> Balance:
    """The caller's credit balance."""
    return Balance(balance=service.balance(principal))


@router.post(
    "/billing/top-ups",
    status_code=status.HTTP_201_CREATED,
    response_model=EntryPublic,
    responses={
        400: problem_doc("Idempotency-Key header missing"),
        403: problem_doc("A non-admin named another user's account"),
        404: problem_doc("No such user (admin grants)"),
        409: problem_doc("Idempotency-Key already used with a different body"),
        503: problem_doc("Account busy; retry with the same Idempotency-Key"),
    },
)
def top_up(
    body: TopUpRequest,
    key: IdempotencyKey,
    principal: Principal,
    users: UserDirectoryDep,
    service: BillingServiceDep,
    response: Response,
) -> EntryPublic:
    """Add credits. A user buys credits for their own account (the payment step is a stub
    for now, see creditml.billing.payments); an admin may name any `user_id`, recorded as
    a `grant`. A retry with the same Idempotency-Key and body returns the original entry
    (with `Idempotent-Replayed: true`) and credits nothing more."""
    caller = principal
    if body.user_id not in (None, principal.user_id):
        # A grant to another account rests on the admin role stored now, not the token's.
        caller = verified_principal(principal, users)
    entry, replayed = service.top_up(caller, body.amount, key, body.user_id, body.note)
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return EntryPublic.of(entry)


@router.get("/billing/transactions", response_model=EntryPage)
def transactions(
    principal: Principal,
    service: BillingServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> EntryPage:
    """The caller's ledger, newest first. Pages are stable: entries added meanwhile never
    shift a page; follow `next_cursor` until it is null."""
    entries, next_cursor = service.transactions(principal, limit, cursor)
    return EntryPage(items=[EntryPublic.of(entry) for entry in entries], next_cursor=next_cursor)
