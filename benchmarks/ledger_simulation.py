"""Ledger scaling on DynamoDB, on paper: a discrete-event simulation (issue 14, item 2).

    .venv/bin/python benchmarks/ledger_simulation.py          # compact table
    .venv/bin/python benchmarks/ledger_simulation.py --json   # every row as JSON

C closed-loop workers ("Lambda containers") debit ONE account: each sends a debit, waits
for its answer (success, 402, or 503 once the server gives up), thinks for a moment (the
model's compute) and sends the next. A simulated clock and a heapq event queue: no threads,
no sleeps, deterministic for a seed. What is modelled of DynamoDB, and what is assumed
rather than known, is in `Params` and docs/LEDGER_SCALING.md. Designs:

  version    today's code: `seq = :expected`, stale guesses retried at once with the true
             state (ALL_OLD), TransactionConflict retried with jittered backoff at most 6
             times, at most 30 attempts, then 503
  balance    `ADD balance :amount`; `balance = :known` for the first 2 attempts (an exact
             balance_after), then `balance >= :price`; conflicts and throttles retried with
             jittered backoff for a budget of 3 s, then 503
  shards-N   the balance in N shard items with their own partition keys; a debit goes to
             the shard its idempotency key hashes to; a dry shard is refilled from the
             richest one in the debit's own transaction; 402 only after a serializable read
             (TransactGetItems) of every shard says the account holds less than the price

benchmarks/run.py (`make bench`) imports `bench_ledger_simulation`, `TARGETS` and `notes`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any

SUCCESS, INSUFFICIENT, BUSY = "200", "402", "503"
OK, CONFLICT, CONDITION, THROTTLED = "ok", "conflict", "condition", "throttled"
DESIGNS = ("version", "balance", "shards-4", "shards-8", "shards-16")
CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 200)
HOLDS_MS = (2.0, 5.0, 10.0)


@dataclass(frozen=True)
class Params:
    """Every number the model rests on. Sources: DynamoDB's documentation where it says,
    botocore's own retry table, and assumptions (marked) where AWS publishes nothing."""

    # In-region Lambda <-> DynamoDB: DynamoDB quotes single-digit-millisecond requests;
    # 2 ms each way is an assumption inside that, jittered uniformly by +-0.5 ms.
    one_way_ms: float = 2.0
    network_jitter_ms: float = 0.5
    # How long a TransactWriteItems keeps its items from other writers while it prepares
    # and commits (two phases, hence 2 WCU per item). ASSUMED: AWS publishes no figure;
    # the report also runs 2 and 10 ms.
    hold_ms: float = 5.0
    # The worker's own time between an answer and its next debit (model compute).
    think_ms: float = 1.0
    # DynamoDB's documented hard limit per partition. The bucket's depth (how much a
    # partition lets through in a burst) is ASSUMED: 0.1 s of the rate.
    partition_wcu_per_s: float = 1000.0
    partition_burst_wcu: float = 100.0
    # A debit's writes on the account's partition: account update 2 (transactional, <= 1
    # KB) + entry put 2 + the entry's LSI copy 1 (docs/DECISIONS.md, "## Ledger").
    debit_wcu: int = 5
    # A shard refill also updates the donor shard: 2 more WCU, on the donor's partition.
    donor_wcu: int = 2
    # What a cancelled transaction (conflict or failed condition) costs. ASSUMED 0: AWS
    # does not document it for transactions (a failed single-item condition costs 1 WCU).
    failed_attempt_wcu: float = 0.0
    # botocore's legacy retry mode (the default; the project sets none) for DynamoDB
    # (botocore/data/_retry.json): 10 attempts, 50 ms doubling, no jitter, on throttling.
    sdk_max_attempts: int = 10
    sdk_base_ms: float = 50.0
    # The ledger's own conflict retries: full-jitter exponential backoff (issue 14).
    backoff_base_ms: float = 10.0
    backoff_cap_ms: float = 250.0
    # "version" (today's code, creditml.billing): retry bounds by count.
    version_conflict_retries: int = 6
    version_max_attempts: int = 30
    # "balance" and "shards-N": retry bound in time, and exact-balance attempts first.
    retry_budget_s: float = 3.0
    exact_attempts: int = 2
    price: int = 1


