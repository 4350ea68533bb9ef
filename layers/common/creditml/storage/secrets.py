"""The JWT signing key, read from Secrets Manager and cached for a bounded time."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from creditml.errors import ServiceUnavailable
from creditml.storage.clients import client_config


class SigningKeyStore:
    """Fetches the signing secret lazily; re-reads it after `max_age` seconds so a rotated
    secret is picked up without a redeploy."""

    def __init__(self, secret_id: str, max_age: int) -> None:
        self._secret_id = secret_id
        self._max_age = max_age
        self._provider: SecretsProvider | None = None

    def current(self) -> bytes:
        """The current signing key as bytes."""
        if self._provider is None:
            # Its own boto3 client: give it the same pool size as every other client.
            self._provider = SecretsProvider(boto_config=client_config())
        try:
            value = self._provider.get(self._secret_id, max_age=self._max_age)
        except Exception as exc:
            raise ServiceUnavailable() from exc
        if not isinstance(value, str | bytes) or not value:
            raise ServiceUnavailable()
        return value.encode() if isinstance(value, str) else value
