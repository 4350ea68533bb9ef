"""Session outcomes the auth service acts on (the session store reports them)."""

from __future__ import annotations

from enum import Enum


class RotationOutcome(Enum):
    """What presenting a refresh token did."""

    ROTATED = "rotated"
    REUSED = "reused"  # the old token was already spent (or never issued)
    REVOKED = "revoked"  # the family was revoked earlier
