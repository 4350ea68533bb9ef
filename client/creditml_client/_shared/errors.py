# Generated from creditml/models/errors.py by scripts/sync_client_shared.py; do not edit.
"""Why a model upload was refused (the reason is shown to its publisher)."""

from __future__ import annotations


class ModelRejected(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
