"""CreditML's Python client: predictions, models, credits and device-bound downloads.

    from creditml_client import Client

    with Client("http://127.0.0.1:3000", email="me@example.com", password="...") as api:
        receipt = api.predict("model-id", [[5.1, 3.5, 1.4, 0.2]])

See `creditml_client.Client` for every call and `creditml_client.errors` for what they raise.
"""

from __future__ import annotations

__version__ = "0.1.0"

from creditml_client.client import Client
from creditml_client.errors import (
    ApiError,
    AuthenticationFailed,
    CreditMLError,
    DeviceNotRegistered,
    Forbidden,
    InsufficientCredits,
    IntegrityFailed,
    LedgerBusy,
    MissingDependency,
    ModelLoadFailed,
    NotFound,
    PublishFailed,
    RateLimited,
    TransportFailed,
    ValidationFailed,
)
from creditml_client.hardware import fingerprint, hardware_facts

__all__ = [
    "ApiError",
    "AuthenticationFailed",
    "Client",
    "CreditMLError",
    "DeviceNotRegistered",
    "Forbidden",
    "InsufficientCredits",
    "IntegrityFailed",
    "LedgerBusy",
    "MissingDependency",
    "ModelLoadFailed",
    "NotFound",
    "PublishFailed",
    "RateLimited",
    "TransportFailed",
    "ValidationFailed",
    "__version__",
    "fingerprint",
    "hardware_facts",
]
