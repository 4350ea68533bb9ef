"""Placeholders in `events/*.json`: the one list of them, the substitution that fills them in
(shared by `creditml invoke` and the tests' `load_event`), and how each is resolved against a
running local stack.

An event file holds `<name>` inside a JSON string wherever a live value goes
(`"authorization": "Bearer <access-token>"`, `"rawPath": "/models/<model-id>"`).
`fill_event` puts given values in; `StackValues` works them out from the local stack this
process is configured for. A name that is not in `PLACEHOLDERS` is an error, never left in.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from creditml.auth.schemas import TokenPair
    from creditml.auth.service import AuthService
    from creditml.devstack.template import Template
    from creditml.users import User

DEMO_MODEL_NAME = "iris-demo"
# One iris row, in the demo model's feature order.
DEMO_INPUTS: dict[str, Any] = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
_PLACEHOLDER = re.compile(r"<([a-z][a-z0-9-]*)>")


class PlaceholderError(ValueError):
    """A placeholder that is not known, has no value, or could not be resolved."""


def _marks(names: Iterable[str]) -> str:
    return ", ".join(f"<{name}>" for name in names)


def placeholders_in(text: str) -> list[str]:
    """The placeholder names in an event's text, each once, in order of appearance.
    PlaceholderError names every one that is not in PLACEHOLDERS."""
    names = list(dict.fromkeys(_PLACEHOLDER.findall(text)))
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        raise PlaceholderError(
            f"unknown placeholder(s) {_marks(unknown)}; known: {_marks(PLACEHOLDERS)}"
        )
    return names


def fill_event(
    text: str, values: Mapping[str, str], *, leave_missing: bool = False
) -> dict[str, Any]:
    """The event in `text` (JSON) with every `<name>` replaced by `values[name]`.

    Values land intact whatever they hold (quotes, backslashes, tabs, non-ASCII): a value
    inside a string that is itself a JSON document (an HTTP `body`) is escaped for that
    document. PlaceholderError for unknown names (in `text` or `values`) and, unless
    `leave_missing`, for placeholders without a value (`leave_missing` keeps them as they
    are, for callers that replace that part of the event anyway).
    """
    names = placeholders_in(text)
    strays = [name for name in values if name not in PLACEHOLDERS]
    if strays:
        raise PlaceholderError(f"no such placeholder(s) {_marks(strays)}")
    missing = [name for name in names if name not in values]
    if missing and not leave_missing:
        raise PlaceholderError(f"no value for {_marks(missing)}")
    event: dict[str, Any] = _fill(json.loads(text), values)
    return event


def _fill(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _fill_string(node, values)
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _fill(item, values) for key, item in node.items()}
    return node


def _fill_string(text: str, values: Mapping[str, str]) -> str:
    if "<" not in text:
        return text
    escape = _is_json_document(text)

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in values:
            return found.group(0)
        value = values[name]
        # Escaped in place rather than re-serialising the document: its other bytes stay.
        return json.dumps(value, ensure_ascii=False)[1:-1] if escape else value

    return _PLACEHOLDER.sub(replace, text)


def _is_json_document(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict | list)
    except ValueError:
        return False


class StackValues:
    """Values for placeholders, worked out from the local stack this process is configured
    for (its environment applied, as in one of its function containers).

    Each value is computed on first use and kept for the invocation, so `<access-token>` and
    `<refresh-token>` come from one session and a repeated `<idempotency-key>` is one key.
    `given` values win over resolution (`creditml invoke --set NAME=VALUE`).
    """

    def __init__(
        self,
        template: Template,
        caller_email: str,
        demo_email: str,
        admin_email: str,
        *,
        demo_model_id: str | None = None,
        given: Mapping[str, str] | None = None,
    ) -> None:
        self._template = template
        self._caller_email = caller_email
        self._demo_email = demo_email
        self._admin_email = admin_email
        self._demo_model_id = demo_model_id
        self._values: dict[str, str] = {}
        for name, value in (given or {}).items():
            if name not in PLACEHOLDERS:
                raise PlaceholderError(f"no such placeholder <{name}>")
            self._values[name] = value

    def values_for(self, names: Iterable[str]) -> dict[str, str]:
        """A value for each of `names` (known placeholder names)."""
        return {name: self.value(name) for name in names}

    def value(self, name: str) -> str:
        """The value of one placeholder, resolved on first use."""
        if name not in self._values:
            self._values[name] = PLACEHOLDERS[name].resolve(self)
        return self._values[name]

    # Resolvers, one per placeholder: PLACEHOLDERS says what each gives.

    def _access_token(self) -> str:
        return self._session.access_token

    def _refresh_token(self) -> str:
        return self._session.refresh_token

    def _demo_user_id(self) -> str:
        return self._user(self._demo_email).id

    def _idempotency_key(self) -> str:
        return str(uuid.uuid4())

    def _new_email(self) -> str:
        return f"new.user.{secrets.token_hex(4)}@example.com"

    def _login_email(self) -> str:
        return self._throwaway_account[0]

    def _login_password(self) -> str:
        return self._throwaway_account[1]

    def _model_id(self) -> str:
        if self._demo_model_id is None:
            self._demo_model_id = self._find_demo_model()
        return self._demo_model_id

    def _prediction_id(self) -> str:
        status, page = self._call("GET", "/predictions", query="limit=1")
        if status == 200 and page["items"]:
            return str(page["items"][0]["id"])
        model_id = self.value("model-id")
        status, receipt = self._call(
            "POST", f"/models/{model_id}/predictions", body=DEMO_INPUTS, key=str(uuid.uuid4())
        )
        if status != 200:
            raise PlaceholderError(
                f"<prediction-id>: {self._caller_email} has no prediction, and making one on "
                f"model {model_id} answered {status} {_code(receipt)}"
            )
        return str(receipt["prediction_id"])

    def _device_id(self) -> str:
        status, page = self._call("GET", "/devices")
        if status == 200 and page["items"]:
            return str(page["items"][0]["id"])
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        from creditml.models.device_seal import encode_public_key

        public = X25519PrivateKey.generate().public_key().public_bytes_raw()
        body = {
            "name": "creditml invoke",
            "public_key": encode_public_key(public),
            "fingerprint": hashlib.sha256(b"creditml invoke").hexdigest(),
        }
        status, device = self._call("POST", "/devices", body=body)
        if status != 201:
            raise PlaceholderError(
                f"<device-id>: registering a device as {self._caller_email} answered {status} "
                f"{_code(device)}"
            )
        return str(device["id"])

    def _uploads_bucket(self) -> str:
        from creditml.settings import get_settings

        return get_settings().uploads_bucket

    def _upload_key(self) -> str:
        from creditml.composition.models import uploads

        status, created = self._call("POST", "/models", body={"name": "events-upload", "price": 1})
        if status != 201:
            raise PlaceholderError(
                f"<upload-key>: creating a model as {self._caller_email} answered {status} "
                f"{_code(created)} (uploading takes a publisher or an admin: --as admin)"
            )
        key = str(created["upload"]["fields"]["key"])
        uploads().put(key, _small_model_file(), created["upload"]["fields"])
        return key

    # What the resolvers share.

    @property
    def _auth(self) -> AuthService:
        # The stack's own services (this process carries its environment), so tokens minted
        # here are signed with the stack's key.
        from creditml.composition.auth import auth_service

        return auth_service()

    def _user(self, email: str) -> User:
        from creditml.composition.auth import user_repository

        found = user_repository().find_credentials(email)
        if found is None:
            raise PlaceholderError(f"no local user {email}")
        return found[0]

    @cached_property
    def _session(self) -> TokenPair:
        return self._auth.start_session(self._user(self._caller_email))

    @cached_property
    def _throwaway_account(self) -> tuple[str, str]:
        email, password = self._new_email(), secrets.token_urlsafe(12)
        self._auth.register(email, password)
        return email, password

    def _find_demo_model(self) -> str:
        from creditml.composition.models import model_repository

        owned = model_repository().owned_by(self._user(self._admin_email).id)
        demos = sorted(
            (model for model in owned if model.name == DEMO_MODEL_NAME),
            key=lambda model: model.created_at,
        )
        if not demos:
            raise PlaceholderError(f"<model-id>: the stack has no {DEMO_MODEL_NAME} model")
        return demos[0].id

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> tuple[int, Any]:
        """Call the route's function handler as the `--as` user, as the gateway would."""
        from creditml.devstack.gateway import build_event, to_http_response
        from creditml.devstack.runtime import invoke

        found = self._template.route_for(method, path)
        if found is None:
            raise PlaceholderError(f"the template has no route for {method} {path}")
        route, parameters = found
        headers = {"authorization": f"Bearer {self.value('access-token')}"}
        if body is not None:
            headers["content-type"] = "application/json"
        if key is not None:
            headers["idempotency-key"] = key
        raw = json.dumps(body).encode() if body is not None else b""
        event = build_event(method, path, query, headers, raw, route, parameters)
        response = invoke(self._template.functions[route.function], event)
        status, _, answer = to_http_response(response)
        return status, json.loads(answer or b"null")


