"""Admins: users and roles, credit grants, daily reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from creditml.auth.roles import Role
from creditml.billing.schemas import TopUpRequest
from creditml.composition.auth import auth_service
from creditml.composition.billing import billing_service
from creditml.composition.core import user_directory
from creditml.composition.reports import daily_reports
from creditml.errors import DomainError, Forbidden, ReportNotFound
from creditml.reports.daily import report_day
from creditml.web.account_pages import form_key, new_key
from creditml.web.auth_pages import redirect
from creditml.web.forms import FormInvalid, read_form, whole_number
from creditml.web.people import required_user
from creditml.web.render import page
from creditml.web.session import WebUser
from creditml.web.validation import validated

router = APIRouter()
PAGE_SIZE = 50


def admin(request: Request) -> WebUser:
    user = required_user(request)
    if not user.is_admin:
        raise Forbidden("This page is for admins.")
    return user


def _users_page(
    request: Request, user: WebUser, cursor: str | None, error: str | None = None, status: int = 200
) -> Response:
    users, next_cursor = user_directory().page(PAGE_SIZE, cursor)
    context: dict[str, Any] = {
        "users": sorted(users, key=lambda found: found.email),
        "next_cursor": next_cursor,
        "first_page": cursor is None,
        "roles": [str(role) for role in Role],
        "key": new_key(),
        "error": error,
        "done": request.query_params.get("done"),
    }
    return page(request, "admin_users.html", user, context, status=status)


@router.get("/ui/admin/users")
async def users(request: Request, cursor: str | None = None) -> Response:
    return _users_page(request, admin(request), cursor)


@router.post("/ui/admin/users/{user_id}/role")
async def change_role(request: Request, user_id: str) -> Response:
    user = admin(request)
    form = await read_form(request)
    try:
        try:
            role = Role(form.text("role"))
        except ValueError:
            raise FormInvalid("Role: choose user, publisher or admin.") from None
        auth_service().set_role(user.claims, user_id[:64], role)
    except DomainError as exc:
        return _users_page(request, user, None, exc.detail, exc.status)
    return redirect("/ui/admin/users?done=role")


@router.post("/ui/admin/users/{user_id}/grants")
async def grant(request: Request, user_id: str) -> Response:
    user = admin(request)
    form = await read_form(request)
    try:
        amount = whole_number(form.text("amount"), "Amount", minimum=1)
        body = validated(TopUpRequest, {"amount": amount, "user_id": user_id[:64]})
        key = form_key(form.text("idempotency_key"))
        billing_service().top_up(
            user.claims, body.amount, key, body.user_id, "granted in the web UI"
        )
    except DomainError as exc:
        return _users_page(request, user, None, exc.detail, exc.status)
    return redirect("/ui/admin/users?done=grant")


@router.get("/ui/admin/reports")
async def reports(request: Request, date: str | None = None) -> Response:
    user = admin(request)
    service = daily_reports()
    today = service.today()
    context: dict[str, Any] = {"today": today, "report": None, "missing": False, "started": None}
    context["started"] = request.query_params.get("started")
    try:
        day = report_day(date, today) if date else today - timedelta(days=1)
        context["day"] = day
        context["report"] = service.find(day)
    except ReportNotFound:
        context["missing"] = True
    except DomainError as exc:
        context["day"] = today - timedelta(days=1)
        context["error"] = exc.detail
        return page(request, "admin_reports.html", user, context, status=exc.status)
    return page(request, "admin_reports.html", user, context)


@router.post("/ui/admin/reports")
async def make_report(request: Request) -> Response:
    admin(request)
    form = await read_form(request)
    service = daily_reports()
    day = report_day(form.text("date"), service.today())
    service.start(day)
    return redirect(f"/ui/admin/reports?date={day.isoformat()}&started=1")
