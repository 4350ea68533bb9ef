"""The ledger simulation (benchmarks/ledger_simulation.py) behaves as DynamoDB and the
designs it models must: properties that break if the model is wrong, not speed numbers."""

from __future__ import annotations

import json
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import benchmark_module

pytestmark = pytest.mark.unit

DESIGNS = ("version", "balance", "shards-4", "shards-8", "shards-16")
NEW_DESIGNS = ("balance", "shards-4", "shards-16")


def _sim() -> ModuleType:
    return benchmark_module("ledger_simulation")


def simulate(design: str, concurrency: int, **options: Any) -> dict[str, Any]:
    return _sim().simulate(design, concurrency, **options)  # type: ignore[no-any-return]


@pytest.mark.parametrize("design", DESIGNS)
def test_one_worker_never_conflicts(design: str) -> None:
    run = simulate(design, 1, duration_s=1.0)
    assert run["conflicts_per_debit"] == 0
    assert run["busy_503"] == 0
    assert run["succeeded"] == run["debits"] > 50


@pytest.mark.parametrize("design", DESIGNS)
def test_forty_debits_on_credits_for_ten_are_ten_successes_and_thirty_402(design: str) -> None:
    # Given an account with credits for 10 (split over the shards, most of them empty)
    # When 40 workers debit it at once
    run = simulate(design, 40, credits=10, requests_per_worker=1)
    # Then exactly 10 succeed, the rest are refused for credits, and the money adds up
    assert (run["succeeded"], run["refused_402"], run["busy_503"]) == (10, 30, 0)
    assert run["credits_taken"] == 10
    assert run["credits_left"] == 0


@pytest.mark.parametrize("design", DESIGNS)
def test_money_is_conserved_under_sustained_contention(design: str) -> None:
    run = simulate(design, 16, credits=300, duration_s=3.0)
    assert run["succeeded"] == run["credits_taken"] == 300  # every credit, never more
    assert run["credits_left"] == 0
    assert run["refused_402"] > 0
    if design != "version":
        assert run["busy_503"] == 0


def test_the_old_design_answers_503_more_often_as_concurrency_grows() -> None:
    rates = [simulate("version", c, duration_s=2.0)["rate_503"] for c in (1, 2, 8, 64)]
    assert rates[0] == 0
    assert rates == sorted(rates)
    assert len(set(rates)) == len(rates)
    assert rates[-1] > 0.3


def test_a_burst_of_200_reproduces_the_issue_and_the_balance_design_fixes_it() -> None:
    # Issue 14 measured 48 x 200 and 152 x 503 for 200 predictions on one account.
    old = simulate("version", 200, credits=200, requests_per_worker=1)
    assert old["busy_503"] > 100
    assert old["succeeded"] == old["credits_taken"]
    new = simulate("balance", 200, credits=200, requests_per_worker=1)
    assert (new["succeeded"], new["busy_503"], new["credits_left"]) == (200, 0, 0)


@pytest.mark.parametrize(("design", "partitions"), [("balance", 1), ("shards-4", 4)])
def test_throughput_never_exceeds_the_partitions_write_budget(design: str, partitions: int) -> None:
    # Given transactions that hold items so briefly that capacity, not conflicts, binds
    sim = _sim()
    params = replace(sim.Params(), hold_ms=0.2)
    seconds = 2.0
    run = simulate(design, 64, params=params, duration_s=seconds)
    budget = (params.partition_wcu_per_s * seconds + params.partition_burst_wcu) / params.debit_wcu
    assert run["throttles_per_debit"] > 0
    assert run["debits_per_s"] * seconds <= partitions * budget
    assert run["debits_per_s"] * seconds >= 0.85 * partitions * budget


def test_shards_scale_throughput_with_their_number() -> None:
    rates = {n: simulate(f"shards-{n}", 200, duration_s=1.0)["debits_per_s"] for n in (4, 8, 16)}
    one_item = simulate("balance", 200, duration_s=1.0)["debits_per_s"]
    assert rates[4] > 3 * one_item
    assert rates[8] > 1.6 * rates[4]
    assert rates[16] > 1.6 * rates[8]


def test_eight_accounts_are_independent() -> None:
    one = simulate("balance", 1, duration_s=1.0)
    eight = simulate("balance", 8, accounts=8, duration_s=1.0)
    assert eight["conflicts_per_debit"] == 0
    assert eight["debits_per_s"] == pytest.approx(one["debits_per_s"], rel=0.05)


@pytest.mark.parametrize("design", NEW_DESIGNS)
def test_a_run_is_a_function_of_its_seed(design: str) -> None:
    first = simulate(design, 32, duration_s=0.5, seed=3)
    assert simulate(design, 32, duration_s=0.5, seed=3) == first
    assert simulate(design, 32, duration_s=0.5, seed=4) != first


def test_a_transaction_arriving_at_a_held_item_is_cancelled_not_queued() -> None:
    sim = _sim()
    table = sim.Table(sim.Params(), {"a0": 10})
    debit = sim.Transaction((sim.Write("a0", -1),), (("a0", 5),))
    reply, held = table.handle(debit, 1.0)
    assert (reply.outcome, held) == (sim.OK, 0.005)
    reply, held = table.handle(debit, 1.004)  # inside the 5 ms hold
    assert (reply.outcome, held) == (sim.CONFLICT, 0.0)
    stale = sim.Transaction((sim.Write("a0", -1, expect_seq=0),), (("a0", 5),))
    reply, _ = table.handle(stale, 1.006)  # after it: the condition sees the new version
    assert reply.outcome == sim.CONDITION
    assert reply.values == ((1, 9),)  # ALL_OLD: the true state comes back


def test_the_cli_prints_a_table_and_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = _sim()
    result = sim.report(duration_s=0.05)  # one short report, printed both ways
    monkeypatch.setattr(sim, "report", lambda duration_s: result)
    assert sim.main([]) == 0
    table = capsys.readouterr().out
    assert sim.main(["--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert "shards-16" in table
    assert "8 on 1 / 8 on 8" in table
    assert {row["design"] for row in parsed["rows"]} == set(DESIGNS)
    headline = sim._headline(parsed)
    assert {key for _, key, *_ in sim.TARGETS} <= set(headline)
