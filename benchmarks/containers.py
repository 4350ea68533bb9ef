"""Lambda containers as separate processes, for concurrency tests and benchmarks.

Each container is a Python process that imports the template's real handlers, configured
like a function of a running local stack (its environment, from the stack's state file):
its storage calls go over the network to the stack's embedded AWS, and its caches (model
cache, ledger account states, AWS clients) are its own, as in Lambda. So many containers
really race each other on one account, which threads sharing one process cannot show.

    results = run_containers(environment, [requests_for_container_1, ...], threads=25)

A request is an API Gateway HTTP API (v2) event built by `api_event`; a result is
`{"function", "status", "retry_after", "body", "seconds", "started_at", "ended_at"}` (the
last two wall-clock seconds: `span` gives the time a batch of results took). All containers
import their handlers first, then start together. Run directly
(`python benchmarks/containers.py FOLDER N`), this module is container N: it reads its job
from FOLDER and writes its results there (its stdout is the handlers' log).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def api_event(
    method: str,
    route: str,
    path: str,
    *,
    token: str,
    body: Any = None,
    key: str | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An HTTP API (v2) event for `method path` (`route` as in the template, e.g.
    `/models/{id}/predictions`), with a bearer token and an Idempotency-Key when given."""
    event: dict[str, Any] = json.loads((ROOT / "events" / "predictions_create.json").read_text())
    headers = {
        key_: value
        for key_, value in event["headers"].items()
        if key_ not in ("authorization", "idempotency-key", "content-length")
    }
    headers["authorization"] = f"Bearer {token}"
    if key is not None:
        headers["idempotency-key"] = key
    text = "" if body is None else json.dumps(body)
    headers["content-length"] = str(len(text.encode()))
    event.update(
        routeKey=f"{method} {route}",
        rawPath=path,
        headers=headers,
        pathParameters=params or {},
        body=text or None,
    )
    event["requestContext"] = {
        **event["requestContext"],
        "routeKey": f"{method} {route}",
        "http": {**event["requestContext"]["http"], "method": method, "path": path},
    }
    return event


def run_containers(
    environment: dict[str, str],
    containers: list[list[dict[str, Any]]],
    *,
    threads: int,
    warm_up: list[dict[str, Any]] | None = None,
    timeout: float = 600,
) -> list[dict[str, Any]]:
    """Start one process per entry of `containers` (its requests: {"function", "event"}),
    wait until every one has imported its handlers and run `warm_up` (read-only requests)
    once on each of its threads, start them together, and return every result, in container
    order and each container's request order. `threads` requests of a container run at
    once.

    Warming matters: each thread stands for a warm Lambda container, whose SDK clients
    already exist; botocore makes clients slowly, so 200 threads making theirs at the start
    would measure client creation, not the ledger."""
    env = {**os.environ, **environment}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        processes = []
        for number, requests in enumerate(containers):
            job = work / f"job-{number}.json"
            job.write_text(
                json.dumps({"requests": requests, "threads": threads, "warm_up": warm_up or []})
            )
            with (work / f"log-{number}.txt").open("w") as log:  # the handlers log to stdout
                processes.append(
                    subprocess.Popen(
                        [sys.executable, str(Path(__file__).resolve()), str(work), str(number)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
        try:
            _wait_for(work, processes, "ready", timeout)
            (work / "go").touch()
            _wait_for(work, processes, "result", timeout)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()
        results: list[dict[str, Any]] = []
        for number in range(len(containers)):
            results += json.loads((work / f"result-{number}.json").read_text())
        return results


def span(results: list[dict[str, Any]]) -> float:
    """Seconds from the first request's start to the last one's end."""
    return float(max(r["ended_at"] for r in results) - min(r["started_at"] for r in results))


def _wait_for(
    work: Path, processes: list[subprocess.Popen[bytes]], what: str, timeout: float
) -> None:
    """Wait until every container wrote `<what>-<n>`; raise with its log when one died."""
    deadline = time.monotonic() + timeout
    pending = set(range(len(processes)))
    while pending:
        for number in list(pending):
            if (work / f"{what}-{number}.json").exists():
                pending.discard(number)
            elif processes[number].poll() is not None or time.monotonic() > deadline:
                log = (work / f"log-{number}.txt").read_text()[-3000:]
                raise RuntimeError(f"container {number} gave no {what}:\n{log}")
        time.sleep(0.01)


def _serve(work: Path, number: int) -> None:
    """One container: import the handlers its job names, say ready, wait for go, run."""
    from creditml.devstack.runtime import invoke, load_handler, thread_loop
    from creditml.devstack.template import Template
    from creditml.storage.clients import size_pools

    job = json.loads((work / f"job-{number}.json").read_text())
    template = Template(ROOT / "template.yaml")
    names = {request["function"] for request in job["requests"]}
    specs = {name: template.functions[name] for name in names}
    size_pools(job["threads"])
    asyncio.set_event_loop(thread_loop())
    for spec in specs.values():  # imported before the start, as a warm container has
        load_handler(spec)
    warm = threading.Barrier(job["threads"])

    def warm_up() -> None:
        for request in job["warm_up"]:
            invoke(template.functions[request["function"]], copy.deepcopy(request["event"]))

    def warm_thread(_: int) -> None:
        warm_up()
        warm.wait()  # every thread warms itself: none takes a second turn

    warm_up()  # first alone: the process's shared clients are made once, not raced for

    with ThreadPoolExecutor(max_workers=job["threads"]) as pool:
        list(pool.map(warm_thread, range(job["threads"])))
        _write(work / f"ready-{number}.json", [])
        while not (work / "go").exists():
            time.sleep(0.002)
        results = list(pool.map(lambda request: _call(specs, request), job["requests"]))
    _write(work / f"result-{number}.json", results)


def _call(specs: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """One request on this thread, as one invocation of a warm container."""
    from creditml.devstack.runtime import invoke

    name = request["function"]
    started_at = time.time()
    started = time.perf_counter()
    response = invoke(specs[name], copy.deepcopy(request["event"]))
    seconds = time.perf_counter() - started
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    body = response.get("body") or ""
    return {
        "function": name,
        "status": response["statusCode"],
        "retry_after": headers.get("retry-after"),
        "body": json.loads(body) if body.startswith("{") else body,
        "seconds": seconds,
        "started_at": started_at,
        "ended_at": started_at + seconds,
    }


def _write(path: Path, value: Any) -> None:
    """Write JSON where the driver only ever sees it whole."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value))
    partial.rename(path)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]))
