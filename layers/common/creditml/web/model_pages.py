"""The catalogue, a model's page (predict form, receipt, owner's controls) and publishing."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from creditml.api.limits import source_ip
from creditml.auth.roles import Role
from creditml.composition.core import token_signer
from creditml.composition.models import model_service
from creditml.composition.web import predict_function, upload_origins
from creditml.errors import DomainError
from creditml.models.api_schemas import ModelCreate, ModelPublic, ModelUpdate
from creditml.models.records import Model, VersionStatus
from creditml.models.schema import ModelSchema
from creditml.models.service import UploadTicket
from creditml.predictions.schemas import Receipt
from creditml.settings import get_settings
from creditml.web.account_pages import form_key, new_key
from creditml.web.auth_pages import redirect
from creditml.web.forms import Form, FormInvalid, read_form, whole_number
from creditml.web.people import required_user
from creditml.web.render import page, secure
from creditml.web.session import WebUser
from creditml.web.validation import validated

router = APIRouter()
MAX_FORM_ROWS = 10_000


@router.get("/ui/models")
async def catalogue(request: Request) -> Response:
    user = required_user(request)
    models = [ModelPublic.of(model) for model in model_service().visible(user.claims)]
    return page(request, "models.html", user, {"models": models})


def feature_names(schema: ModelSchema | None) -> list[str]:
    """One form field per feature: its name, else x0, x1, ..."""
    if schema is None:
        return []
    return schema.feature_names or [f"x{index}" for index in range(schema.n_features)]


def _model_page(
    request: Request,
    user: WebUser,
    model: Model,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    public = ModelPublic.of(model, with_versions=True)
    manage = model.owner_id == user.user_id or user.is_admin
    context: dict[str, Any] = {
        "model": public,
        "features": feature_names(public.input_schema),
        "manage": manage and user.is_publisher,
        "max_bytes": get_settings().max_model_bytes,
        "next_pending": _next_pending(model),
        "key": new_key(),
        "values": {},
        "csv": "",
        "receipt": None,
        "problem": None,
        "error": None,
        **(extra or {}),
    }
    connect = upload_origins() if context["manage"] else ()
    return page(request, "model.html", user, context, status=status, connect=connect)


def _next_pending(model: Model) -> int | None:
    """The latest version's number while it waits for its file or its check and an older
    one serves (the page then refreshes until it is decided)."""
    latest = next((v for v in model.versions if v.version == model.latest_version), None)
    if latest is None or latest.status is not VersionStatus.PENDING:
        return None
    return latest.version if model.serving_version else None


@router.get("/ui/models/{model_id}")
async def model_page(request: Request, model_id: str) -> Response:
    user = required_user(request)
    model = model_service().show(user.claims, model_id[:64])
    return _model_page(request, user, model)


def _number(text: str, label: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FormInvalid(f"{label}: enter a number (got “{text[:40]}”).") from None
    if not math.isfinite(value):
        raise FormInvalid(f"{label}: enter a finite number.")
    return value


def rows_from_fields(form: Form, names: list[str]) -> list[list[float]]:
    return [[_number(form.text(f"feature.{name}"), name) for name in names]]


def rows_from_csv(text: str, names: list[str]) -> list[list[float]]:
    """Rows pasted as CSV; a first line naming the features is a header (its order wins)."""
    try:
        read = list(csv.reader(io.StringIO(text.strip())))
    except csv.Error as exc:
        raise FormInvalid(f"Rows (CSV): not readable as CSV ({exc}).") from None
    lines = [row for row in read if any(cell.strip() for cell in row)]
    order = list(range(len(names)))
    first = [cell.strip() for cell in lines[0]] if lines else []
    if sorted(first) == sorted(names) and len(first) == len(names):
        order = [first.index(name) for name in names]
        lines = lines[1:]
    if not lines:
        raise FormInvalid("Rows (CSV): paste at least one row.")
    if len(lines) > MAX_FORM_ROWS:
        raise FormInvalid(f"Rows (CSV): at most {MAX_FORM_ROWS:,} rows per prediction.")
    rows = []
    for number, line in enumerate(lines, start=1):
        if len(line) != len(names):
            raise FormInvalid(
                f"Rows (CSV): row {number} has {len(line)} values; the model takes {len(names)}."
            )
        rows.append([_number(line[i].strip(), f"Row {number}, {names[i]}") for i in order])
    return rows


@router.post("/ui/models/{model_id}/predictions")
async def predict(request: Request, model_id: str) -> Response:
    user = required_user(request)
    form = await read_form(request)
    model = model_service().show(user.claims, model_id[:64])
    names = feature_names(model.serving_schema)
    values = {name: form.text(f"feature.{name}") for name in names}
    kept: dict[str, Any] = {"values": values, "csv": form.get("csv", "")}
    try:
        key = form_key(form.text("idempotency_key"))
        if form.get("mode") == "csv":
            rows = rows_from_csv(form.get("csv", ""), names)
        else:
            rows = rows_from_fields(form, names)
    except FormInvalid as exc:
        return _model_page(request, user, model, {**kept, "error": exc.detail}, exc.status)
    answer = _call_predict(request, user, model.id, rows, key)
    if answer.status == 200:
        receipt = Receipt.model_validate_json(answer.body)
        return _model_page(request, user, model, {**kept, "receipt": receipt})
    problem = _problem(answer.body, answer.status)
    return _model_page(request, user, model, {**kept, "problem": problem}, answer.status)


def _call_predict(
    request: Request, user: WebUser, model_id: str, rows: list[list[float]], key: str
) -> Any:
    """POST /models/{id}/predictions, served by the predict function itself, as the person
    (a short-lived access token of their session) with the form's Idempotency-Key."""
    token = token_signer().issue_access(user.user_id, user.role, user.family_id)
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "idempotency-key": key,
    }
    body = json.dumps({"inputs": rows}).encode()
    return predict_function().call(
        "POST", f"/models/{model_id}/predictions", headers, body, source_ip(request)
    )


