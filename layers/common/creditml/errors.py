"""Typed domain errors. Raised below the API, mapped to HTTP problem details in one module
(creditml.api.problems). Each carries a stable machine-readable `code` and a fixed message
that leaks nothing about internals."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every expected failure. Subclasses fix status, code and title."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        # Extra members of the problem document (e.g. balance/required on a 402).
        self.extra = extra
        super().__init__(self.detail)


class NotAuthenticated(DomainError):
    status = 401
    code = "not_authenticated"
    title = "Authentication required"


class InvalidCredentials(DomainError):
    status = 401
    code = "invalid_credentials"
    title = "Invalid email or password"


class InvalidToken(DomainError):
    status = 401
    code = "invalid_token"
    title = "Invalid or expired token"


class RefreshTokenReused(DomainError):
    status = 401
    code = "refresh_token_reused"
    title = "Refresh token already used; the session has been revoked"


class InsufficientCredits(DomainError):
    """Not enough credits; the problem body carries `balance` and `required`."""

    status = 402
    code = "insufficient_credits"
    title = "Insufficient credits"

    def __init__(self, balance: int, required: int) -> None:
        super().__init__(
            f"This needs {required} credits; the balance is {balance}.",
            balance=balance,
            required=required,
        )


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "You are not allowed to do this"


class ApiKeyNotAllowed(DomainError):
    """An API key on a route that only a session may use: /api-keys and /auth/*."""

    status = 403
    code = "api_key_not_allowed"
    title = "API keys cannot manage API keys or sessions; use an access token from log-in"


class ApiKeyNotFound(DomainError):
    status = 404
    code = "api_key_not_found"
    title = "API key not found"


class TooManyApiKeys(DomainError):
    status = 409
    code = "api_key_limit_reached"
    title = "The account has as many API keys as it may; revoke one first"

    def __init__(self, maximum: int) -> None:
        super().__init__(f"An account may have at most {maximum} API keys.", maximum=maximum)


class UserNotFound(DomainError):
    status = 404
    code = "user_not_found"
    title = "User not found"


class EmailTaken(DomainError):
    status = 409
    code = "email_taken"
    title = "An account with this email already exists"


class OwnRoleChange(DomainError):
    status = 409
    code = "own_role_change"
    title = "Admins cannot change their own role"


class TopUpTooLarge(DomainError):
    status = 422
    code = "amount_too_large"
    title = "The amount is above the maximum for one top-up"

    def __init__(self, maximum: int) -> None:
        super().__init__(f"One top-up may add at most {maximum} credits.", maximum=maximum)


class ModelNotFound(DomainError):
    status = 404
    code = "model_not_found"
    title = "Model not found"


class ModelNotReady(DomainError):
    status = 409
    code = "model_not_ready"
    title = "The model has no version ready for predictions yet"


class ModelArchived(DomainError):
    status = 410
    code = "model_archived"
    title = "The model is archived and takes no predictions"


class VersionNotFound(DomainError):
    status = 404
    code = "version_not_found"
    title = "The model has no such version"


class VersionNotReady(DomainError):
    status = 409
    code = "version_not_ready"
    title = "This version of the model is not ready (pending, rejected or expired)"


class DownloadNotAllowed(DomainError):
    status = 403
    code = "download_not_allowed"
    title = "The model's owner has not made it downloadable (no download price)"


class DeviceNotFound(DomainError):
    status = 404
    code = "device_not_found"
    title = "Device not found"


class TooManyDevices(DomainError):
    status = 409
    code = "device_limit_reached"
    title = "The account has as many devices as it may; delete one first"

    def __init__(self, maximum: int) -> None:
        super().__init__(f"An account may register at most {maximum} devices.", maximum=maximum)


class InvalidParameter(DomainError):
    """A request value with a valid type but an invalid value (a date range backwards,
    say); names the field, like FastAPI's own 422s."""

    status = 422
    code = "validation_error"
    title = "The request is not valid"
    kind: ClassVar[str] = "invalid_value"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"{field} {message}",
            errors=[{"field": field, "message": message, "type": self.kind}],
        )


class InputsInvalid(InvalidParameter):
    """Prediction rows that do not fit the model; names the row and field."""

    kind = "invalid_input"


class ReportNotFound(DomainError):
    status = 404
    code = "report_not_found"
    title = "There is no report for this day yet"


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"
    title = "Send the request body as JSON with Content-Type: application/json"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"

    def __init__(self, maximum: int) -> None:
        super().__init__(f"The request body may be at most {maximum} bytes.", maximum=maximum)


class NestingTooDeep(DomainError):
    """JSON nested deeper than any request of this API needs (refused before parsing)."""

    status = 422
    code = "nesting_too_deep"
    title = "The request body is nested too deeply"

    def __init__(self, maximum: int) -> None:
        super().__init__(
            f"JSON arrays and objects may nest at most {maximum} levels deep.", maximum=maximum
        )


class NonFiniteOutput(DomainError):
    """The inputs drove the model out of float range (an overflow, inf or NaN on the way,
    or in the outputs or probabilities): nothing is delivered, so nothing is charged."""

    status = 422
    code = "non_finite_output"
    title = "The model gives no finite result for these inputs; you were not charged"


class ModelUnavailable(DomainError):
    status = 500
    code = "model_unavailable"
    title = "The model could not be loaded; you were not charged"


class PredictionFailed(DomainError):
    status = 500
    code = "prediction_failed"
    title = "The model failed to predict on these inputs; you were not charged"


class IdempotencyKeyRequired(DomainError):
    status = 400
    code = "idempotency_key_required"
    title = "This request moves credits and needs an Idempotency-Key header"


class InvalidIdempotencyKey(DomainError):
    status = 422
    code = "invalid_idempotency_key"
    title = "Idempotency-Key must be 1 to 255 visible ASCII characters"


class IdempotencyKeyReused(DomainError):
    status = 409
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was already used for a different request"


class InvalidCursor(DomainError):
    status = 422
    code = "invalid_cursor"
    title = "The cursor is not valid; start again without one"


class RateLimited(DomainError):
    """Too many requests (DESIGN §12); never a 402. The problem body and the Retry-After
    header carry `retry_after`, whole seconds until a retry can succeed."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests; retry in {retry_after} seconds.", retry_after=retry_after
        )
        self.retry_after = retry_after


class LedgerBusy(DomainError):
    status = 503
    code = "ledger_busy"
    title = "The account is busy with concurrent changes; retry with the same Idempotency-Key"


class ServiceUnavailable(DomainError):
    status = 503
    code = "service_unavailable"
    title = "A dependency is temporarily unavailable; retry later"
