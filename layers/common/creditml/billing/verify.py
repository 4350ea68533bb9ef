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
    every balance_after are >= 0; entries are numbered 1..n with no gap; each entry's
    balance_after is the previous one plus its amount; the version equals the entry count."""
    mismatches: list[Mismatch] = []
    account_count = entry_count = 0
    for account_id, state, entries in accounts:
        account_count += 1
        entry_count += len(entries)

        def report(problem: str, account: str = account_id) -> None:
            mismatches.append(Mismatch(account, problem))

        balance = state.balance if state else 0
        seq = state.seq if state else 0
        total = sum(entry.amount for entry in entries)
        if balance != total:
            report(f"balance {balance} != sum of ledger {total}")
        if balance < 0:
            report(f"negative balance {balance}")
        if seq != len(entries):
            report(f"version {seq} != {len(entries)} entries")
        running = 0
        for expected_seq, entry in enumerate(sorted(entries, key=lambda e: e.sequence), 1):
            if entry.sequence != expected_seq:
                report(f"entry {entry.id} has sequence {entry.sequence}, expected {expected_seq}")
                break
            running += entry.amount
            if entry.balance_after != running:
                report(f"entry {entry.id} balance_after {entry.balance_after} != {running}")
                break
            if entry.balance_after < 0:
                report(f"entry {entry.id} leaves a negative balance {entry.balance_after}")
    return VerifyReport(account_count, entry_count, mismatches)
