"""Reading usage (GET /reports/usage) and counting it (the ledger stream's aggregator)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Protocol

from creditml.auth.roles import Role, role_satisfies
from creditml.errors import Forbidden, ReportNotFound
from creditml.models.records import Model
from creditml.reports.daily import (
    CrossCheckFailed,
    DailyReport,
    LedgerDay,
    ModelInfo,
    StoredReport,
    build,
)
from creditml.reports.usage import (
    Debit,
    GroupBy,
    Period,
    Scope,
    Tally,
    Usage,
    View,
    summarize,
)

_VIEWS = {Scope.OWN: View.OWN, Scope.PUBLISHED: View.PUBLISHED, Scope.ALL: View.ALL}
_REQUIRED_ROLE = {Scope.OWN: Role.USER, Scope.PUBLISHED: Role.PUBLISHER, Scope.ALL: Role.ADMIN}


class CounterReader(Protocol):
    def counters(
        self, view: View, subject: str, first: date, last: date
    ) -> Iterator[tuple[date, str, Tally]]: ...


class CounterWriter(Protocol):
    def count(self, debits: Sequence[Debit], owners: dict[str, str]) -> int: ...


class ModelDirectory(Protocol):
    def names(self, model_ids: Iterable[str]) -> dict[str, str]: ...

    def owners(self, model_ids: Iterable[str]) -> dict[str, str]: ...


def required_role(scope: Scope) -> Role:
    """The role a caller needs for `scope` (the stored role: see VerifiedPrincipal)."""
    return _REQUIRED_ROLE[scope]


class ReportsService:
    """Usage as the counters hold it, for one caller."""

    def __init__(
        self,
        counters: CounterReader,
        models: ModelDirectory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._counters = counters
        self._models = models
        self._clock = clock

    def today(self) -> date:
        return self._clock().astimezone(UTC).date()

    def usage(
        self, user_id: str, role: Role, period: Period, group_by: GroupBy, scope: Scope
    ) -> Usage:
        """The caller's usage in `scope`; Forbidden when their role does not reach it."""
        if not role_satisfies(role, required_role(scope)):
            raise Forbidden()
        subject = "" if scope is Scope.ALL else user_id
        found = list(self._counters.counters(_VIEWS[scope], subject, period.first, period.last))
        names: dict[str, str] = {}
        if group_by is GroupBy.MODEL:
            names = self._models.names({model_id for _, model_id, _ in found})
        return summarize(period, group_by, scope, found, names)


class UsageAggregator:
    """Counts new debits, each once (the counter store makes redeliveries no-ops)."""

    def __init__(self, counters: CounterWriter, models: ModelDirectory) -> None:
        self._counters = counters
        self._models = models
        self._owners: dict[str, str] = {}  # a model's owner never changes: kept per container

    def count(self, debits: Sequence[Debit]) -> int:
        """Add `debits` to the usage counters; returns how many had not been counted."""
        if not debits:
            return 0
        unknown = {debit.model_id for debit in debits} - self._owners.keys()
        if unknown:
            self._owners |= self._models.owners(unknown)
        missing = unknown - self._owners.keys()
        if missing:  # models are never deleted: the models table is behind or wrong
            raise LookupError(f"no owner for models {sorted(missing)}")
        return self._counters.count(debits, self._owners)


class LedgerDays(Protocol):
    def debits_on(self, day: date) -> LedgerDay: ...


class ModelHeads(Protocol):
    def heads(self, model_ids: Iterable[str]) -> dict[str, Model]: ...


class ReportStore(Protocol):
    def put(self, day: date, json_body: bytes, csv_body: bytes, generated_at: datetime) -> None: ...

    def get(self, day: date) -> StoredReport | None: ...


class ReportRunner(Protocol):
    def start(self, payload: dict[str, str]) -> None: ...


class DailyReports:
    """Makes, stores and finds daily usage reports (usage_report and /reports/daily)."""

    def __init__(
        self,
        counters: CounterReader,
        ledger: LedgerDays,
        models: ModelHeads,
        store: ReportStore,
        runner: ReportRunner,
        observe: Callable[[str, float], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._counters = counters
        self._ledger = ledger
        self._models = models
        self._store = store
        self._runner = runner
        self._observe = observe
        self._clock = clock

    def today(self) -> date:
        return self._clock().astimezone(UTC).date()

    def make(self, day: date) -> DailyReport:
        """Build and store `day`'s report. CrossCheckFailed (after storing it) when a
        finished day's report and ledger disagree."""
        # The ledger first: whatever it holds was written before the counters are read, so
        # on a finished day every debit it finds has had time to be counted.
        ledger = self._ledger.debits_on(day)
        counters = [
            (model, tally) for _, model, tally in self._counters.counters(View.ALL, "", day, day)
        ]
        heads = self._models.heads({model_id for model_id, _ in counters} | set(ledger.tallies))
        models = {mid: ModelInfo(model.name, model.owner_id) for mid, model in heads.items()}
        report = build(day, self.today(), counters, models, ledger)
        self._store.put(day, report.to_json(), report.to_csv(), self._clock())
        if report.complete:
            mismatch = 0 if report.cross_check.ok else 1
            self._observe("LedgerCrossCheckMismatch", mismatch)
            if mismatch:
                raise CrossCheckFailed(
                    f"{day}: ledger {report.cross_check.ledger} != report "
                    f"{report.cross_check.report} (models {report.cross_check.models_differing})"
                )
        return report

    def find(self, day: date) -> StoredReport:
        """The stored report of `day`; ReportNotFound when it has not been made."""
        stored = self._store.get(day)
        if stored is None:
            raise ReportNotFound()
        return stored

    def start(self, day: date) -> None:
        """Have `day`'s report made asynchronously (by the function the schedule runs)."""
        self._runner.start({"date": day.isoformat()})
