"""Routes of the auth function under /api-keys: a user's API keys for programs.

Only an access token manages keys: a key presented here gets 403 `api_key_not_allowed`, as
it does on /auth/* (`RefuseApiKeysUnder`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import AfterValidator, BaseModel, Field, StringConstraints
from starlette.types import ASGIApp, Receive, Scope, Send

from creditml.api.dependencies import SessionPrincipal
from creditml.api.problems import PROBLEM_RESPONSES, error_response, problem_doc
from creditml.auth.api_keys import (
    MAX_KEYS_PER_USER,
    NAME_MAX_LENGTH,
    ApiKey,
    ApiKeyService,
    is_api_key,
)
from creditml.composition.api_keys import api_key_service
from creditml.errors import ApiKeyNotAllowed
from creditml.text import check_safe_text

_NOT_ALLOWED = problem_doc("Called with an API key (`api_key_not_allowed`): use an access token")
router = APIRouter(responses={**PROBLEM_RESPONSES, 403: _NOT_ALLOWED}, tags=["api-keys"])

# Trimmed first, then measured and checked (one line, nothing invisible: creditml.text).
KeyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH),
    AfterValidator(check_safe_text),
]
KeyId = Annotated[str, Path(min_length=1, max_length=64)]


class ApiKeyCreate(BaseModel):
    name: KeyName = Field(description="What the key is for (1 to 100 characters, one line)")


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    created_at: datetime
    last_used_day: date | None = Field(
        description="UTC day of the key's latest use (recorded at most once a day); null: "
        "never used"
    )


class ApiKeyCreated(BaseModel):
    id: str
    name: str
    key: str = Field(description="The key (cml_...): shown only this once, stored only as a hash")
    created_at: datetime


class ApiKeyList(BaseModel):
    items: list[ApiKeyPublic]


async def get_api_key_service() -> ApiKeyService:
    return api_key_service()


Service = Annotated[ApiKeyService, Depends(get_api_key_service)]


def _public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key.id, name=key.name, created_at=key.created_at, last_used_day=key.last_used_day
    )


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses={
        409: problem_doc(
            f"The account has {MAX_KEYS_PER_USER} keys already (`api_key_limit_reached`)"
        )
    },
)
def create_api_key(
    body: ApiKeyCreate, principal: SessionPrincipal, service: Service
) -> ApiKeyCreated:
    """Make an API key for programs: `Authorization: Bearer <key>` then acts as you on every
    route except /api-keys and /auth/*. The key is in this answer only; store it now."""
    created = service.create(principal.user_id, body.name)
    key = created.key
    return ApiKeyCreated(id=key.id, name=key.name, key=created.secret, created_at=key.created_at)


@router.get("/api-keys", response_model=ApiKeyList)
def list_api_keys(principal: SessionPrincipal, service: Service) -> ApiKeyList:
    """Your API keys, newest first (never the keys themselves)."""
    return ApiKeyList(items=[_public(key) for key in service.list(principal.user_id)])


@router.delete(
    "/api-keys/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: problem_doc("You have no such key (`api_key_not_found`)")},
)
def revoke_api_key(id: KeyId, principal: SessionPrincipal, service: Service) -> Response:
    """Revoke one of your API keys: it stops working everywhere within 60 seconds."""
    service.revoke(principal.user_id, id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class RefuseApiKeysUnder:
    """ASGI middleware: 403 `api_key_not_allowed` for a request under `prefix` (/auth/*)
    that presents an API key. Those routes take no bearer credential, so a key sent there
    is a mistake (or a key trying to act as a session): say so rather than ignore it. A
    look at the path and the header's prefix; no lookup."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self._prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(self._prefix):
            for name, value in scope.get("headers", ()):
                if name == b"authorization" and _presents_api_key(value):
                    await error_response(ApiKeyNotAllowed())(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _presents_api_key(authorization: bytes) -> bool:
    scheme, _, credential = authorization.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and is_api_key(credential.strip())