@dataclass(slots=True)
class Write:
    """One item of a TransactWriteItems: `balance += delta` (and `seq += 1`) if the balance
    stays >= 0 and, when given, the item's seq/balance equal what the writer expects."""

    item: str
    delta: int
    expect_seq: int | None = None
    expect_balance: int | None = None


@dataclass(slots=True)
class Transaction:
    writes: tuple[Write, ...]
    wcu: tuple[tuple[str, int], ...]  # (partition, write units) charged on success


@dataclass(slots=True)
class Read:
    """Consistent reads of items: BatchGetItem (never conflicts; sees committed values) or,
    when `transactional`, TransactGetItems (serializable; cancelled by a write in flight)."""

    items: tuple[str, ...]
    transactional: bool = False


@dataclass(slots=True)
class Sleep:
    seconds: float


@dataclass(slots=True)
class Reply:
    outcome: str
    values: tuple[tuple[int, int], ...] = ()  # (seq, balance) per item: ALL_OLD or read


Request = Transaction | Read
_OK, _CONFLICT, _THROTTLED = Reply(OK), Reply(CONFLICT), Reply(THROTTLED)
Op = Sleep | Request
Debit = Generator[Op, Any, str]


@dataclass(slots=True)
class Item:
    seq: int
    balance: int
    held_until: float = -1.0
    pending: tuple[int, int] | None = None  # written, visible once the hold ends

    def committed(self, now: float) -> tuple[int, int]:
        if self.pending is not None and now >= self.held_until:
            self.seq, self.balance = self.pending
            self.pending = None
        return self.seq, self.balance

    def accepts(self, write: Write, now: float) -> bool:
        seq, balance = self.committed(now)
        return (
            balance + write.delta >= 0
            and write.expect_seq in (None, seq)
            and write.expect_balance in (None, balance)
        )


