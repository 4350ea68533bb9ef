"""Request limits (DESIGN §12): the per-subject request limit and login throttling.

The prediction limit needs nothing here: it lives in the ledger (composition.core), counted
by the debit's own transaction.
"""

from __future__ import annotations

import time

from creditml.composition import component
from creditml.limits import LoginThrottle, RequestLimit
from creditml.settings import get_settings
from creditml.storage.limits import LimitsRepository


@component
def limits_repository() -> LimitsRepository:
    return LimitsRepository(get_settings().limits_table)


@component
def request_limit() -> RequestLimit:
    return RequestLimit(limits_repository(), get_settings().rate_limit_per_minute, time.time)


@component
def login_throttle() -> LoginThrottle:
    return LoginThrottle(limits_repository(), time.time)
