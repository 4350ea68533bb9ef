"""Routes of the reports function: /reports/*."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from creditml.api.dependencies import (
    AdminPrincipal,
    DailyReportsDep,
    Principal,
    ReportsServiceDep,
    UserDirectoryDep,
    verified_principal,
)
from creditml.api.problems import PROBLEM_RESPONSES, problem_doc
from creditml.reports.daily import report_day
from creditml.reports.schemas import DailyReportLinks, DailyReportRun, UsageReport
from creditml.reports.usage import GroupBy, Period, Scope

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["reports"])
DayPath = Annotated[str, Path(description="A UTC day, YYYY-MM-DD", max_length=32)]


@router.get(
    "/reports/usage",
    response_model=UsageReport,
    response_model_exclude_none=True,  # model_name only with group_by=model
    responses={
        403: problem_doc("scope=published needs a publisher or admin, scope=all an admin"),
        422: problem_doc("Malformed date, from after to, over 366 days, unknown scope"),
    },
)
def usage(
    principal: Principal,
    users: UserDirectoryDep,
    service: ReportsServiceDep,
    from_: Annotated[str | None, Query(alias="from", description="YYYY-MM-DD, UTC")] = None,
    to: Annotated[str | None, Query(description="YYYY-MM-DD, UTC; default today")] = None,
    group_by: GroupBy = GroupBy.DAY,
    scope: Scope = Scope.OWN,
) -> UsageReport:
    """Charged predictions, their rows and credits, per UTC day or per model, from `from`
    (default: 29 days before `to`) to `to` (default: today), both included. `own`: the
    caller's; `published`: anyone's on models the caller owns (publishers and admins);
    `all`: everyone's (admins). Exact: `totals.credits` is the sum of the period's
    prediction debits in the ledger; a charged prediction shows within 60 seconds."""
    period = Period.parse(from_, to, service.today())  # 422 before any role check
    caller = principal if scope is Scope.OWN else verified_principal(principal, users)
    found = service.usage(caller.user_id, caller.role, period, group_by, scope)
    return UsageReport.of(found)


@router.get(
    "/reports/daily/{date}",
    response_model=DailyReportLinks,
    responses={
        403: problem_doc("Admins only"),
        404: problem_doc("No report for this day yet (`report_not_found`)"),
        422: problem_doc("Malformed date, or a day in the future"),
    },
)
def daily_report(
    date: DayPath, admin: AdminPrincipal, reports: DailyReportsDep
) -> DailyReportLinks:
    """The day's usage report: totals, and links to its JSON and CSV files (valid 15
    minutes). Made each day at 00:15 UTC for the day before, or on demand (POST)."""
    day = report_day(date, reports.today())
    return DailyReportLinks.of(reports.find(day))


@router.post(
    "/reports/daily/{date}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DailyReportRun,
    responses={
        403: problem_doc("Admins only"),
        422: problem_doc("Malformed date, or a day in the future"),
    },
)
def make_daily_report(
    date: DayPath, admin: AdminPrincipal, reports: DailyReportsDep
) -> DailyReportRun:
    """Make (or remake) the report of a past or the current UTC day, asynchronously, with
    the code the schedule runs; GET answers 200 once it is written. Re-making a finished
    day writes the same content. The current day's report is marked incomplete."""
    day = report_day(date, reports.today())
    reports.start(day)
    return DailyReportRun(date=day)