def _code(problem: Any) -> str:
    return str(problem.get("code", "")) if isinstance(problem, dict) else ""


def _small_model_file() -> bytes:
    """A tiny fitted classifier as joblib bytes: something register_model accepts."""
    import io

    import joblib
    from sklearn.linear_model import LogisticRegression

    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Placeholder:
    """One placeholder: its name (without the angle brackets), how `creditml invoke` fills
    it (events/README.md says the same), and the resolver that does."""

    name: str
    filled_with: str
    resolve: Callable[[StackValues], str]


PLACEHOLDERS: dict[str, Placeholder] = {
    placeholder.name: placeholder
    for placeholder in (
        Placeholder(
            "access-token",
            "an access token of a new session of the `--as` user, minted with the stack's key",
            StackValues._access_token,
        ),
        Placeholder(
            "refresh-token", "the refresh token of that same session", StackValues._refresh_token
        ),
        Placeholder(
            "demo-user-id",
            "the demo user's id: the account an admin's grant or role change acts on",
            StackValues._demo_user_id,
        ),
        Placeholder(
            "idempotency-key", "a new UUID for each invocation", StackValues._idempotency_key
        ),
        Placeholder(
            "new-email",
            "an address no account has yet (`new.user.<random>@example.com`)",
            StackValues._new_email,
        ),
        Placeholder(
            "login-email",
            "a throwaway account registered for this invocation",
            StackValues._login_email,
        ),
        Placeholder(
            "login-password", "that throwaway account's password", StackValues._login_password
        ),
        Placeholder(
            "model-id",
            f"the demo model's id (`{DEMO_MODEL_NAME}`, owned by the stack's admin)",
            StackValues._model_id,
        ),
        Placeholder(
            "prediction-id",
            "the `--as` user's newest prediction; if they have none, one made through the "
            "predict handler on `<model-id>` (1 row, charged to them)",
            StackValues._prediction_id,
        ),
        Placeholder(
            "device-id",
            "the `--as` user's first device; if they have none, one registered through the "
            "models handler (a new X25519 key whose private half is not kept)",
            StackValues._device_id,
        ),
        Placeholder("uploads-bucket", "the stack's uploads bucket", StackValues._uploads_bucket),
        Placeholder(
            "upload-key",
            "a new model of the `--as` user (a publisher or an admin) created through the "
            "models handler, a small fitted classifier put at its version-1 upload key",
            StackValues._upload_key,
        ),
    )
}
