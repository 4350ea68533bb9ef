"""Usage-report benchmarks (issue 11), run by benchmarks/run.py (`make bench`) or alone:

    .venv/bin/python benchmarks/reports.py

  aggregator writes / prediction   50 predictions/s for 60 s over 20 models and 200 users,
                                   delivered as the stream would (2 s batching window, at
                                   most 100 records): items written by the aggregator's
                                   transactions per prediction, and write units (2 per
                                   transactional item of <= 1 KB)          report
  /reports/usage warm latency      a user with 10,000 predictions over 30 days on 5 models,
                                   through the reports handler (in-process moto), median of
                                   50 warm calls, group_by=day and =model   target <= 50 ms;
                                   and the same minus the time inside AWS calls (the
                                   product's own cost: moto's share is not DynamoDB's)
  daily report for 100,000 preds   the usage_report code on a day of 100,000 debits (1,000
                                   users, 20 models) in the ledger and the counters: ledger
                                   scan + counters + names + both files     target <= 60 s;
                                   and the same minus the time inside AWS calls (moto pages
                                   a Scan by sorting the whole table for every 1 MB page)

The predict path's own cost is measured by run.py (DynamoDB calls per warm predict: reporting
adds none, the counters are fed by the ledger's stream).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


@contextmanager
def in_process_aws() -> Iterator[None]:
    """moto in-process with the template's resources, this process set up as a container
    (per-user rate limits lifted: the benchmarks call far faster than any user)."""
    from moto import mock_aws

    from creditml.composition import forget_components
    from creditml.devstack import queries, transactions
    from creditml.devstack.aws import function_environment, provision
    from creditml.devstack.stack import apply_environment, aws_environment
    from creditml.devstack.template import Template

    # As the local stack does: transactions copy only their items, queries read only
    # their partition.
    transactions.install()
    queries.install()
    environment = aws_environment("unused")
    del environment["AWS_ENDPOINT_URL"]
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.update(environment)
    with mock_aws():
        template = Template(ROOT / "template.yaml")
        environment |= function_environment(template, provision(template, "bench"), "bench")
        environment["RATE_LIMIT_PER_MINUTE"] = str(10**9)
        apply_environment(environment)
        forget_components()
        yield


def _debits(count: int, users: int, models: int, start: datetime, step: float) -> list[Any]:
    from creditml.reports.usage import Debit

    return [
        Debit(
            account_id=f"user-{n % users}",
            entry_id=uuid.uuid4().hex,
            model_id=f"model-{n % models}",
            created_at=start + timedelta(seconds=n * step),
            rows=1 + n % 5,
            credits=2 * (1 + n % 5),
        )
        for n in range(count)
    ]


def _counting_items() -> tuple[Callable[[], tuple[int, int]], Callable[[], None]]:
    """Count TransactWriteItems calls and their items from now on."""
    from botocore.client import BaseClient

    seen = [0, 0]
    original = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        if operation == "TransactWriteItems":
            seen[0] += 1
            seen[1] += len(params["TransactItems"])
        return original(self, operation, params)

    BaseClient._make_api_call = counting

    def restore() -> None:
        BaseClient._make_api_call = original

    return (lambda: (seen[0], seen[1])), restore


def bench_aggregator_writes(rate: int = 50, seconds: int = 60, window: int = 2) -> dict[str, Any]:
    from creditml.composition.reports import usage_counters

    owners = {f"model-{n}": f"owner-{n % 7}" for n in range(20)}
    start = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    debits = _debits(rate * seconds, users=200, models=20, start=start, step=1 / rate)
    with in_process_aws():
        counters = usage_counters()
        read, restore = _counting_items()
        try:
            per_batch = min(100, rate * window)
            for first in range(0, len(debits), per_batch):
                counters.count(debits[first : first + per_batch], owners)
            transactions, items = read()
        finally:
            restore()
    predictions = len(debits)
    return {
        "aggregator_predictions": predictions,
        "aggregator_transactions": transactions,
        "aggregator_items_per_prediction": items / predictions,
        "aggregator_write_units_per_prediction": 2 * items / predictions,
    }


def bench_usage_latency(predictions: int = 10_000, calls: int = 50) -> dict[str, Any]:
    from creditml.auth.roles import Role
    from creditml.composition.auth import auth_service
    from creditml.composition.core import token_signer
    from creditml.composition.reports import usage_counters
    from creditml.devstack.runtime import LambdaContext, load_handler
    from creditml.devstack.template import Template
    from creditml.reports.usage import View

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    results: dict[str, Any] = {}
    with in_process_aws():
        user = auth_service().register(f"bench-{uuid.uuid4().hex[:6]}@example.com", "bench pw 12")
        start = today - timedelta(days=29)
        debits = _debits(predictions, users=1, models=5, start=start, step=30 * 86400 / predictions)
        debits = [d.__class__(**{**d.__dict__, "account_id": user.id}) for d in debits]
        usage_counters().count(debits, {f"model-{n}": "owner" for n in range(5)})
        token = token_signer().issue_access(user.id, Role.USER)
        spec = Template(ROOT / "template.yaml").functions["ReportsFunction"]
        handler, context = load_handler(spec), LambdaContext.for_function(spec)
        event = json.loads(
            (ROOT / "events" / "reports_usage.json").read_text().replace("<access-token>", token)
        )
        inside_aws, restore = _timing_aws_calls()
        try:
            for group_by in ("day", "model"):
                event["rawQueryString"] = f"group_by={group_by}"
                event["queryStringParameters"] = {"group_by": group_by}
                totals, own = [], []
                for _ in range(calls + 5):
                    before = inside_aws()
                    started = time.perf_counter()
                    response = handler(event, context)
                    elapsed = time.perf_counter() - started
                    totals.append(elapsed * 1000)
                    own.append((elapsed - (inside_aws() - before)) * 1000)
                    assert response["statusCode"] == 200, response
                body = json.loads(response["body"])
                assert body["totals"]["predictions"] == predictions, body["totals"]
                results[f"usage_latency_{group_by}_median_ms"] = statistics.median(totals[5:])
                results[f"usage_own_cost_{group_by}_median_ms"] = statistics.median(own[5:])
        finally:
            restore()
        results["usage_counter_items_read"] = len(
            list(usage_counters().counters(View.OWN, user.id, start.date(), today.date()))
        )
    return results


def _timing_aws_calls() -> tuple[Callable[[], float], Callable[[], None]]:
    """Seconds spent inside AWS SDK calls (moto, here) from now on."""
    from botocore.client import BaseClient

    spent = [0.0]
    original = BaseClient._make_api_call

    def timed(self: Any, operation: str, params: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, operation, params)
        finally:
            spent[0] += time.perf_counter() - started

    BaseClient._make_api_call = timed

    def restore() -> None:
        BaseClient._make_api_call = original

    return (lambda: spent[0]), restore


def bench_daily_report(predictions: int = 100_000) -> dict[str, Any]:
    import boto3

    from creditml.composition.reports import daily_reports
    from creditml.reports.usage import increments
    from creditml.settings import get_settings
    from creditml.storage.usage import partition

    day = date(2026, 11, 28)
    start = datetime.combine(day, datetime.min.time(), UTC)
    debits = _debits(predictions, users=1000, models=20, start=start, step=86399 / predictions)
    owners = {f"model-{n}": f"owner-{n % 7}" for n in range(20)}
    with in_process_aws():
        table = boto3.resource("dynamodb").Table(get_settings().ledger_table)
        setup = time.perf_counter()
        with table.batch_writer() as batch:
            for debit in debits:
                batch.put_item(Item=_ledger_item(debit))
        # The counters as the aggregator leaves them (their totals, written directly: the
        # aggregator's own cost is the first benchmark's).
        counters = boto3.resource("dynamodb").Table(get_settings().usage_table)
        with counters.batch_writer() as batch:
            for key, tally in increments(debits, owners).items():
                batch.put_item(
                    Item={
                        "pk": partition(key.view, key.subject),
                        "sk": f"{key.day.isoformat()}#{key.model_id}",
                        "predictions": tally.predictions,
                        "rows": tally.rows,
                        "credits": tally.credits,
                    }
                )
        setup_s = time.perf_counter() - setup
        inside_aws, restore = _timing_aws_calls()
        try:
            started = time.perf_counter()
            report = daily_reports().make(day)
            elapsed = time.perf_counter() - started
            in_aws = inside_aws()
        finally:
            restore()
    assert report.totals.predictions == predictions, report.totals
    assert report.cross_check.ok, report.cross_check
    return {
        "daily_report_predictions": predictions,
        "daily_report_s": elapsed,
        "daily_report_own_s": elapsed - in_aws,
        "daily_report_setup_s": setup_s,
    }


def _ledger_item(debit: Any) -> dict[str, Any]:
    """A ledger debit entry as the ledger writes it (creditml.storage.ledger)."""
    details = {"model_id": debit.model_id, "model_version": 1, "rows": debit.rows, "price": 2}
    return {
        "account_id": debit.account_id,
        "sk": f"ENTRY#{debit.entry_id}",
        "entry_id": debit.entry_id,
        "entry_seq": 1,
        "kind": "debit",
        "amount": -debit.credits,
        "balance_after": 0,
        "created_at": debit.created_at.isoformat(timespec="milliseconds"),
        "actor_id": debit.account_id,
        "idempotency_key": debit.entry_id,
        "request_hash": "0" * 64,
        "details": json.dumps(details),
    }


def bench_reports() -> dict[str, Any]:
    results: dict[str, Any] = {}
    results |= bench_aggregator_writes()
    results |= bench_usage_latency()
    results |= bench_daily_report()
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.stdout.write(json.dumps(bench_reports(), indent=2) + "\n")
