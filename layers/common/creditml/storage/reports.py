"""Daily report files in the reports bucket, and the asynchronous run of the report.

  daily/<YYYY-MM-DD>/usage.json   the report (creditml.reports.daily)
  daily/<YYYY-MM-DD>/usage.csv    the same numbers as one CSV table

Each object carries `generated-at` as metadata, so re-running a day rewrites the same bytes.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import cached_property
from typing import Any

import boto3
from botocore.exceptions import ClientError

from creditml.reports.daily import StoredReport
from creditml.reports.usage import Tally

GENERATED_AT = "generated-at"
URL_SECONDS = 15 * 60
_MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


def report_key(day: date, extension: str) -> str:
    return f"daily/{day.isoformat()}/usage.{extension}"


class ReportFiles:
    def __init__(self, bucket: str) -> None:
        self._bucket = bucket

    @cached_property
    def _s3(self) -> Any:
        return boto3.client("s3")

    def put(self, day: date, json_body: bytes, csv_body: bytes, generated_at: datetime) -> None:
        """Write both files (CSV first: the JSON's presence means the report is there)."""
        stamp = generated_at.isoformat(timespec="seconds")
        for extension, body in (("csv", csv_body), ("json", json_body)):
            self._s3.put_object(
                Bucket=self._bucket,
                Key=report_key(day, extension),
                Body=body,
                ContentType=_MEDIA[extension],
                Metadata={GENERATED_AT: stamp},
            )

    def get(self, day: date) -> StoredReport | None:
        """The day's report with links valid 15 minutes, or None when there is none."""
        try:
            found = self._s3.get_object(Bucket=self._bucket, Key=report_key(day, "json"))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        totals = json.loads(found["Body"].read())["totals"]
        return StoredReport(
            day=day,
            generated_at=datetime.fromisoformat(found["Metadata"][GENERATED_AT]),
            totals=Tally(totals["predictions"], totals["rows"], totals["credits"]),
            json_url=self._url(report_key(day, "json")),
            csv_url=self._url(report_key(day, "csv")),
        )

    def _url(self, key: str) -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=URL_SECONDS
        )
        return url


class FunctionRunner:
    """Runs a Lambda function asynchronously (InvocationType Event): Lambda queues the
    event, retries a failure twice and then hands it to the function's failure
    destination."""

    def __init__(self, function_name: str) -> None:
        self._function = function_name

    @cached_property
    def _lambda(self) -> Any:
        return boto3.client("lambda")

    def start(self, payload: dict[str, Any]) -> None:
        self._lambda.invoke(
            FunctionName=self._function,
            InvocationType="Event",
            Payload=json.dumps(payload).encode(),
        )
