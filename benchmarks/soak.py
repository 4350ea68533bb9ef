"""Soak: mixed traffic from many users against the local stack for a while.

    .venv/bin/python benchmarks/soak.py                   # or: make soak (10 minutes)
    .venv/bin/python benchmarks/soak.py --minutes 2 --users 8
    .venv/bin/python benchmarks/soak.py --url http://127.0.0.1:3000 --state .creditml/dev-stack.json

Starts `creditml dev --port 0` in a copy of the project (or drives a running stack given by
--url, whose process id comes from its state file), and has --users clients each register,
log in, top up, predict on the demo model (some requests deliberately beyond the balance:
402), read their history and balance, and list models. Then prints a table and checks:

  error rate       <= 0.1 %: 5xx, refused connections, timeouts, and any status the scenario
                   did not expect (a 402 on a deliberate overdraft is expected, not an error)
  memory flat      RSS of the stack's process, sampled every --sample-seconds: the median of
                   the last tenth of the run exceeds the median around its halfway point by
                   less than --max-growth-mb (the first half is warm-up: caches, pools) plus
                   the data the embedded AWS keeps in memory for what the second half wrote
                   (STORED_KIB_PER_WRITE per successful write: a DynamoDB on AWS keeps it
                   outside the process, moto inside)
  ledger           `creditml ledger verify` passes at the end (balance == sum of entries)

Exit status 0 when all three pass. tests/e2e/test_soak.py runs a short variant in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CREDITML = str(Path(sys.executable).with_name("creditml"))
PASSWORD = "soak test password"  # noqa: S105 (throwaway accounts of a local stack)
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
MAX_ERROR_RATE = 0.001
# What moto keeps per written ledger entry, its stream record included: 7.8 KiB measured
# (2,000 debit-shaped items into a table with a NEW_IMAGE stream, RSS before and after),
# rounded up for the counters, sessions and usage items a write also touches.
STORED_KIB_PER_WRITE = 12
WRITES = {("predict", 200), ("top_up", 201), ("register", 201), ("login", 200)}


@dataclass
class Stats:
    """Every request's operation, status and latency (thread-safe appends)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    writes: list[float] = field(default_factory=list)  # when each successful write ended
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self, operation: str, status: int, seconds: float, expected: tuple[int, ...]
    ) -> None:
        with self.lock:
            self.latencies[operation].append(seconds)
            self.statuses[(operation, status)] += 1
            if status not in expected:
                self.errors[f"{operation} -> {status}"] += 1
            if (operation, status) in WRITES:
                self.writes.append(time.monotonic() - self.started)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class Client:
    """One simulated user: its own connection and account."""

    def __init__(self, url: str, stats: Stats, rng: random.Random) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.stats = stats
        self.rng = rng
        self.token = ""

    def call(
        self, operation: str, method: str, path: str, expected: tuple[int, ...], **kwargs: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError:
            self.stats.record(operation, 0, time.perf_counter() - started, expected)
            return None
        self.stats.record(operation, response.status_code, time.perf_counter() - started, expected)
        return response

    def auth(self, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key:
            headers["Idempotency-Key"] = key
        return headers

    def sign_up(self) -> bool:
        email = f"soak-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD}
        self.call("register", "POST", "/auth/register", (201,), json=body)
        response = self.call("login", "POST", "/auth/login", (200,), json=body)
        if response is None or response.status_code != 200:
            return False
        self.token = response.json()["access_token"]
        return True

    def step(self, model_id: str) -> None:
        """One action, picked with a traffic mix's weights."""
        roll = self.rng.random()
        if roll < 0.45:
            rows = self.rng.randint(1, 5)
            self.call(
                "predict", "POST", f"/models/{model_id}/predictions", (200, 402),
                json={"inputs": [ROW] * rows}, headers=self.auth(str(uuid.uuid4())),
            )  # fmt: skip
        elif roll < 0.50:  # far beyond any balance: must be 402, and cost nothing
            self.call(
                "predict_402", "POST", f"/models/{model_id}/predictions", (402,),
                json={"inputs": [ROW] * 5000}, headers=self.auth(str(uuid.uuid4())),
            )  # fmt: skip
        elif roll < 0.60:
            amount = self.rng.randint(10, 200)
            self.call(
                "top_up", "POST", "/billing/top-ups", (201,),
                json={"amount": amount}, headers=self.auth(str(uuid.uuid4())),
            )  # fmt: skip
        elif roll < 0.72:
            self.call("history", "GET", "/predictions?limit=20", (200,), headers=self.auth())
        elif roll < 0.84:
            self.call("balance", "GET", "/billing/balance", (200,), headers=self.auth())
        elif roll < 0.94:
            self.call("models", "GET", "/models", (200,), headers=self.auth())
        else:
            self.call("me", "GET", "/users/me", (200,), headers=self.auth())


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for {pid}")


def sample_memory(
    pid: int, every: float, stop: threading.Event, samples: list[tuple[float, int]]
) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, rss_bytes(pid)))
        stop.wait(every)


def memory_growth(samples: list[tuple[float, int]], duration: float) -> tuple[int, int, int]:
    """(RSS around halfway, RSS at the end, growth): medians of the samples in the tenth of
    the run around its midpoint and in its last tenth."""
    window = duration / 10
    middle = [rss for t, rss in samples if abs(t - duration / 2) <= window / 2] or [samples[0][1]]
    end = [rss for t, rss in samples if t >= duration - window] or [samples[-1][1]]
    half, last = int(statistics.median(middle)), int(statistics.median(end))
    return half, last, last - half


