"""The reports function's services and the usage aggregator's (no ML layer needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from creditml.composition import component
from creditml.composition.core import ledger_repository
from creditml.composition.models import model_repository
from creditml.observability import record_metric
from creditml.reports.service import DailyReports, ReportsService, UsageAggregator
from creditml.settings import get_settings
from creditml.storage.reports import FunctionRunner, ReportFiles
from creditml.storage.usage import UsageCounters


def _now() -> datetime:
    return datetime.now(UTC)


@component
def usage_counters() -> UsageCounters:
    return UsageCounters(get_settings().usage_table, clock=_now)


@component
def reports_service() -> ReportsService:
    return ReportsService(usage_counters(), model_repository(), clock=_now)


@component
def usage_aggregator() -> UsageAggregator:
    return UsageAggregator(usage_counters(), model_repository())


@component
def daily_reports() -> DailyReports:
    settings = get_settings()
    return DailyReports(
        counters=usage_counters(),
        ledger=ledger_repository(),
        models=model_repository(),
        store=ReportFiles(settings.reports_bucket),
        runner=FunctionRunner(settings.usage_report_function),
        observe=record_metric,
        clock=_now,
    )


def backfill_usage(batch: int = 500) -> tuple[int, int]:
    """Count every debit already in the ledger (those written before its stream fed the
    aggregator, or whose batch was given up on): (debits read, newly counted). Each debit
    still counts once: its marker, kept for good here, makes a second count a no-op."""
    counters = UsageCounters(get_settings().usage_table, clock=_now, marker_lifetime=None)
    aggregator = UsageAggregator(counters, model_repository())
    read = counted = 0
    pending = []
    for debit in ledger_repository().debits():
        pending.append(debit)
        read += 1
        if len(pending) == batch:
            counted += aggregator.count(pending)
            pending = []
    counted += aggregator.count(pending)
    return read, counted
