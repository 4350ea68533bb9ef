"""usage_report function: at 00:15 UTC, the previous UTC day's usage report (JSON and CSV in
the reports bucket, cross-checked against the ledger); also run for any day by
POST /reports/daily/{date} with {"date": "YYYY-MM-DD"} (see creditml.reports.daily)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from creditml.composition.reports import daily_reports
from creditml.observability import observed
from creditml.reports.daily import report_day


@observed("usage_report")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    reports = daily_reports()
    today = reports.today()
    if event.get("source") == "aws.events":  # the schedule: the UTC day before it fired
        fired = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        day = fired.astimezone(UTC).date() - timedelta(days=1)
    else:
        day = report_day(str(event.get("date", "")), today)
    report = reports.make(day)
    return {
        "date": day.isoformat(),
        "complete": report.complete,
        "totals": report.document()["totals"],
        "ledger_cross_check": report.cross_check.ok,
    }