def demo_model_id(url: str) -> str:
    """The seeded demo model's id (found with a throwaway account)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        body = {"email": f"soak-probe-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
        http.post("/auth/register", json=body).raise_for_status()
        token = http.post("/auth/login", json=body).json()["access_token"]
        listing = http.get("/models", headers={"Authorization": f"Bearer {token}"}).json()
    items = listing["items"] if isinstance(listing, dict) else listing
    return str(next(item["id"] for item in items if item["name"] == "iris-demo"))


@dataclass
class SoakResult:
    duration: float
    stats: Stats
    samples: list[tuple[float, int]]
    ledger_ok: bool
    ledger_output: str
    max_growth_mb: float

    @property
    def error_rate(self) -> float:
        return self.stats.error_count / max(1, self.stats.requests)

    @property
    def growth(self) -> tuple[int, int, int]:
        return memory_growth(self.samples, self.duration)

    @property
    def stored_allowance(self) -> int:
        """Bytes the embedded AWS keeps for the data written in the second half."""
        written = sum(1 for moment in self.stats.writes if moment >= self.duration / 2)
        return written * STORED_KIB_PER_WRITE * 1024

    @property
    def memory_ok(self) -> bool:
        return self.growth[2] < self.max_growth_mb * 1024 * 1024 + self.stored_allowance

    @property
    def passed(self) -> bool:
        return self.error_rate <= MAX_ERROR_RATE and self.memory_ok and self.ledger_ok


def drive(url: str, users: int, seconds: float, seed: int, stats: Stats) -> None:
    """Run `users` clients for `seconds` against the stack at `url`."""
    model_id = demo_model_id(url)
    deadline = time.monotonic() + seconds

    def user(index: int) -> None:
        client = Client(url, stats, random.Random(seed + index))  # noqa: S311 (traffic mix)
        try:
            if not client.sign_up():
                return
            while time.monotonic() < deadline:
                client.step(model_id)
        finally:
            client.http.close()

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)


def verify_ledger(cwd: Path) -> tuple[bool, str]:
    done = subprocess.run(
        [CREDITML, "ledger", "verify"], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def soak(
    url: str,
    pid: int,
    cwd: Path,
    *,
    seconds: float,
    users: int,
    sample_seconds: float = 2.0,
    max_growth_mb: float = 32.0,
    seed: int = 0,
) -> SoakResult:
    """Drive the stack at `url` (process `pid`, state file under `cwd`) and measure."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(
        target=sample_memory, args=(pid, sample_seconds, stop, samples), daemon=True
    )
    stats = Stats()
    started = stats.started
    sampler.start()
    try:
        drive(url, users, seconds, seed, stats)
    finally:
        stop.set()
        sampler.join()
    duration = time.monotonic() - started
    ledger_ok, output = verify_ledger(cwd)
    return SoakResult(duration, stats, samples, ledger_ok, output, max_growth_mb)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def table(result: SoakResult) -> str:
    stats = result.stats
    lines = [f"{'operation':<12} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8}"]
    for operation, values in sorted(stats.latencies.items()):
        errors = sum(n for key, n in stats.errors.items() if key.startswith(operation + " "))
        lines.append(
            f"{operation:<12} {len(values):>9} {errors:>7} "
            f"{_ms(values, 0.5):>8.1f} {_ms(values, 0.95):>8.1f}"
        )
    half, last, growth = result.growth
    mib = 1024 * 1024
    lines += [
        "",
        f"duration        {result.duration:.0f} s, {stats.requests} requests "
        f"({stats.requests / max(result.duration, 1):.0f}/s)",
        f"error rate      {result.error_rate:.4%} (limit {MAX_ERROR_RATE:.1%})"
        + (f"  {dict(stats.errors)}" if stats.errors else ""),
        f"stack RSS       start {result.samples[0][1] / mib:.0f} MiB, halfway {half / mib:.0f} "
        f"MiB, end {last / mib:.0f} MiB, growth over the last half {growth / mib:+.1f} MiB "
        f"(limit {result.max_growth_mb:.0f} MiB + {result.stored_allowance / mib:.1f} MiB "
        f"for the data stored meanwhile)",
        f"ledger verify   {'ok' if result.ledger_ok else 'FAILED'}: "
        f"{result.ledger_output.splitlines()[-1] if result.ledger_output else ''}",
        f"result          {'PASS' if result.passed else 'FAIL'}",
    ]
    return "\n".join(lines)


def start_stack(folder: Path) -> tuple[subprocess.Popen[str], str]:
    """`creditml dev --port 0` in a copy of the project; returns it and its API URL."""
    shutil.copy(ROOT / "template.yaml", folder / "template.yaml")
    shutil.copytree(ROOT / "functions", folder / "functions")
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    process = subprocess.Popen(
        [CREDITML, "dev", "--port", "0"],
        cwd=folder,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Press Ctrl-C" in line:
            break
    state = json.loads((folder / ".creditml" / "dev-stack.json").read_text())
    # Keep draining its output so the stack never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()
    return process, str(state["api_url"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--url", help="a running stack (default: start one)")
    parser.add_argument("--state", type=Path, default=ROOT / ".creditml" / "dev-stack.json")
    parser.add_argument("--sample-seconds", type=float, default=2.0)
    parser.add_argument("--max-growth-mb", type=float, default=32.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = {
        "seconds": args.minutes * 60,
        "users": args.users,
        "sample_seconds": args.sample_seconds,
        "max_growth_mb": args.max_growth_mb,
        "seed": args.seed,
    }
    if args.url:
        pid = int(json.loads(args.state.read_text())["pid"])
        result = soak(args.url, pid, args.state.parent.parent, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="creditml-soak-") as folder:
            process, url = start_stack(Path(folder))
            try:
                print(f"soaking {url} for {args.minutes:g} min with {args.users} users")
                result = soak(url, process.pid, Path(folder), **options)
            finally:
                process.terminate()
                process.wait(timeout=60)
    print(table(result))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