@dataclass(slots=True)
class Bucket:
    """A partition's write capacity: a token bucket of write units."""

    rate: float
    depth: float
    tokens: float
    updated: float = 0.0

    def refill(self, now: float) -> float:
        self.tokens = min(self.depth, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens


class Table:
    """What the model knows of DynamoDB: per-item transaction holds, conditions with ALL_OLD,
    per-partition write budgets. Every item is its own partition key here."""

    def __init__(self, params: Params, balances: dict[str, int]) -> None:
        self.params = params
        self.items = {name: Item(0, balance) for name, balance in balances.items()}
        self.buckets = {
            name: Bucket(
                params.partition_wcu_per_s, params.partition_burst_wcu, params.partition_burst_wcu
            )
            for name in balances
        }
        self.conflicts = 0
        self.throttles = 0
        self.wcu_used = 0.0

    def handle(self, request: Request, now: float) -> tuple[Reply, float]:
        """(the reply, how long the server keeps it before answering)."""
        if type(request) is Read:
            return self._read(request, now), 0.0
        assert isinstance(request, Transaction)
        for partition, units in request.wcu:
            if self.buckets[partition].refill(now) < units:
                self.throttles += 1
                return _THROTTLED, 0.0
        items = [self.items[write.item] for write in request.writes]
        for item in items:
            if item.held_until > now:
                # DynamoDB does not queue a transaction behind another: it cancels it at once.
                self.conflicts += 1
                self._charge(request, self.params.failed_attempt_wcu)
                return _CONFLICT, 0.0
        for item, write in zip(items, request.writes, strict=True):
            if not item.accepts(write, now):
                self._charge(request, self.params.failed_attempt_wcu)
                return Reply(CONDITION, tuple(item.committed(now) for item in items)), 0.0
        hold = self.params.hold_ms / 1000
        for item, write in zip(items, request.writes, strict=True):
            item.pending = (item.seq + 1, item.balance + write.delta)
            item.held_until = now + hold
        self._charge(request, None)
        return _OK, hold

    def _read(self, request: Read, now: float) -> Reply:
        items = [self.items[name] for name in request.items]
        if request.transactional and any(item.held_until > now for item in items):
            self.conflicts += 1
            return Reply(CONFLICT)
        return Reply(OK, tuple(item.committed(now) for item in items))

    def _charge(self, request: Transaction, flat: float | None) -> None:
        for partition, units in request.wcu:
            spent = units if flat is None else flat
            self.buckets[partition].tokens -= spent
            self.wcu_used += spent

    def total_balance(self) -> int:
        return sum(item.committed(float("inf"))[1] for item in self.items.values())


@dataclass(slots=True)
class Worker:
    """One container: its random stream and what it last learnt of each account."""

    rng: random.Random
    known: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class _Arrival:
    request: Request
    attempt: int  # the SDK's attempt number, from 0


class Simulation:
    """The event loop. Debits are generators that yield Sleep or a request and receive the
    request's Reply. The SDK's own throttling retries (50, 100, 200 ms ...) happen here,
    below the debit, as botocore does them below the ledger."""

    def __init__(self, params: Params, table: Table, seed: int) -> None:
        self.params = params
        self.table = table
        self.now = 0.0
        self.rng = random.Random(seed)  # noqa: S311 - a seeded model, not a secret
        self._queue: list[tuple[float, int, Generator[Any, Any, Any], Any]] = []
        self._order = itertools.count()
        self._way = (params.one_way_ms - params.network_jitter_ms) / 1000
        self._jitter = 2 * params.network_jitter_ms / 1000

    def start(self, process: Generator[Any, Any, Any], at: float) -> None:
        heapq.heappush(self._queue, (at, next(self._order), process, None))

    def run(self) -> None:
        queue, order, push, pop = self._queue, self._order, heapq.heappush, heapq.heappop
        random_, way, jitter = self.rng.random, self._way, self._jitter
        while queue:
            now, _, process, value = pop(queue)
            self.now = now
            if type(value) is _Arrival:
                answer = self._arrive(value)
                if isinstance(answer, _Arrival):  # throttled: the SDK sends it again later
                    push(queue, (self._resend_at(answer), next(order), process, answer))
                    continue
                reply, held = answer
                push(queue, (now + held + way + random_() * jitter, next(order), process, reply))
                continue
            try:
                op = process.send(value)
            except StopIteration:
                continue
            if type(op) is Sleep:
                push(queue, (now + op.seconds, next(order), process, None))
            else:
                push(queue, (now + way + random_() * jitter, next(order), process, _Arrival(op, 0)))

    def _arrive(self, arrival: _Arrival) -> tuple[Reply, float] | _Arrival:
        reply, held = self.table.handle(arrival.request, self.now)
        if reply.outcome == THROTTLED and arrival.attempt + 1 < self.params.sdk_max_attempts:
            return _Arrival(arrival.request, arrival.attempt + 1)
        return reply, held

    def _resend_at(self, arrival: _Arrival) -> float:
        """Back to the client, the SDK's fixed delay, and out again."""
        delay = self.params.sdk_base_ms * 2.0 ** (arrival.attempt - 1) / 1000
        return (
            self.now
            + 2 * self._way
            + (self.rng.random() + self.rng.random()) * self._jitter
            + delay
        )


def _backoff(params: Params, rng: random.Random, retry: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**retry)], in seconds."""
    ceiling = min(params.backoff_cap_ms, params.backoff_base_ms * 2 ** min(retry, 30))
    return rng.uniform(0, ceiling) / 1000


class TimeBudget:
    """Retries bounded in time: each wait is jittered, and none may end past the deadline."""

    def __init__(self, sim: Simulation, rng: random.Random) -> None:
        self.sim, self.rng, self.retries = sim, rng, 0
        self.deadline = sim.now + sim.params.retry_budget_s

    def wait(self) -> Sleep | None:
        """The next backoff, or None when it would end past the deadline."""
        delay = _backoff(self.sim.params, self.rng, self.retries)
        self.retries += 1
        if self.sim.now + delay > self.deadline:
            return None
        return Sleep(delay)


def version_debit(sim: Simulation, worker: Worker, account: str, key: int) -> Debit:
    """Today's ledger: the write pins the account version it expects."""
    p, conflicts = sim.params, 0
    for _ in range(p.version_max_attempts):
        seq, balance = worker.known[account]
        write = Write(account, -p.price, expect_seq=seq)
        reply = yield Transaction((write,), ((account, p.debit_wcu),))
        if reply.outcome == OK:
            worker.known[account] = (seq + 1, balance - p.price)
            return SUCCESS
        if reply.outcome == CONDITION:  # a stale guess: retried at once with the truth
            worker.known[account] = reply.values[0]
            if reply.values[0][1] < p.price:
                return INSUFFICIENT
            continue
        conflicts += 1
        if reply.outcome == THROTTLED or conflicts > p.version_conflict_retries:
            return BUSY
        yield Sleep(_backoff(p, worker.rng, conflicts - 1))
    return BUSY


