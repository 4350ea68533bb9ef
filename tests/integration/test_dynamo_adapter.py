"""The transaction adapter (creditml.storage.dynamo) against moto: a cancellation is read
by item label, whatever order the items were added in."""

from __future__ import annotations

import pytest
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from creditml.settings import get_settings
from creditml.storage.dynamo import Transaction, TransactionCancelled, condition_failed
from creditml.storage.tables import bind_table


class _Probe(Model):
    pk = UnicodeAttribute(hash_key=True)
    n = NumberAttribute(null=True)


@pytest.fixture
def probe(aws: dict[str, str]) -> type[_Probe]:
    # The users table has a plain string `pk` hash key: enough for probe items.
    record = bind_table(_Probe, get_settings().users_table)
    record("PROBE#a", n=1).save()
    record("PROBE#b", n=2).save()
    record("PROBE#taken", n=4).save()
    return record


def _mixed(record: type[_Probe], *, fail: str) -> Transaction:
    """An update, a put and a check added in that order (DynamoDB receives them as check,
    put, update); the item named by `fail` gets a condition that does not hold."""
    tx = Transaction(record)
    tx.update(
        "update",
        record("PROBE#a"),
        actions=[record.n.set(10)],
        condition=record.n == (99 if fail == "update" else 1),
        return_old=True,
    )
    tx.put(
        "put",
        record("PROBE#taken" if fail == "put" else "PROBE#c", n=3),
        condition=record.pk.does_not_exist(),
        return_old=True,
    )
    tx.check("check", record, "PROBE#b", condition=record.n == (99 if fail == "check" else 2))
    return tx


def test_labels_follow_the_order_dynamodb_receives(probe: type[_Probe]) -> None:
    assert _mixed(probe, fail="none").labels == ["check", "put", "update"]


@pytest.mark.parametrize("fail", ["check", "put", "update"])
def test_a_cancellation_names_the_failed_item(probe: type[_Probe], fail: str) -> None:
    with pytest.raises(TransactionCancelled) as cancelled:
        _mixed(probe, fail=fail).commit()
    assert set(cancelled.value.failed) == {fail}
    assert cancelled.value.conflict is False
    # Nothing was written.
    assert probe.get("PROBE#a").n == 1
    assert probe.count("PROBE#c") == 0


def test_failed_items_come_back_as_they_were_when_asked(probe: type[_Probe]) -> None:
    with pytest.raises(TransactionCancelled) as cancelled:
        _mixed(probe, fail="update").commit()
    old = cancelled.value.failed["update"]
    assert old is not None
    assert probe.from_raw_data(old).n == 1


def test_a_committed_transaction_writes_every_item(probe: type[_Probe]) -> None:
    _mixed(probe, fail="none").commit()
    assert (probe.get("PROBE#a").n, probe.get("PROBE#c").n) == (10, 3)


def test_a_label_is_used_once(probe: type[_Probe]) -> None:
    tx = Transaction(probe)
    tx.check("same", probe, "PROBE#a", condition=probe.pk.exists())
    with pytest.raises(ValueError, match="twice"):
        tx.check("same", probe, "PROBE#b", condition=probe.pk.exists())


def test_single_item_condition_failures_are_recognised(probe: type[_Probe]) -> None:
    with pytest.raises(UpdateError) as failed:
        probe("PROBE#a").update(actions=[probe.n.set(5)], condition=probe.n == 99)
    assert condition_failed(failed.value)


def test_a_conflict_with_a_concurrent_transaction_is_reported(
    probe: type[_Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto never cancels for a concurrent transaction; DynamoDB answers like this.
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    original = BaseClient._make_api_call

    def conflicting(self: BaseClient, operation: str, params: dict[str, object]) -> object:
        if operation != "TransactWriteItems":
            return original(self, operation, params)
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": [
                    {"Code": "None"},
                    {"Code": "TransactionConflict", "Message": "conflict"},
                    {"Code": "None"},
                ],
            },
            operation,
        )

    monkeypatch.setattr(BaseClient, "_make_api_call", conflicting)
    with pytest.raises(TransactionCancelled) as cancelled:
        _mixed(probe, fail="none").commit()
    assert (cancelled.value.failed, cancelled.value.conflict) == ({}, True)
