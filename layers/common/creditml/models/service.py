"""The models service: create models and versions (with presigned uploads), list, show,
update and archive. Never touches model parts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from creditml.auth.roles import Role, role_satisfies
from creditml.auth.tokens import AccessClaims
from creditml.errors import Forbidden, ModelNotFound
from creditml.models.records import Model


class Unchanged(Enum):
    """Leave a field as it is (where None is a value: `download_price` None is "not
    downloadable")."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


@dataclass(frozen=True)
class UploadBinding:
    """What a pending version keeps of its upload: the SHA-256 of the upload's token (the
    token itself is only ever in the publisher's presigned POST) and its deadline."""

    token_hash: str
    deadline: datetime


class ModelStore(Protocol):
    def create(
        self,
        model_id: str,
        name: str,
        description: str | None,
        owner_id: str,
        price: int,
        upload: UploadBinding,
    ) -> Model: ...

    def add_version(
        self, model_id: str, expected_latest: int, owner_id: str, upload: UploadBinding
    ) -> int: ...

    def get(self, model_id: str) -> Model: ...

    def catalog(self) -> list[Model]: ...

    def owned_by(self, owner_id: str) -> list[Model]: ...

    def update(
        self,
        model_id: str,
        price: int | None,
        description: str | None,
        download_price: int | Unchanged | None = UNCHANGED,
    ) -> Model: ...

    def archive(self, model_id: str) -> Model: ...


class UploadSigner(Protocol):
    def presigned_post(
        self, key: str, max_bytes: int, expires_in: int, token: str
    ) -> dict[str, Any]: ...


def new_upload_token() -> str:
    """A random per-upload token. The presigned POST carries it as signed object metadata;
    registration accepts only an object that brings back the token of its version."""
    return secrets.token_urlsafe(32)


def hash_upload_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def upload_token_matches(token: str | None, token_hash: str | None) -> bool:
    """Whether an uploaded object's token is the one issued for its version."""
    if not token or not token_hash:
        return False
    return hmac.compare_digest(hash_upload_token(token), token_hash)


def upload_key(model_id: str, version: int) -> str:
    """Where a version's file is uploaded; register_model parses it back."""
    return f"{model_id}/{version}/model.joblib"


def parse_upload_key(key: str) -> tuple[str, int] | None:
    parts = key.split("/")
    if len(parts) != 3 or parts[2] != "model.joblib" or not parts[1].isdigit():
        return None
    try:
        return str(uuid.UUID(parts[0])), int(parts[1])
    except ValueError:
        return None


@dataclass(frozen=True)
class UploadTicket:
    model: Model
    version: int
    url: str
    fields: dict[str, str]
    expires_in: int
    max_bytes: int


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ModelService:
    def __init__(
        self,
        models: ModelStore,
        uploads: UploadSigner,
        max_bytes: int,
        url_ttl: int,
        upload_grace_seconds: int = 900,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._models = models
        self._uploads = uploads
        self._max_bytes = max_bytes
        self._url_ttl = url_ttl
        # An upload started just before its POST expires may take minutes to arrive and
        # its registration minutes more (retries): only after this does it count as lost.
        self._grace = upload_grace_seconds
        self._clock = clock

    def create(
        self, caller: AccessClaims, name: str, description: str | None, price: int
    ) -> UploadTicket:
        """A new model (version 1, pending) and a presigned POST to upload its file."""
        if not role_satisfies(caller.role, Role.PUBLISHER):
            raise Forbidden("Only publishers and admins may upload models.")
        token, binding = self._binding()
        model = self._models.create(
            str(uuid.uuid4()), name, description, caller.user_id, price, binding
        )
        return self._ticket(model, 1, token)

    def new_version(self, caller: AccessClaims, model_id: str) -> UploadTicket:
        """The next version of an existing model, pending its upload."""
        model = self._owned(caller, model_id)
        token, binding = self._binding()
        version = self._models.add_version(model.id, model.latest_version, model.owner_id, binding)
        return self._ticket(self._models.get(model.id), version, token)

    def visible(self, caller: AccessClaims) -> list[Model]:
        """Ready models in the catalogue plus every model the caller owns; admins see all
        models they own and the catalogue (archived models of others are not listed)."""
        found = {model.id: model for model in self._models.catalog()}
        found.update({model.id: model for model in self._models.owned_by(caller.user_id)})
        now = self._clock()
        ordered = sorted(found.values(), key=lambda model: model.created_at, reverse=True)
        return [model.as_of(now) for model in ordered]

    def show(self, caller: AccessClaims, model_id: str) -> Model:
        """A model's details. Others' models are visible while they serve and are not
        archived; otherwise they do not exist for the caller (404, not 403)."""
        model = self._models.get(model_id)
        if self._may_manage(caller, model) or (model.serving_version and not model.archived):
            return model.as_of(self._clock())
        raise ModelNotFound()

    def update(
        self,
        caller: AccessClaims,
        model_id: str,
        price: int | None,
        description: str | None,
        download_price: int | Unchanged | None = UNCHANGED,
    ) -> Model:
        """Change the price, description or download price (None: not downloadable by
        others) of a model the caller may manage."""
        self._owned(caller, model_id)
        return self._models.update(model_id, price, description, download_price)

    def archive(self, caller: AccessClaims, model_id: str) -> Model:
        self._owned(caller, model_id)
        return self._models.archive(model_id)

    def _owned(self, caller: AccessClaims, model_id: str) -> Model:
        model = self.show(caller, model_id)
        # An owner demoted to user keeps seeing their models but may no longer change them.
        if not self._may_manage(caller, model) or not role_satisfies(caller.role, Role.PUBLISHER):
            raise Forbidden("Only the model's owner (a publisher) or an admin may change it.")
        return model

    @staticmethod
    def _may_manage(caller: AccessClaims, model: Model) -> bool:
        return caller.role is Role.ADMIN or model.owner_id == caller.user_id

    def _binding(self) -> tuple[str, UploadBinding]:
        token = new_upload_token()
        deadline = self._clock() + timedelta(seconds=self._url_ttl + self._grace)
        return token, UploadBinding(hash_upload_token(token), deadline)

    def _ticket(self, model: Model, version: int, token: str) -> UploadTicket:
        post = self._uploads.presigned_post(
            upload_key(model.id, version), self._max_bytes, self._url_ttl, token
        )
        return UploadTicket(
            model, version, post["url"], dict(post["fields"]), self._url_ttl, self._max_bytes
        )
