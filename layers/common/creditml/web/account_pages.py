"""The account (balance, top-up, ledger), prediction history and usage charts."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from creditml.api.dependencies import IDEMPOTENCY_KEY
from creditml.billing.schemas import TopUpRequest
from creditml.billing.service import decode_cursor, encode_cursor
from creditml.composition.billing import billing_service
from creditml.composition.models import model_repository
from creditml.composition.reports import reports_service
from creditml.composition.web import prediction_history
from creditml.errors import DomainError
from creditml.reports.usage import GroupBy, Period, Scope, Usage
from creditml.settings import get_settings
from creditml.web.auth_pages import redirect
from creditml.web.charts import Bar, bar_chart
from creditml.web.forms import FormInvalid, read_form, whole_number
from creditml.web.people import required_user
from creditml.web.render import page
from creditml.web.session import WebUser
from creditml.web.validation import validated

router = APIRouter()
PAGE_SIZE = 20


def form_key(value: str) -> str:
    """The Idempotency-Key a form carried (made when the form was rendered, so submitting
    the same form twice is one operation)."""
    if not IDEMPOTENCY_KEY.match(value):
        raise FormInvalid("The form is missing its one-time key: reload the page.")
    return value


def new_key() -> str:
    return str(uuid.uuid4())


@router.get("/ui/account")
async def account(request: Request, cursor: str | None = None) -> Response:
    user = required_user(request)
    return _account_page(request, user, cursor)


def _account_page(
    request: Request,
    user: WebUser,
    cursor: str | None,
    error: str | None = None,
    status: int = 200,
    amount: str = "",
) -> Response:
    service = billing_service()
    balance = service.balance(user.claims)
    entries, next_cursor = service.transactions(user.claims, PAGE_SIZE, cursor)
    context: dict[str, Any] = {
        "balance": balance,
        "entries": entries,
        "next_cursor": next_cursor,
        "first_page": cursor is None,
        "key": new_key(),
        "error": error,
        "amount": amount,
        "added": request.query_params.get("added"),
        "welcome": request.query_params.get("welcome"),
        "max_top_up": get_settings().max_top_up_credits,
    }
    return page(request, "account.html", user, context, status=status)


@router.post("/ui/account/top-ups")
async def top_up(request: Request) -> Response:
    user = required_user(request)
    form = await read_form(request)
    try:
        amount = whole_number(form.text("amount"), "Amount", minimum=1)
        body = validated(TopUpRequest, {"amount": amount})
        key = form_key(form.text("idempotency_key"))
        entry, _ = billing_service().top_up(user.claims, body.amount, key, None, None)
    except DomainError as exc:
        return _account_page(
            request, user, None, exc.detail, exc.status, amount=form.text("amount")
        )
    return redirect(f"/ui/account?added={entry.amount}")


@router.get("/ui/history")
async def history(request: Request, cursor: str | None = None) -> Response:
    user = required_user(request)
    before = decode_cursor(cursor) if cursor else None
    items, last = prediction_history().page(user.user_id, PAGE_SIZE, before)
    names = model_repository().names({item.model_id for item in items})
    context = {
        "items": items,
        "names": names,
        "next_cursor": encode_cursor(last) if last else None,
        "first_page": cursor is None,
    }
    return page(request, "history.html", user, context)


@router.get("/ui/history/{prediction_id}")
async def prediction(request: Request, prediction_id: str) -> Response:
    user = required_user(request)
    found = prediction_history().show(user.user_id, prediction_id[:64])
    names = model_repository().names({found.model_id})
    return page(request, "prediction.html", user, {"item": found, "names": names})


def _every_day(usage: Usage) -> list[Bar]:
    """One bar per day of the period, zero where nothing was charged (labels MM-DD)."""
    spent = {line.key: line.tally.credits for line in usage.lines}
    first, last = usage.period.first, usage.period.last
    days = (first + timedelta(days=offset) for offset in range((last - first).days + 1))
    return [Bar(day.isoformat()[5:], spent.get(day.isoformat(), 0)) for day in days]


def _charts(usage_by_day: Usage, usage_by_model: Usage, what: str) -> dict[str, Any]:
    days = _every_day(usage_by_day) if usage_by_day.lines else []
    models = [Bar(line.model_name or line.key, line.tally.credits) for line in usage_by_model.lines]
    return {
        "by_day": bar_chart(f"{what} per day (credits)", days),
        "by_model": bar_chart(f"{what} per model (credits)", models),
        "day_lines": usage_by_day.lines,
        "model_lines": usage_by_model.lines,
        "totals": usage_by_day.totals,
    }


SCOPE_TITLES = {Scope.OWN: "Your spend", Scope.PUBLISHED: "Revenue", Scope.ALL: "All usage"}


@router.get("/ui/usage")
async def usage(request: Request, days: int = 30) -> Response:
    user = required_user(request)
    service = reports_service()
    last = service.today()
    period = Period(last - timedelta(days=min(max(days, 1), 366) - 1), last)
    scopes = [Scope.OWN]
    if user.is_publisher:
        scopes.append(Scope.PUBLISHED)
    if user.is_admin:
        scopes.append(Scope.ALL)
    sections = []
    for scope in scopes:
        by_day = service.usage(user.user_id, user.role, period, GroupBy.DAY, scope)
        by_model = service.usage(user.user_id, user.role, period, GroupBy.MODEL, scope)
        title = SCOPE_TITLES[scope]
        sections.append({"title": title, "scope": str(scope), **_charts(by_day, by_model, title)})
    context = {"sections": sections, "period": period, "days": (last - period.first).days + 1}
    return page(request, "usage.html", user, context)