def balance_debit(sim: Simulation, worker: Worker, account: str, key: int) -> Debit:
    """`ADD balance -price`: exact `balance = :known` twice, then `balance >= :price`."""
    p, budget, attempts = sim.params, TimeBudget(sim, worker.rng), 0
    while True:
        attempts += 1
        seq, known = worker.known[account]
        exact = known if attempts <= p.exact_attempts else None
        write = Write(account, -p.price, expect_balance=exact)
        reply = yield Transaction((write,), ((account, p.debit_wcu),))
        if reply.outcome == OK:
            worker.known[account] = (seq, known - p.price)  # exact only if `exact` was set
            return SUCCESS
        if reply.outcome == CONDITION:
            worker.known[account] = reply.values[0]
            if reply.values[0][1] < p.price:
                return INSUFFICIENT
            continue
        wait = budget.wait()
        if wait is None:
            return BUSY
        yield wait


def shards_debit(n: int) -> Callable[[Simulation, Worker, str, int], Debit]:
    def debit(sim: Simulation, worker: Worker, account: str, key: int) -> Debit:
        """The shard the idempotency key hashes to; a dry one is refilled in the debit."""
        p, budget = sim.params, TimeBudget(sim, worker.rng)
        shards = _shard_names(account, n)
        shard = shards[key % n]
        while True:
            write = Write(shard, -p.price)
            reply = yield Transaction((write,), ((shard, p.debit_wcu),))
            if reply.outcome == OK:
                return SUCCESS
            if reply.outcome == CONDITION:
                outcome = yield from _refill_and_debit(sim, budget, shards, shard)
                if outcome is not None:
                    return outcome
            elif (wait := budget.wait()) is None:
                return BUSY
            else:
                yield wait

    return debit


@cache
def _shard_names(account: str, n: int) -> tuple[str, ...]:
    return tuple(f"{account}/s{i}" for i in range(n))


def _refill_and_debit(
    sim: Simulation, budget: TimeBudget, shards: tuple[str, ...], shard: str
) -> Generator[Op, Any, str | None]:
    """Move half of the richest shard into the dry one and take the price, in one
    transaction; 402 only on a serializable read. None: debit the shard again."""
    p = sim.params
    while True:
        balances = yield from _shard_balances(sim, budget, shards)
        if balances is None:
            return BUSY
        if sum(balances.values()) < p.price:
            return INSUFFICIENT
        donor = max(balances, key=lambda name: balances[name])
        if donor == shard:
            return None
        move = max(p.price, balances[donor] // 2)
        writes = (Write(donor, -move), Write(shard, move - p.price))
        wcu = ((shard, p.debit_wcu), (donor, p.donor_wcu))
        reply = yield Transaction(writes, wcu)
        if reply.outcome == OK:
            return SUCCESS
        if reply.outcome != CONDITION:
            wait = budget.wait()
            if wait is None:
                return BUSY
            yield wait


def _shard_balances(
    sim: Simulation, budget: TimeBudget, shards: tuple[str, ...]
) -> Generator[Op, Any, dict[str, int] | None]:
    """A consistent BatchGetItem; if it adds up to less than the price, a TransactGetItems
    confirms it (a batch can miss credits moving between shards). None: out of budget."""
    reply = yield Read(shards)
    if sum(balance for _, balance in reply.values) >= sim.params.price:
        return {name: value[1] for name, value in zip(shards, reply.values, strict=True)}
    while True:
        reply = yield Read(shards, transactional=True)
        if reply.outcome == OK:
            return {name: value[1] for name, value in zip(shards, reply.values, strict=True)}
        wait = budget.wait()
        if wait is None:
            return None
        yield wait


DEBITS: dict[str, Callable[[Simulation, Worker, str, int], Debit]] = {
    "version": version_debit,
    "balance": balance_debit,
    **{f"shards-{n}": shards_debit(n) for n in (2, 4, 8, 16, 32)},
}


def _shard_count(design: str) -> int:
    return int(design.split("-")[1]) if design.startswith("shards-") else 1


def _items(design: str, accounts: int, credits: int) -> dict[str, int]:
    """Each account's items, its credits split as evenly as they go."""
    n = _shard_count(design)
    if n == 1:
        return {f"a{a}": credits for a in range(accounts)}
    return {
        f"a{a}/s{i}": credits // n + (1 if i < credits % n else 0)
        for a in range(accounts)
        for i in range(n)
    }


@dataclass(slots=True)
class Outcomes:
    started: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)


