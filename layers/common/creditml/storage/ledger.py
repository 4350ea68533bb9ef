"""Accounts and their ledger, in the ledger table (pk `account_id`, sk `sk`).

  sk = "ACCOUNT"       balance and `seq`, the number of entries so far (a version number);
                       `rate_window`/`rate_count`: the debits of the latest minute (the
                       prediction rate limit, written by the debits themselves);
                       `last_order`: the latest entry's `entry_seq`
  sk = "ENTRY#<id>"    one ledger entry; `entry_seq` (the API's `sequence`) orders an
                       account's entries in the order they were written (LSI by_seq).
                       In an admin's own partition the same key may instead hold a guard that
                       points at a grant written into another account, so every
                       (actor, Idempotency-Key) pair has exactly one slot.
  sk = "CLAIM#<what>"  something the account bought once for all (a download of one model
                       version to one device), written by the debit that paid for it;
                       `claim_entry` names that entry. No `kind`, no `entry_seq`: not an entry.

Every balance change is ONE TransactWriteItems: the account update plus the entry put,
conditioned on `attribute_not_exists`. The account update is exact (conditioned on the
version the caller expects) or bounded (`ADD` with `balance >= floor`), see WritePlan.
Condition failures return the current item (ALL_OLD), so a stale version or a replayed key
is resolved without a separate read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from pynamodb.attributes import BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import AllProjection, LocalSecondaryIndex
from pynamodb.models import Model

from creditml.billing.entries import (
    AccountState,
    ClaimTaken,
    Contended,
    EntryKind,
    LedgerEntry,
    PageStart,
    PendingEntry,
    PreconditionFailed,
    SlotTaken,
    StaleVersion,
    UserMissing,
    WriteOutcome,
    WritePlan,
    Written,
)
from creditml.limits import MinuteCount
from creditml.reports.daily import LedgerDay
from creditml.reports.usage import Debit, Tally, prediction_of
from creditml.storage.dynamo import Transaction, TransactionCancelled
from creditml.storage.models import check_precondition
from creditml.storage.tables import bind_table

ACCOUNT_SK = "ACCOUNT"
ENTRY_PREFIX = "ENTRY#"
CLAIM_PREFIX = "CLAIM#"


class _BySeq(LocalSecondaryIndex["_LedgerItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by_seq"
        projection = AllProjection()

    account_id = UnicodeAttribute(hash_key=True)
    entry_seq = NumberAttribute(range_key=True)


class _LedgerItem(Model):
    account_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    # The account item
    balance = NumberAttribute(null=True)
    seq = NumberAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    rate_window = NumberAttribute(null=True)
    rate_count = NumberAttribute(null=True)
    last_order = NumberAttribute(null=True)  # the latest entry's entry_seq
    # Entry items
    entry_id = UnicodeAttribute(null=True)
    entry_seq = NumberAttribute(null=True)
    kind = UnicodeAttribute(null=True)
    amount = NumberAttribute(null=True)
    balance_after = NumberAttribute(null=True)
    balance_exact = BooleanAttribute(null=True)  # absent: exact; False: a lower bound
    created_at = UnicodeAttribute(null=True)
    actor_id = UnicodeAttribute(null=True)
    idempotency_key = UnicodeAttribute(null=True)
    request_hash = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)
    # Guard items (an admin's slot for a grant written into another account)
    target_account = UnicodeAttribute(null=True)
    # Claim items (what the account bought once, and the entry that paid for it)
    claim_entry = UnicodeAttribute(null=True)

    by_seq = _BySeq()


class _UserCheck(Model):
    """Only used to condition a grant on the target user existing (users table)."""

    pk = UnicodeAttribute(hash_key=True)


def _entry(item: _LedgerItem) -> LedgerEntry:
    return LedgerEntry(
        id=str(item.entry_id),
        account_id=str(item.account_id),
        sequence=int(item.entry_seq or 0),
        kind=EntryKind(str(item.kind)),
        amount=int(item.amount or 0),
        balance_after=int(item.balance_after or 0),
        balance_exact=item.balance_exact is not False,
        created_at=datetime.fromisoformat(str(item.created_at)),
        actor_id=str(item.actor_id),
        idempotency_key=str(item.idempotency_key),
        details=dict(item.details or {}),
    )


def _state(item: _LedgerItem | None) -> AccountState:
    if item is None:
        return AccountState(balance=0, seq=0)
    rate = MinuteCount(int(item.rate_window or 0), int(item.rate_count or 0))
    seq = int(item.seq or 0)
    # Accounts written before `last_order` existed numbered their entries 1..seq.
    last_order = int(item.last_order) if item.last_order is not None else seq
    return AccountState(int(item.balance or 0), seq, rate, last_order)


def _account_update(amount: int, plan: WritePlan, now: str) -> tuple[list[Any], Condition]:
    """The account item's update for one write attempt, and its condition.

    Exact: pinned to the version the plan starts from, so every value it sets is known.
    Bounded: `ADD` on the balance and version with `balance >= floor` only, so concurrent
    bounded writes do not invalidate each other. `last_order` is then the latest bounded
    writer's stamp, not necessarily the highest: the next exact write still orders after
    everything written before it began, by the clock (see AccountState.next_order)."""
    item = _LedgerItem
    expected = plan.expected
    actions: list[Any] = [item.updated_at.set(now), item.last_order.set(plan.order)]
    condition: Condition
    if plan.floor is None:
        actions += [
            item.balance.set(expected.balance + amount),
            item.seq.set(expected.seq + 1),
        ]
        condition = item.seq.does_not_exist() if expected.seq == 0 else item.seq == expected.seq
        if amount < 0:
            condition &= item.balance >= -amount
    else:
        actions += [item.balance.add(amount), item.seq.add(1)]
        condition = item.balance >= plan.floor
        if plan.floor <= 0:  # a credit's floor may be 0: an account with no item yet passes
            condition = item.balance.does_not_exist() | condition
    step = plan.rate
    if step is None:
        return actions, condition
    if plan.floor is None:  # exact: the version pins the count it was made from
        actions += [item.rate_window.set(step.count.window), item.rate_count.set(step.count.count)]
    elif step.count.window != expected.rate.window:  # the first debit of a new minute
        actions += [item.rate_window.set(step.count.window), item.rate_count.set(1)]
        condition &= item.rate_window.does_not_exist() | (item.rate_window < step.count.window)
    else:
        actions += [item.rate_count.add(1)]
        condition &= (item.rate_window == step.count.window) & (item.rate_count < step.limit)
    return actions, condition


class LedgerRepository:
    """Reads and writes accounts and ledger entries. One method call, one DynamoDB call."""

    def __init__(self, table_name: str, users_table: str, models_table: str) -> None:
        self._item = bind_table(_LedgerItem, table_name)
        self._user = bind_table(_UserCheck, users_table)
        self._models_table = models_table

    def write(self, pending: PendingEntry, plan: WritePlan) -> WriteOutcome:
        """Try to apply `pending` as `plan` says, in one transaction."""
        item = self._item
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        slot = pending.slot
        written = plan.entry(pending, datetime.fromisoformat(now))
        entry = item(
            pending.account_id,
            ENTRY_PREFIX + slot.entry_id,
            entry_id=slot.entry_id,
            entry_seq=written.sequence,
            kind=str(pending.kind),
            amount=pending.amount,
            balance_after=written.balance_after,
            balance_exact=None if plan.exact else False,
            created_at=now,
            actor_id=slot.actor_id,
            idempotency_key=slot.key,
            request_hash=pending.request_hash,
            details=pending.details or None,
        )
        tx = Transaction(item)
        is_grant = slot.actor_id != pending.account_id
        if is_grant:
            tx.check(
                "user", self._user, f"USER#{pending.account_id}", condition=self._user.pk.exists()
            )
            # The admin's own slot for this key, pointing at the grant in the target account.
            guard = item(
                slot.actor_id,
                ENTRY_PREFIX + slot.entry_id,
                target_account=pending.account_id,
                request_hash=pending.request_hash,
                created_at=now,
            )
            tx.put("guard", guard, condition=item.sk.does_not_exist(), return_old=True)
        if pending.precondition is not None:
            check_precondition(tx, "precondition", self._models_table, pending.precondition)
        if pending.claim is not None:
            bought = item(
                pending.account_id,
                CLAIM_PREFIX + pending.claim,
                claim_entry=slot.entry_id,
                created_at=now,
            )
            tx.put("claim", bought, condition=item.sk.does_not_exist(), return_old=False)
        tx.put("entry", entry, condition=item.sk.does_not_exist(), return_old=True)
        actions, condition = _account_update(pending.amount, plan, now)
        tx.update(
            "account",
            item(pending.account_id, ACCOUNT_SK),
            actions=actions,
            condition=condition,
            return_old=True,
        )
        try:
            tx.commit()
        except TransactionCancelled as cancelled:
            return self._explain(cancelled)
        return Written(written)

    def _explain(self, cancelled: TransactionCancelled) -> WriteOutcome:
        failed = cancelled.failed
        # A taken slot wins over everything else: a replay must answer as the original did.
        for label in ("entry", "guard"):
            if label in failed:
                return self._slot_taken(failed[label])
        if "user" in failed:
            return UserMissing()
        if "claim" in failed:  # already bought: answered before any price or balance change
            return ClaimTaken()
        if "precondition" in failed:
            return PreconditionFailed()
        if "account" in failed:
            raw = failed["account"]
            return StaleVersion(_state(self._item.from_raw_data(raw) if raw else None))
        if cancelled.conflict:
            return Contended()
        raise cancelled

    def _slot_taken(self, raw: dict[str, Any] | None) -> WriteOutcome:
        if raw is None:  # DynamoDB always returns ALL_OLD here; be safe rather than wrong
            raise RuntimeError("idempotency slot taken but not returned")
        slot = self._item.from_raw_data(raw)
        if slot.target_account:  # a guard: the entry lives in the target's account
            target = self._item.get(str(slot.target_account), str(slot.sk), consistent_read=True)
            return SlotTaken(_entry(target), str(slot.request_hash))
        return SlotTaken(_entry(slot), str(slot.request_hash))

    def state(self, account_id: str) -> AccountState:
        """The account's balance and version, read consistently (0/0 when it has none)."""
        try:
            return _state(self._item.get(account_id, ACCOUNT_SK, consistent_read=True))
        except DoesNotExist:
            return AccountState(balance=0, seq=0)

    def balance(self, account_id: str) -> int:
        """The account's current balance."""
        return self.state(account_id).balance

    def entries(
        self,
        account_id: str,
        limit: int,
        start: PageStart | None,
        kind: EntryKind | None = None,
    ) -> list[LedgerEntry]:
        """Up to `limit` entries (of `kind`, when given), newest first, from `start` when
        given."""
        condition = None if start is None else _LedgerItem.entry_seq <= start.sequence
        skipped = len(start.seen) if start is not None else 0
        items = self._item.by_seq.query(
            account_id,
            range_key_condition=condition,
            filter_condition=None if kind is None else _LedgerItem.kind == str(kind),
            scan_index_forward=False,
            limit=limit + skipped,
            consistent_read=True,
        )
        entries = (_entry(item) for item in items)
        return [e for e in entries if start is None or not start.skips(e)][:limit]

    def entry(self, account_id: str, entry_id: str) -> LedgerEntry | None:
        """One of the account's entries by id (None for unknown ids and guard items)."""
        try:
            item = self._item.get(account_id, ENTRY_PREFIX + entry_id, consistent_read=True)
        except DoesNotExist:
            return None
        return _entry(item) if item.entry_seq is not None else None

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None:
        """What an (actor, key) slot holds: the entry and its request hash, if taken."""
        try:
            item = self._item.get(actor_id, ENTRY_PREFIX + entry_id, consistent_read=True)
        except DoesNotExist:
            return None
        taken = self._slot_taken(item.serialize())
        assert isinstance(taken, SlotTaken)
        return taken.entry, taken.request_hash

    def claimed(self, account_id: str, claim: str) -> str | None:
        """The id of the entry that paid for `claim` on the account, or None when it has not
        bought it."""
        try:
            item = self._item.get(account_id, CLAIM_PREFIX + claim, consistent_read=True)
        except DoesNotExist:
            return None
        return str(item.claim_entry)

    def scan_accounts(self) -> Iterator[tuple[str, AccountState | None, list[LedgerEntry]]]:
        """Every account with its state and all its entries (for ledger verification).

        Reads the whole table: an operator's tool, not a request path.
        """
        grouped: dict[str, tuple[list[AccountState], list[LedgerEntry]]] = {}
        for item in self._item.scan(consistent_read=True):
            states, entries = grouped.setdefault(str(item.account_id), ([], []))
            if item.sk == ACCOUNT_SK:
                states.append(_state(item))
            elif item.entry_seq is not None:
                entries.append(_entry(item))
        for account_id, (states, entries) in sorted(grouped.items()):
            yield account_id, (states[0] if states else None), entries

    def debits_on(self, day: date) -> LedgerDay:
        """Every prediction debit of one UTC day, per model: predictions, rows, credits
        and the accounts that paid (the daily report's cross-check and distinct users,
        read from the ledger itself).

        A filtered scan of the whole table: its cost grows with the ledger, not the day
        (see docs/DECISIONS.md, "Usage reports"). Entries are stamped in UTC, so the day is
        a prefix of `created_at`."""
        tallies: dict[str, Tally] = defaultdict(Tally)
        users: dict[str, set[str]] = defaultdict(set)
        condition = (_LedgerItem.kind == str(EntryKind.DEBIT)) & _LedgerItem.created_at.startswith(
            day.isoformat()
        )
        scanned = self._item.scan(
            filter_condition=condition,
            attributes_to_get=["account_id", "amount", "details"],
            consistent_read=False,  # half the read units; the day ended minutes ago
        )
        for item in scanned:
            prediction = prediction_of(item.details)
            if prediction is None:
                continue
            model_id, rows = prediction
            tallies[model_id] += Tally(1, rows, -int(item.amount or 0))
            users[model_id].add(str(item.account_id))
        return LedgerDay(dict(tallies), {m: frozenset(ids) for m, ids in users.items()})

    def debits(self) -> Iterator[Debit]:
        """Every prediction debit in the ledger (a scan: `creditml usage backfill`)."""
        scanned = self._item.scan(
            filter_condition=_LedgerItem.kind == str(EntryKind.DEBIT),
            attributes_to_get=["account_id", "entry_id", "created_at", "amount", "details"],
        )
        for item in scanned:
            prediction = prediction_of(item.details)
            if prediction is None:
                continue
            yield Debit(
                account_id=str(item.account_id),
                entry_id=str(item.entry_id),
                model_id=prediction[0],
                created_at=datetime.fromisoformat(str(item.created_at)),
                rows=prediction[1],
                credits=-int(item.amount or 0),
            )
