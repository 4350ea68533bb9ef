"""The errors the client raises.

Every error is a `CreditMLError`. Answers of the API that are not a success become an
`ApiError` (or one of its subclasses) carrying the HTTP status, the problem's stable `code`,
its `detail` and the whole problem body. Failures that never got an answer (the network,
after the client's own retries) are `TransportFailed`; problems on this machine (no device
registered, a download that does not open here, a missing optional dependency) have their
own classes and no HTTP status.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationFailed",
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
]


class CreditMLError(Exception):
    """Base class of every error this package raises; catch it to handle them all."""


class ApiError(CreditMLError):
    """The API answered with an error (an RFC 9457 problem).

    Attributes:
        status: The HTTP status code (for `PublishFailed`, see that class).
        code: The problem's stable machine-readable `code`, e.g. ``"model_not_found"``;
            ``"http_<status>"`` when the answer carried no problem body.
        detail: A human-readable sentence explaining the error.
        body: The whole problem body as a dict (empty when the answer was not JSON).
    """

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{detail} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


class InsufficientCredits(ApiError):
    """402: the account has too few credits for the request; nothing was charged.

    Attributes:
        balance: The balance at the time of the request.
        required: The credits the request needed.
    """

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(status, code, detail, body)
        self.balance = int(body.get("balance", 0))
        self.required = int(body.get("required", 0))


class ValidationFailed(ApiError):
    """422: the request was understood but its values are not acceptable.

    Attributes:
        errors: The failing fields, each ``{"field", "message", "type"}`` (may be empty,
            e.g. for ``non_finite_output``).
    """

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(status, code, detail, body)
        raw = body.get("errors")
        self.errors: list[dict[str, Any]] = list(raw) if isinstance(raw, list) else []


class NotFound(ApiError):
    """404: no such thing, or one the caller may not see (the API answers both alike)."""


class Forbidden(ApiError):
    """403: the caller is authenticated but lacks the rights (role or ownership).

    The client never logs in again on a 403: unlike the reference client, CreditML's 403
    means a real lack of rights, which new tokens of the same user would not change.
    """


class AuthenticationFailed(ApiError):
    """401: the credentials were refused, after the client refreshed its token and logged
    in again once with the stored email and password (an API key is not retried)."""


class LedgerBusy(ApiError):
    """503 ``ledger_busy``: the account stayed busy with concurrent changes through every
    retry the client made within ``max_retry_seconds``. Nothing was charged; retrying later
    with the same operation is safe."""


class RateLimited(ApiError):
    """429: too many requests, and waiting ``retry_after`` seconds did not fit in the
    client's retry budget (or the answer did not say when to retry).

    Attributes:
        retry_after: Seconds until a retry can succeed, when the API said so.
    """

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(status, code, detail, body)
        value = body.get("retry_after")
        self.retry_after: int | None = int(value) if isinstance(value, int | float) else None


class PublishFailed(ApiError):
    """A published model did not become ready.

    ``code`` is ``model_rejected`` (status 422; ``detail`` is the registration's reason),
    ``model_expired`` (status 410; the upload never arrived in time), ``upload_failed``
    (the storage service's own status) or ``publish_timeout`` (status 504; still pending
    when the wait ended, the model may yet become ready).

    Attributes:
        model: The model as last seen (empty when the failure came before it existed).
    """

    def __init__(
        self, status: int, code: str, detail: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(status, code, detail, body or {})
        self.model: dict[str, Any] = dict(body or {})


class TransportFailed(CreditMLError):
    """The request got no answer (connection refused, DNS failure, timeout, ...) even after
    the client's retries. Not an `ApiError`: there is no HTTP status. For a money-moving
    call the server may or may not have acted; calling again is safe only through the same
    client method, which uses a fresh Idempotency-Key, so check the balance or ledger
    first.

    Attributes:
        url: The URL the request went to.
    """

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class DeviceNotRegistered(CreditMLError):
    """No device is registered for this base URL and user on this machine (or its private
    key file is gone): call `Client.register_device` first."""


class IntegrityFailed(CreditMLError):
    """A downloaded big part does not have the size or SHA-256 the API announced."""


class ModelLoadFailed(CreditMLError):
    """A downloaded model cannot be opened or loaded here: sealed to another device or
    other hardware (the fingerprint changed), altered bytes, or a file the allowlist
    refuses (nothing it refuses is ever unpickled).

    Attributes:
        reason: Why, in one sentence.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MissingDependency(CreditMLError, ImportError):
    """An optional dependency is not installed, e.g. for `Client.load_model`:
    ``pip install "creditml-client[models]"``."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationFailed,
    402: InsufficientCredits,
    403: Forbidden,
    404: NotFound,
    422: ValidationFailed,
    429: RateLimited,
}


def error_for(status: int, body: dict[str, Any]) -> ApiError:
    """The typed error for an error answer with this status and (problem) body."""
    code = body.get("code")
    code = code if isinstance(code, str) and code else f"http_{status}"
    detail = body.get("detail") or body.get("title") or f"HTTP {status}"
    if status == 503 and code == "ledger_busy":
        return LedgerBusy(status, code, str(detail), body)
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, code, str(detail), body)