def _worker_loop(
    sim: Simulation,
    worker: Worker,
    account: str,
    debit: Callable[[Simulation, Worker, str, int], Debit],
    stop: tuple[float, int | None],
    outcomes: Outcomes,
) -> Generator[Op, Any, None]:
    duration, limit = stop
    done = 0
    while sim.now < duration and (limit is None or done < limit):
        started = sim.now
        key = worker.rng.getrandbits(32)  # a fresh idempotency key's hash
        code = yield from debit(sim, worker, account, key)
        outcomes.started.append(started)
        outcomes.ended.append(sim.now)
        outcomes.codes.append(code)
        done += 1
        yield Sleep(sim.params.think_ms / 1000)


def simulate(
    design: str,
    concurrency: int,
    *,
    params: Params | None = None,
    accounts: int = 1,
    credits: int = 10**12,
    duration_s: float = 10.0,
    requests_per_worker: int | None = None,
    seed: int = 14,
) -> dict[str, Any]:
    """One run: `concurrency` workers spread over `accounts` accounts (worker i on account
    i % accounts) for `duration_s` simulated seconds, or `requests_per_worker` debits each.
    Debits/s are per account, counted over the run (the duration, or until the last answer
    when the run is a fixed number of requests)."""
    params = params or Params()
    table = Table(params, _items(design, accounts, credits))
    sim = Simulation(params, table, seed)
    outcomes = Outcomes()
    stop = (duration_s if requests_per_worker is None else float("inf"), requests_per_worker)
    for index in range(concurrency):
        account = f"a{index % accounts}"
        rng = random.Random(seed * 1_000_003 + index)  # noqa: S311 - as above
        worker = Worker(rng, {account: (0, credits)})
        loop = _worker_loop(sim, worker, account, DEBITS[design], stop, outcomes)
        sim.start(loop, worker.rng.uniform(0, params.think_ms / 1000))
    sim.run()
    return _summary(design, concurrency, accounts, params, table, outcomes, stop[0], credits)


def _summary(
    design: str,
    concurrency: int,
    accounts: int,
    params: Params,
    table: Table,
    outcomes: Outcomes,
    duration_s: float,
    credits: int,
) -> dict[str, Any]:
    count = len(outcomes.codes)
    span = duration_s if math.isfinite(duration_s) else max(outcomes.ended, default=0.0)
    ok_in_span = sum(
        1
        for code, end in zip(outcomes.codes, outcomes.ended, strict=True)
        if code == SUCCESS and end <= span
    )
    latencies = sorted(
        (e - s) * 1000 for s, e in zip(outcomes.started, outcomes.ended, strict=True)
    )
    tally = {code: outcomes.codes.count(code) for code in (SUCCESS, INSUFFICIENT, BUSY)}
    return {
        "design": design,
        "concurrency": concurrency,
        "accounts": accounts,
        "hold_ms": params.hold_ms,
        "debits_per_s": ok_in_span / span / accounts if span else 0.0,
        "rate_503": tally[BUSY] / count if count else 0.0,
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "conflicts_per_debit": table.conflicts / count if count else 0.0,
        "throttles_per_debit": table.throttles / count if count else 0.0,
        "wcu_per_s": table.wcu_used / span / accounts if span else 0.0,
        "debits": count,
        "succeeded": tally[SUCCESS],
        "refused_402": tally[INSUFFICIENT],
        "busy_503": tally[BUSY],
        "credits": credits,
        "credits_left": table.total_balance(),
        "credits_taken": credits * accounts - table.total_balance(),
    }


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sweep(
    designs: Iterable[str] = DESIGNS,
    concurrency: Iterable[int] = CONCURRENCY,
    params: Params | None = None,
    duration_s: float = 10.0,
) -> list[dict[str, Any]]:
    return [
        simulate(design, c, params=params, duration_s=duration_s)
        for design in designs
        for c in concurrency
    ]


