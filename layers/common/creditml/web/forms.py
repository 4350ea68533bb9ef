"""Form bodies (application/x-www-form-urlencoded), read with a size bound and parsed
without a multipart dependency: no page posts a file to the web function (model files go
from the browser straight to S3)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

from creditml.errors import DomainError, PayloadTooLarge, UnsupportedMediaType
from creditml.web.session import CSRF_FIELD, check_csrf

MAX_FORM_BYTES = 1024 * 1024  # a pasted CSV of a few thousand rows
MAX_DIGITS = 18


class Form(dict[str, str]):
    """The first value of each field, stripped of surrounding whitespace."""

    def text(self, name: str) -> str:
        return self.get(name, "").strip()


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> Form:
    """The posted form, once its CSRF token is checked (CsrfRefused otherwise): every
    state-changing page reads its form here, so none can skip the check."""
    form = await _fields(request, limit)
    check_csrf(request, form.get(CSRF_FIELD))
    return form


async def _fields(request: Request, limit: int) -> Form:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType()
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormInvalid("The form was not sent as UTF-8.") from exc
    fields = parse_qs(text, keep_blank_values=True, max_num_fields=10_000)
    return Form({name: values[0] for name, values in fields.items()})


class FormInvalid(DomainError):
    status = 422
    code = "validation_error"
    title = "The form is not valid"


def whole_number(value: str, field: str, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number typed into `field` ("1,000" and "1 000" allowed)."""
    cleaned = value.replace(",", "").replace(" ", "").replace("\u202f", "")
    # ASCII digits only ("²" is a digit to str.isdigit), and no more than fit in a credit
    # amount: int() of a 5,000-digit string is refused (and slow) before any range check.
    if not (cleaned.isascii() and cleaned.isdigit()) or len(cleaned) > MAX_DIGITS:
        raise FormInvalid(f"{field} must be a whole number.")
    number = int(cleaned)
    if number < minimum or (maximum is not None and number > maximum):
        upper = f" and at most {maximum:,}" if maximum is not None else ""
        raise FormInvalid(f"{field} must be at least {minimum:,}{upper}.")
    return number