def _problem(body: bytes, status: int) -> dict[str, Any]:
    """The predict function's problem document, with what the page shows always present."""
    try:
        found = json.loads(body)
    except ValueError:
        found = None
    problem: dict[str, Any] = found if isinstance(found, dict) else {}
    problem.setdefault("title", "The prediction failed")
    problem.setdefault("detail", "")
    problem.setdefault("balance", None)
    problem.setdefault("required", None)
    problem["status"] = status
    return problem


@router.post("/ui/models/{model_id}/price")
async def change_price(request: Request, model_id: str) -> Response:
    return await _update(request, model_id, "price")


@router.post("/ui/models/{model_id}/description")
async def change_description(request: Request, model_id: str) -> Response:
    return await _update(request, model_id, "description")


async def _update(request: Request, model_id: str, field: str) -> Response:
    """Change the model's price or description (its owner or an admin), as PATCH would."""
    user = required_user(request)
    form = await read_form(request)
    service = model_service()
    try:
        if field == "price":
            change: dict[str, Any] = {"price": whole_number(form.text("price"), "Price")}
        else:
            change = {"description": form.get("description", "").strip()}
        body = validated(ModelUpdate, change)
        service.update(user.claims, model_id[:64], body.price, body.description)
    except DomainError as exc:
        model = service.show(user.claims, model_id[:64])
        return _model_page(request, user, model, {"error": exc.detail}, exc.status)
    return redirect(f"/ui/models/{model_id}?changed={field}")


@router.post("/ui/models/{model_id}/versions")
async def new_version(request: Request, model_id: str) -> Response:
    """Open the next version and answer its presigned POST (JSON, for the page's script)."""
    user = required_user(request)
    await read_form(request)  # its CSRF check
    try:
        ticket = model_service().new_version(user.claims, model_id[:64])
    except DomainError as exc:
        return _json_problem(exc)
    return _upload_ticket(ticket)


@router.post("/ui/models/{model_id}/archive")
async def archive(request: Request, model_id: str) -> Response:
    user = required_user(request)
    await read_form(request)  # its CSRF check
    model_service().archive(user.claims, model_id[:64])
    return redirect(f"/ui/models/{model_id}?changed=archived")


@router.get("/ui/publish")
async def publish_page(request: Request) -> Response:
    user = required_user(request)
    if not user.is_publisher:
        raise PublishersOnly()
    context = {"max_bytes": get_settings().max_model_bytes}
    return page(request, "publish.html", user, context, connect=upload_origins())


class PublishersOnly(DomainError):
    status = 403
    code = "forbidden"
    title = "Only publishers and admins may publish models"

    def __init__(self) -> None:
        super().__init__("Ask an admin to make your account a publisher.")


@router.post("/ui/publish")
async def publish(request: Request) -> Response:
    """Create the model and answer the presigned POST (JSON, for the page's script, which
    then sends the file from the browser straight to the uploads bucket)."""
    user = required_user(request)
    form = await read_form(request)
    try:
        if user.role is Role.USER:
            raise PublishersOnly()
        price = whole_number(form.text("price"), "Price", minimum=0)
        data = {
            "name": form.text("name"),
            "description": form.text("description") or None,
            "price": price,
        }
        body = validated(ModelCreate, data)
        ticket = model_service().create(user.claims, body.name, body.description, body.price)
    except DomainError as exc:
        return _json_problem(exc)
    return _upload_ticket(ticket)


def _json_problem(exc: DomainError) -> Response:
    answer = JSONResponse(
        {"title": exc.title, "detail": exc.detail, "code": exc.code}, status_code=exc.status
    )
    secure(answer)
    return answer


def _upload_ticket(ticket: UploadTicket) -> Response:
    answer = JSONResponse(
        {
            "model_id": ticket.model.id,
            "page": f"/ui/models/{ticket.model.id}",
            "upload": {"url": ticket.url, "fields": ticket.fields, "max_bytes": ticket.max_bytes},
        },
        status_code=201,
    )
    secure(answer)
    return answer