def _best(rows: list[dict[str, Any]], design: str, *, most_503: float = 1.0) -> float:
    """The highest debits/s per account among a design's runs with at most that 503 rate."""
    return max(
        (r["debits_per_s"] for r in rows if r["design"] == design and r["rate_503"] <= most_503),
        default=0.0,
    )


def report(duration_s: float = 10.0) -> dict[str, Any]:
    """The default run: the sweep at H = 5 ms; the 1-account / 8-accounts ratio at C = 8;
    each design's best debits/s per account at H = 2, 5 and 10 ms, at any 503 rate and
    with at most 1 % of 503 (the other holds over C = 1, 16, 64 and 200 for half the time:
    every design's rate grows with C in every hold, see docs/LEDGER_SCALING.md); the
    issue's bursts (200 debits on credits for 200, 40 on credits for 10)."""
    base = Params()
    rows = sweep(params=base, duration_s=duration_s)
    ratio = {}
    for design in DESIGNS:
        one = next(r for r in rows if r["design"] == design and r["concurrency"] == 8)
        eight = simulate(design, 8, params=base, accounts=8, duration_s=duration_s)
        # debits_per_s is per account: the 8-account run's total is 8 times it
        ratio[design] = one["debits_per_s"] / (8 * eight["debits_per_s"])
    best: dict[str, dict[str, float]] = {design: {} for design in DESIGNS}
    for hold in HOLDS_MS:
        params = replace(base, hold_ms=hold)
        held = rows if params == base else sweep(DESIGNS, (1, 16, 64, 200), params, duration_s / 2)
        for design in DESIGNS:
            best[design][f"{hold:g}"] = _best(held, design)
            best[design][f"{hold:g} (503 <= 1%)"] = _best(held, design, most_503=0.01)
    bursts = [
        simulate(design, c, credits=k, requests_per_worker=1)
        for design in DESIGNS
        for c, k in ((200, 200), (40, 10))
    ]
    return {
        "params": asdict(base),
        "duration_s": duration_s,
        "rows": rows,
        "ratio_1_over_8": ratio,
        "best": best,
        "bursts": bursts,
    }


