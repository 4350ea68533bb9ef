"""Recompute every account's balance from its ledger and report what does not add up."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from creditml.billing.entries import AccountState, LedgerEntry


@dataclass(frozen=True)
class Mismatch:
    account_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.account_id}: {self.problem}"


@dataclass(frozen=True)
class VerifyReport:
    accounts: int
    entries: int
    mismatches: list[Mismatch]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify_ledger(
    accounts: Iterable[tuple[str, AccountState | None, list[LedgerEntry]]],
) -> VerifyReport:
    """Check, for every account: balance == sum of its entries' amounts; the balance and
    every balance_after are >= 0; the version equals the entry count. Then the chain: in
    sequence order, each exact balance_after is the previous one plus its amount, up to the
    first entry written under contention (a lower bound, after which the order of
    overlapping writes is the writers' clocks', not the commits')."""
    mismatches: list[Mismatch] = []
    account_count = entry_count = 0
    for account_id, state, entries in accounts:
        account_count += 1
        entry_count += len(entries)
        mismatches += (Mismatch(account_id, p) for p in _problems(state, entries))
    return VerifyReport(account_count, entry_count, mismatches)


def _problems(state: AccountState | None, entries: list[LedgerEntry]) -> list[str]:
    problems: list[str] = []
    balance = state.balance if state else 0
    seq = state.seq if state else 0
    total = sum(entry.amount for entry in entries)
    if balance != total:
        problems.append(f"balance {balance} != sum of ledger {total}")
    if balance < 0:
        problems.append(f"negative balance {balance}")
    if seq != len(entries):
        problems.append(f"version {seq} != {len(entries)} entries")
    problems += (
        f"entry {entry.id} leaves a negative balance {entry.balance_after}"
        for entry in entries
        if entry.balance_after < 0
    )
    running = 0
    for entry in sorted(entries, key=lambda e: e.sequence):
        if not entry.balance_exact:
            break
        running += entry.amount
        if entry.balance_after != running:
            problems.append(f"entry {entry.id} balance_after {entry.balance_after} != {running}")
            break
    return problems
