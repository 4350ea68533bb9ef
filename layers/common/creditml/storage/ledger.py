"""Accounts and their ledger, in the ledger table (pk = account id, sk = item kind).

sk = "ACCOUNT"        the balance (an integer number of credits)
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.models import Model

from creditml.storage.tables import bind_table

ACCOUNT_SK = "ACCOUNT"


class _AccountRecord(Model):
    account_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    balance = NumberAttribute(default=0)


class AccountRepository:
    """Reads account balances. An account with no ledger entries yet has a balance of 0."""

    def __init__(self, table_name: str) -> None:
        self._account = bind_table(_AccountRecord, table_name)

    def balance(self, user_id: str) -> int:
        """The account's current balance, read consistently."""
        try:
            record = self._account.get(user_id, ACCOUNT_SK, consistent_read=True)
        except DoesNotExist:
            return 0
        return int(record.balance)
