"""The soak's pass/fail arithmetic (benchmarks/soak.py): memory growth is measured between
the run's halfway point and its end, with an allowance for the data written meanwhile."""

from __future__ import annotations

from types import ModuleType

from tests.conftest import benchmark_module

MIB = 1024 * 1024


def _soak() -> ModuleType:
    return benchmark_module("soak")


def result(samples: list[tuple[float, int]], writes: list[float]) -> object:
    soak = _soak()
    stats = soak.Stats()
    stats.writes = writes
    return soak.SoakResult(100.0, stats, samples, True, "ok", max_growth_mb=32)


def test_growth_compares_the_last_tenth_with_the_middle() -> None:
    samples = [(t, (100 + t) * MIB) for t in range(0, 101)]  # 1 MiB a second, for ever
    half, last, growth = _soak().memory_growth(samples, 100.0)
    assert half == 150 * MIB
    assert last == 195 * MIB
    assert growth == 45 * MIB


def test_a_steady_climb_fails_unless_the_data_written_explains_it() -> None:
    climbing = [(float(t), (100 + t) * MIB) for t in range(0, 101)]
    assert not result(climbing, writes=[]).memory_ok  # type: ignore[attr-defined]
    # 2,000 writes in the second half: 2,000 x 12 KiB = 23.4 MiB on top of the 32 MiB
    many = [50.0 + n / 40 for n in range(2000)]
    assert result(climbing, writes=many).memory_ok  # type: ignore[attr-defined]
    # Writes of the first half are warm-up, not an excuse for the second.
    early = [n / 40 for n in range(2000)]
    assert not result(climbing, writes=early).memory_ok  # type: ignore[attr-defined]


def test_flat_memory_passes() -> None:
    flat = [(float(t), 300 * MIB + (t % 3) * MIB) for t in range(0, 101)]
    assert result(flat, writes=[]).memory_ok  # type: ignore[attr-defined]
