"""The API's request models validate the web's forms too, so a form accepts exactly what the
API accepts; their errors become one readable sentence per field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from creditml.web.forms import FormInvalid

LABELS = {
    "email": "Email",
    "password": "Password",
    "amount": "Amount",
    "name": "Name",
    "description": "Description",
    "price": "Price",
}


def validated[M: BaseModel](model: type[M], data: dict[str, Any]) -> M:
    """`data` as `model`, or FormInvalid naming the first field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "form"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise FormInvalid(f"{LABELS.get(field, field)}: {message}") from exc
