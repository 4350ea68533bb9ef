"""Response bodies of the reports API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from creditml.reports.daily import StoredReport
from creditml.reports.usage import GroupBy, Scope, Tally, Usage


class UsageTotals(BaseModel):
    predictions: int = Field(description="Charged prediction requests")
    rows: int = Field(description="Rows of those requests")
    credits: int = Field(description="Credits debited for them (a positive number)")

    @classmethod
    def of(cls, tally: Tally) -> UsageTotals:
        return cls(predictions=tally.predictions, rows=tally.rows, credits=tally.credits)


class UsageItem(UsageTotals):
    key: str = Field(description="The day (YYYY-MM-DD, UTC) or the model id")
    model_name: str | None = Field(
        None, description="Only with group_by=model: the model's name (its id if unknown)"
    )


class UsageReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", description="First UTC day, included")
    to: date = Field(description="Last UTC day, included")
    group_by: GroupBy
    scope: Scope
    items: list[UsageItem] = Field(description="Days ascending, or models by credits")
    totals: UsageTotals

    @classmethod
    def of(cls, usage: Usage) -> UsageReport:
        by_model = usage.group_by is GroupBy.MODEL
        return cls(
            from_=usage.period.first,
            to=usage.period.last,
            group_by=usage.group_by,
            scope=usage.scope,
            items=[
                UsageItem(
                    key=line.key,
                    model_name=line.model_name if by_model else None,
                    **UsageTotals.of(line.tally).model_dump(),
                )
                for line in usage.lines
            ],
            totals=UsageTotals.of(usage.totals),
        )


class DailyReportLinks(BaseModel):
    date: date
    generated_at: datetime
    totals: UsageTotals
    json_url: str = Field(description="The report as JSON (presigned, valid 15 minutes)")
    csv_url: str = Field(description="The report as CSV (presigned, valid 15 minutes)")

    @classmethod
    def of(cls, stored: StoredReport) -> DailyReportLinks:
        return cls(
            date=stored.day,
            generated_at=stored.generated_at,
            totals=UsageTotals.of(stored.totals),
            json_url=stored.json_url,
            csv_url=stored.csv_url,
        )


class DailyReportRun(BaseModel):
    date: date
    status: Literal["running"] = "running"