def render(result: dict[str, Any]) -> list[str]:
    """The compact table: one line per (design, C), then the summaries."""
    lines = [
        f"one account, H = {result['params']['hold_ms']:g} ms, "
        f"{result['duration_s']:g} simulated s per run",
        f"{'design':<10} {'C':>4} {'debits/s':>9} {'503 rate':>9} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'conflicts/debit':>16}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['design']:<10} {r['concurrency']:>4} {r['debits_per_s']:>9.1f} "
            f"{r['rate_503']:>9.3f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
            f"{r['conflicts_per_debit']:>16.2f}"
        )
    holds = [f"{hold:g}" for hold in HOLDS_MS]
    lines.append("")
    lines.append("best debits/s per account over C (in brackets: with at most 1 % of 503)")
    lines.append(
        f"{'design':<10} {'8 on 1 / 8 on 8':>16} "
        + " ".join(f"{'H=' + h + ' ms':>14}" for h in holds)
    )
    for design in DESIGNS:
        best = result["best"][design]
        cells = [f"{best[h]:>6.0f} ({best[h + ' (503 <= 1%)']:>5.0f})" for h in holds]
        lines.append(
            f"{design:<10} {result['ratio_1_over_8'][design]:>16.2f} "
            + " ".join(f"{c:>14}" for c in cells)
        )
    lines.append("")
    lines.append("bursts, one debit per worker (C x 1 on credits for K): 200 / 402 / 503")
    for r in result["bursts"]:
        lines.append(
            f"{r['design']:<10} C={r['concurrency']:<3} K={r['credits']:<4}"
            f" {r['succeeded']:>4} / {r['refused_402']:>3} / {r['busy_503']:>3}"
            f"  p95 {r['p95_ms']:.0f} ms"
        )
    return lines


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers `make bench` shows, from a report."""

    def burst(design: str, concurrency: int) -> dict[str, Any]:
        return next(
            r for r in result["bursts"] if r["design"] == design and r["concurrency"] == concurrency
        )

    def at(design: str, concurrency: int) -> dict[str, Any]:
        return next(
            r for r in result["rows"] if r["design"] == design and r["concurrency"] == concurrency
        )

    best = {design: result["best"][design]["5 (503 <= 1%)"] for design in DESIGNS}
    return {
        "ledger_sim_version_max_per_s": best["version"],
        "ledger_sim_balance_max_per_s": best["balance"],
        "ledger_sim_shards_4_max_per_s": best["shards-4"],
        "ledger_sim_shards_16_max_per_s": best["shards-16"],
        "ledger_sim_version_burst_200_503": burst("version", 200)["busy_503"],
        "ledger_sim_balance_burst_200_503": burst("balance", 200)["busy_503"],
        "ledger_sim_balance_503_rate_c200": at("balance", 200)["rate_503"],
        "ledger_sim_ratio_version": result["ratio_1_over_8"]["version"],
        "ledger_sim_ratio_balance": result["ratio_1_over_8"]["balance"],
        "ledger_sim_ratio_shards_16": result["ratio_1_over_8"]["shards-16"],
    }


def bench_ledger_simulation() -> dict[str, Any]:
    """For benchmarks/run.py: the headline numbers, and the whole report under one key."""
    started = time.perf_counter()
    result = report()
    result["wall_s"] = time.perf_counter() - started
    return _headline(result) | {"ledger_simulation": result}


def _info(value: float) -> bool:
    return True


TARGETS: list[tuple[str, str, str, Any, str]] = [
    (
        "sim debits/s/account (<=1% 503), version (today)",
        "ledger_sim_version_max_per_s",
        "",
        _info,
        "report",
    ),
    (
        "sim debits/s/account (<=1% 503), balance (1 item)",
        "ledger_sim_balance_max_per_s",
        "",
        _info,
        "report",
    ),
    (
        "sim debits/s/account (<=1% 503), shards-4",
        "ledger_sim_shards_4_max_per_s",
        "",
        lambda v: v >= 500,
        ">= 500",
    ),
    (
        "sim debits/s/account (<=1% 503), shards-16",
        "ledger_sim_shards_16_max_per_s",
        "",
        lambda v: v >= 1000,
        ">= 1000",
    ),
    (
        "sim 200-debit burst, balance: 503s",
        "ledger_sim_balance_burst_200_503",
        "",
        lambda v: v == 0,
        "== 0",
    ),
]


def notes(results: dict[str, Any]) -> list[str]:
    return [
        f"(ledger simulation, H = 5 ms: 200-debit burst on today's design "
        f"{results['ledger_sim_version_burst_200_503']:.0f} x 503; balance design at C = 200 "
        f"sustained {results['ledger_sim_balance_503_rate_c200']:.1%} 503; 8 workers on 1 "
        f"account / on 8: version {results['ledger_sim_ratio_version']:.2f}, balance "
        f"{results['ledger_sim_ratio_balance']:.2f}, shards-16 "
        f"{results['ledger_sim_ratio_shards_16']:.2f}; docs/LEDGER_SCALING.md)"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.add_argument("--duration", type=float, default=10.0, help="simulated s per run")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = report(args.duration)
    result["wall_s"] = time.perf_counter() - started
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        lines = render(result)
        lines.append(f"({result['wall_s']:.1f} s of wall time; docs/LEDGER_SCALING.md)")
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
