"""The soak's CI variant: benchmarks/soak.py for about a minute against the shared stack,
held to the same criteria as `make soak` (error rate <= 0.1 %, stack memory flat over the
second half, ledger verify passes)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.conftest import benchmark_module
from tests.e2e.conftest import RunningStack

SECONDS = 75
USERS = 8


def _soak_module() -> ModuleType:
    return benchmark_module("soak")


@pytest.fixture(scope="module")
def soaked(stack: RunningStack) -> tuple[Any, str]:
    """One short soak against the shared stack, and its printed table."""
    soak = _soak_module()
    result = soak.soak(
        stack.url, stack.process.pid, stack.cwd, seconds=SECONDS, users=USERS, sample_seconds=1
    )
    return result, soak.table(result)


@pytest.mark.soak
def test_a_short_soak_has_no_errors_and_the_ledger_adds_up(soaked: tuple[Any, str]) -> None:
    result, report = soaked
    assert result.stats.requests > SECONDS * 5, report  # traffic actually flowed
    assert result.error_rate <= _soak_module().MAX_ERROR_RATE, report
    assert result.ledger_ok, report


@pytest.mark.soak
def test_a_short_soak_keeps_the_stacks_memory_flat(soaked: tuple[Any, str]) -> None:
    result, report = soaked
    assert result.memory_ok, report
