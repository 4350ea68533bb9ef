"""`Client`: CreditML's API from Python.

from creditml_client import Client

with Client("https://api.example.com", email="me@example.com", password="...") as api:
    receipt = api.predict(model_id, [[5.1, 3.5, 1.4, 0.2]])
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from creditml_client import __version__, paths
from creditml_client._auth import Authenticator, Recovery
from creditml_client._devices import DeviceRecord, DeviceStore
from creditml_client._retry import Backoff, response_retry, transport_error_retryable
from creditml_client._upload import MultipartUpload, Progress
from creditml_client.errors import (
    CreditMLError,
    DeviceNotRegistered,
    IntegrityFailed,
    MissingDependency,
    ModelLoadFailed,
    PublishFailed,
    TransportFailed,
    error_for,
)
from creditml_client.hardware import fingerprint, hardware_facts
from creditml_client.paths import atomic_writer

__all__ = ["Client"]

Hardware = Callable[[], Mapping[str, str]]
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_DONE_STATUSES = ("ready", "rejected", "expired")
_CHUNK = 256 * 1024


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


class Client:
    """A client of the CreditML API.

    Args:
        base_url: The API's base URL, e.g. ``http://127.0.0.1:3000``.
        email: Log in with this email (and `password`) on the first call that needs it,
            and again when a refresh is refused.
        password: The password for `email`. Kept in memory only.
        api_key: An API key (``cml_...``) to send instead of logging in. A 401 with an API
            key raises `AuthenticationFailed` at once.
        refresh_token: A refresh token from an earlier session (e.g. stored by the CLI);
            used before `email`/`password`. The rotated token is `refresh_token`.
        transport: An httpx transport for every request the client makes, presigned S3
            uploads and downloads included (proxies, tests with ``httpx.MockTransport``).
        config_dir: Where device keys live (default: see `creditml_client.paths`).
        cache_dir: Where downloaded big parts are cached (default: see
            `creditml_client.paths`).
        timeout: Seconds before a single request times out.
        max_retry_seconds: The most a call waits in total between its retries
            (0 disables retries).
        hardware: Returns this machine's hardware facts (default:
            `creditml_client.hardware.hardware_facts`); the device fingerprint is their
            SHA-256.
        sleep: How to wait between retries and polls (default ``time.sleep``).

    Thread-safe for concurrent calls. Use it as a context manager, or call `close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        email: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        refresh_token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        config_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        max_retry_seconds: float = 30.0,
        hardware: Hardware | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._transport = transport
        self._timeout = timeout
        self._max_retry_seconds = max_retry_seconds
        self._sleep = sleep
        self._config_dir = paths.config_dir(config_dir)
        self._cache_dir = paths.cache_dir(cache_dir)
        self._hardware: Hardware = hardware or (lambda: hardware_facts(self._config_dir))
        self._devices = DeviceStore(self._config_dir)
        self._user_id: str | None = None
        headers = {"User-Agent": f"creditml-client/{__version__}", "Accept": "application/json"}
        self._api = httpx.Client(
            base_url=self.base_url, transport=transport, timeout=timeout, headers=headers
        )
        self._external: httpx.Client | None = None
        self._auth = Authenticator(
            self._post_unauthenticated,
            email=email,
            password=password,
            api_key=api_key,
            refresh_token=refresh_token,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the client's connections."""
        self._api.close()
        if self._external is not None:
            self._external.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def refresh_token(self) -> str | None:
        """The current refresh token (rotated on every refresh): store this one, not the
        one the client started with. None with an API key or before the first log-in."""
        return self._auth.refresh_token

    # -- account -----------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The caller's profile: ``{id, email, role, balance}``."""
        profile: dict[str, Any] = self._request("GET", "/users/me")
        self._user_id = str(profile["id"])
        return profile

    def balance(self) -> int:
        """The caller's credit balance."""
        return int(self._request("GET", "/billing/balance")["balance"])

    def top_up(self, amount: int) -> dict[str, Any]:
        """Buy `amount` credits; charged once however often the client retries.

        Returns:
            The ledger entry: ``{id, kind, amount, balance_after, created_at, ...}``.
        """
        result: dict[str, Any] = self._request(
            "POST", "/billing/top-ups", json={"amount": amount}, key=_new_key()
        )
        return result

    def transactions(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of the caller's ledger, newest first: ``{items, next_cursor}``; pass
        ``next_cursor`` back as `cursor` for the next page."""
        page: dict[str, Any] = self._request(
            "GET", "/billing/transactions", params=_query(limit=limit, cursor=cursor)
        )
        return page

    # -- models ------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every model the caller can see (ready ones, plus the caller's own), all pages."""
        return list(self._all("/models"))

    def model(self, model_id: str) -> dict[str, Any]:
        """One model with its status, price, versions and input schema.

        Raises:
            NotFound: No such model, or one the caller may not see.
        """
        result: dict[str, Any] = self._request("GET", f"/models/{_segment(model_id)}")
        return result

    def update_model(self, model_id: str, **fields: Any) -> dict[str, Any]:
        """Change a model's ``price``, ``description`` or ``download_price`` (owner or
        admin); ``download_price=None`` stops downloads. Returns the model."""
        result: dict[str, Any] = self._request(
            "PATCH", f"/models/{_segment(model_id)}", json=fields
        )
        return result

    def publish(
        self,
        name: str,
        path: str | os.PathLike[str],
        price: int,
        description: str | None = None,
        progress: Progress | None = None,
        wait: bool = True,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Create a model, upload its joblib file and wait until it is registered.

        Args:
            name: The model's name.
            path: The joblib file.
            price: Credits per predicted row.
            description: Optional text for the catalogue.
            progress: Called as ``progress(done_bytes, total_bytes)`` while uploading.
            wait: Wait until the version is ready, rejected or expired (else return the
                pending model at once).
            timeout: Seconds to wait for that.

        Returns:
            The model, ``status`` ``"ready"`` (or ``"pending"`` with ``wait=False``).

        Raises:
            FileNotFoundError: `path` does not exist (before anything is created).
            PublishFailed: ``model_rejected`` (with the reason as ``detail``),
                ``model_expired``, ``file_too_large``, ``upload_failed`` or
                ``publish_timeout``.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"no such file: {file}")
        body: dict[str, Any] = {"name": name, "price": price}
        if description is not None:
            body["description"] = description
        created = self._request("POST", "/models", json=body, safe=False)
        self._upload(created["upload"], file, progress)
        model_id, version = str(created["model_id"]), int(created["version"])
        if not wait:
            return self.model(model_id)
        return self._await_version(model_id, version, timeout)

    def predict(self, model_id: str, inputs: Any) -> dict[str, Any]:
        """Predict with a model's serving version; k rows cost k x its price, once.

        Args:
            model_id: The model.
            inputs: Rows, as lists of numbers in feature order or dicts keyed by feature
                name (anything with ``tolist()``, e.g. a numpy array, works too).

        Returns:
            The receipt: ``{prediction_id, outputs, probabilities?, cost, balance,
            model_version}``.

        Raises:
            InsufficientCredits: Too few credits (``balance``, ``required``).
            ValidationFailed: Rows that do not fit the model (``errors``).
        """
        rows = inputs.tolist() if hasattr(inputs, "tolist") else inputs
        receipt: dict[str, Any] = self._request(
            "POST",
            f"/models/{_segment(model_id)}/predictions",
            json={"inputs": rows},
            key=_new_key(),
        )
        return receipt

    def predictions(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of the caller's predictions, newest first: ``{items, next_cursor}``."""
        page: dict[str, Any] = self._request(
            "GET", "/predictions", params=_query(limit=limit, cursor=cursor)
        )
        return page

    def usage(self, **query: Any) -> dict[str, Any]:
        """The usage report (``GET /reports/usage``).

        Keyword args are its query: ``from_`` (or ``**{"from": ...}``), ``to``
        (``YYYY-MM-DD``), ``group_by`` (``day`` or ``model``), ``scope`` (``own``,
        ``published`` or ``all``).
        """
        params = {name.rstrip("_"): value for name, value in query.items()}
        report: dict[str, Any] = self._request("GET", "/reports/usage", params=_query(**params))
        return report

    # -- API keys ----------------------------------------------------------------------

    def create_api_key(self, name: str) -> dict[str, Any]:
        """Create an API key: ``{id, name, key, created_at}``; ``key`` is shown only now."""
        result: dict[str, Any] = self._request("POST", "/api-keys", json={"name": name}, safe=False)
        return result

    def api_keys(self) -> list[dict[str, Any]]:
        """The caller's API keys: ``[{id, name, created_at, last_used_day}]``."""
        return list(self._all("/api-keys"))

    def revoke_api_key(self, key_id: str) -> None:
        """Revoke an API key (effective everywhere within 60 seconds)."""
        self._request("DELETE", f"/api-keys/{_segment(key_id)}", safe=False)

    # -- devices and downloads ---------------------------------------------------------

    def register_device(self, name: str) -> dict[str, Any]:
        """Register this machine as a device and make it the one downloads use for this
        base URL and user. Its X25519 private key stays here (mode 0600 under the config
        folder); the API gets the public key and the hardware fingerprint.

        Registering again (e.g. after the hardware changed) makes a new device: the one it
        replaces is removed on the server too (best effort), as its key is deleted here
        and nothing can open its downloads any more. Versions bought for it are bought
        again for the new device.

        Returns:
            The device: ``{id, name, created_at}``.
        """
        user_id = self._current_user_id()
        previous = self._devices.load(self.base_url, user_id)
        key, key_path = self._devices.new_key()
        from creditml_client._shared.device_seal import encode_public_key

        public_key = encode_public_key(key.public_key().public_bytes_raw())
        facts = fingerprint(self._hardware())
        try:
            device: dict[str, Any] = self._request(
                "POST",
                "/devices",
                json={"name": name, "public_key": public_key, "fingerprint": facts},
                safe=False,
            )
        except BaseException:
            key_path.unlink(missing_ok=True)
            raise
        record = DeviceRecord(
            self.base_url, user_id, str(device["id"]), name, public_key, str(key_path), facts
        )
        self._devices.save(record)
        if previous is not None and previous.device_id != record.device_id:
            self._retire(previous.device_id)
        return device

    def _retire(self, device_id: str) -> None:
        """Remove a replaced device on the server; it may be gone already, and a failure
        leaves only a listed device that `delete_device` can remove later."""
        with contextlib.suppress(CreditMLError):
            self._request("DELETE", f"/devices/{_segment(device_id)}", safe=False)

    def device(self) -> dict[str, Any] | None:
        """The device this client downloads to, as remembered here, or None."""
        record = self._devices.load(self.base_url, self._current_user_id())
        if record is None:
            return None
        return {"id": record.device_id, "name": record.name, "fingerprint": record.fingerprint}

    def devices(self) -> list[dict[str, Any]]:
        """The caller's registered devices."""
        return list(self._all("/devices"))

    def delete_device(self, device_id: str) -> None:
        """Delete a device; if it is the one remembered here, forget it and its key."""
        self._request("DELETE", f"/devices/{_segment(device_id)}", safe=False)
        user_id = self._current_user_id()
        record = self._devices.load(self.base_url, user_id)
        if record is not None and record.device_id == device_id:
            self._devices.forget(self.base_url, user_id)

    def download(
        self, model_id: str, version: int | None = None, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Download a model version to this device: the sealed part from the API (paid
        once per device and version unless the caller owns the model), the big part only
        when the cache does not hold it yet.

        Args:
            model_id: The model.
            version: A version; default the serving one.
            progress: Called as ``progress(done_bytes, total_bytes)`` while the big part
                downloads (not called when it comes from the cache).

        Returns:
            The API's answer ``{model_id, version, big_url, big_sha256, big_size, sealed,
            cost, balance}`` plus ``cached`` (the big part was already here) and
            ``big_path`` (where it is).

        Raises:
            DeviceNotRegistered: No device registered here for this API and user.
            Forbidden: The model sells no downloads (no ``download_price``).
            InsufficientCredits: Too few credits for the download price.
            IntegrityFailed: The big part's bytes are not the announced ones.
        """
        record = self._require_device()
        body: dict[str, Any] = {"device_id": record.device_id}
        if version is not None:
            body["version"] = version
        result: dict[str, Any] = self._request(
            "POST", f"/models/{_segment(model_id)}/downloads", json=body, key=_new_key()
        )
        path = self._big_path(str(result["big_sha256"]))
        cached = path.is_file() and path.stat().st_size == int(result["big_size"])
        if not cached:
            self._fetch_big(result, path, progress)
        return {**result, "cached": cached, "big_path": str(path)}

    def load_model(self, model_id: str, version: int | None = None) -> Any:
        """Download (see `download`) and load a model on this device.

        The sealed part opens only with this device's private key and the hardware
        fingerprint computed now; the file is then loaded through the same allowlist as
        the server's, and nothing the allowlist refuses is ever unpickled. Needs
        ``pip install "creditml-client[models]"``.

        Returns:
            The fitted estimator.

        Raises:
            MissingDependency: joblib, scikit-learn or numpy is not installed.
            DeviceNotRegistered: No device registered here for this API and user.
            ModelLoadFailed: The download does not open here (another device's key,
                changed hardware, altered bytes) or the allowlist refuses the file.
        """
        _require_model_extras()
        record = self._require_device()
        result = self.download(model_id, version)
        data = self._open_download(result, record)
        from creditml_client._shared.errors import ModelRejected
        from creditml_client._shared.safe_loading import load_model

        try:
            return load_model(data)
        except ModelRejected as exc:
            raise ModelLoadFailed(f"the model file is refused: {exc}") from exc

    # -- internals: downloads ----------------------------------------------------------

    def _require_device(self) -> DeviceRecord:
        record = self._devices.load(self.base_url, self._current_user_id())
        if record is None:
            raise DeviceNotRegistered(
                f"no device is registered on this machine for {self.base_url}: "
                "register one first (Client.register_device)"
            )
        return record

    def _big_path(self, sha256: str) -> Path:
        if not _SHA256_HEX.match(sha256):  # it names a file: never a path from the wire
            raise IntegrityFailed(f"the API sent an invalid big_sha256: {sha256[:80]!r}")
        return self._cache_dir / "big" / sha256

    def _open_download(self, result: Mapping[str, Any], record: DeviceRecord) -> bytes:
        from creditml_client._shared.crypto import ModelIntegrityError
        from creditml_client._shared.device_seal import (
            DeviceBinding,
            SealError,
            assemble,
            open_for_device,
        )

        model_id, version = str(result["model_id"]), int(result["version"])
        binding = DeviceBinding(model_id, version, record.device_id, fingerprint(self._hardware()))
        key = self._devices.private_key(record)
        try:
            secret = open_for_device(result["sealed"], key, binding)
            big = self._read_big(result)
            return assemble(secret, big, model_id, version)
        except (SealError, ModelIntegrityError) as exc:
            raise ModelLoadFailed(str(exc) or type(exc).__name__) from exc

    def _read_big(self, result: Mapping[str, Any]) -> bytes:
        """The cached big part, fetched again (once) if the cached copy is damaged."""
        path = Path(result["big_path"])
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == result["big_sha256"]:
            return data
        path.unlink(missing_ok=True)
        self._fetch_big(result, path, None)
        return path.read_bytes()

    def _fetch_big(self, result: Mapping[str, Any], path: Path, progress: Progress | None) -> None:
        url, size, sha256 = str(result["big_url"]), int(result["big_size"]), result["big_sha256"]

        def attempt() -> httpx.Response:
            with self._external_client().stream("GET", url) as response:
                if not response.is_success:
                    response.read()
                    return response
                with atomic_writer(path) as handle:
                    digest, done = _copy(response.iter_bytes(_CHUNK), handle, size, progress)
                    if digest != sha256 or done != size:
                        raise IntegrityFailed(
                            "the downloaded big part does not match its announced SHA-256 and size"
                        )
                return response

        response = self._attempts(attempt, safe=True, url=_without_query(url))
        if not response.is_success:
            raise error_for(response.status_code, _problem(response))

    # -- internals: publishing ---------------------------------------------------------

    def _upload(self, upload: Mapping[str, Any], file: Path, progress: Progress | None) -> None:
        body = MultipartUpload(dict(upload.get("fields", {})), file, progress)
        limit = upload.get("max_bytes")
        if isinstance(limit, int) and body.size > limit:
            raise PublishFailed(
                413, "file_too_large", f"{file} has {body.size} bytes; the limit is {limit}"
            )
        url = str(upload["url"])

        def attempt() -> httpx.Response:
            return self._external_client().post(url, content=body.chunks(), headers=body.headers())

        response = self._attempts(attempt, safe=True, url=url)
        if not response.is_success:
            found = re.search(r"<Message>(.*?)</Message>", response.text, re.DOTALL)
            detail = found.group(1) if found else f"the upload answered HTTP {response.status_code}"
            raise PublishFailed(response.status_code, "upload_failed", detail)

    def _await_version(self, model_id: str, version: int, timeout: float) -> dict[str, Any]:
        started, waited, delay = time.monotonic(), 0.0, 0.25
        while True:
            model = self.model(model_id)
            status = _version_status(model, version)
            if status == "ready":
                return model
            if status in _DONE_STATUSES:
                reason = model.get("reason") or f"the version is {status}"
                if status == "rejected":
                    raise PublishFailed(422, "model_rejected", str(reason), model)
                raise PublishFailed(410, "model_expired", str(reason), model)
            if max(waited, time.monotonic() - started) >= timeout:
                raise PublishFailed(
                    504,
                    "publish_timeout",
                    f"model {model_id} version {version} is still {status} after {timeout:g} s",
                    model,
                )
            self._sleep(delay)
            waited += delay
            delay = min(delay * 1.5, 2.0)

    # -- internals: HTTP ---------------------------------------------------------------

    def _external_client(self) -> httpx.Client:
        """The client for presigned URLs: no base URL, never the API's credentials."""
        if self._external is None:
            self._external = httpx.Client(transport=self._transport, timeout=self._timeout)
        return self._external

    def _current_user_id(self) -> str:
        if self._user_id is None:
            self.me()
        assert self._user_id is not None
        return self._user_id

    def _all(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a listing, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = self._request("GET", path, params=_query(cursor=cursor))
            if isinstance(page, list):  # a bare list: one page
                yield from page
                return
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _post_unauthenticated(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, json=body, safe=False, auth=False)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        key: str | None = None,
        safe: bool | None = None,
        auth: bool = True,
    ) -> Any:
        """Send an API request with retries and credential recovery; its JSON body, or the
        typed error. `key` (an Idempotency-Key) makes a POST safe to retry."""
        safe = (method in ("GET", "PATCH") or key is not None) if safe is None else safe
        headers = {"Idempotency-Key": key} if key else {}
        recovery = Recovery()
        while True:
            sent = self._auth.authorization() if auth else ""
            if auth:
                headers["Authorization"] = sent

            def attempt() -> httpx.Response:
                return self._api.request(method, path, json=json, params=params, headers=headers)

            response = self._attempts(attempt, safe=safe, url=self.base_url + path)
            if response.status_code == 401 and auth and self._auth.recover(recovery, sent):
                continue
            if response.is_success:
                return _json(response)
            raise error_for(response.status_code, _problem(response))

    def _attempts(
        self, attempt: Callable[[], httpx.Response], *, safe: bool, url: str
    ) -> httpx.Response:
        """`attempt()` until it succeeds, fails for good or the retry budget is spent; the
        last answer (success or error), or TransportFailed."""
        backoff = Backoff(self._max_retry_seconds, self._sleep)
        while True:
            try:
                response = attempt()
            except httpx.TransportError as exc:
                if transport_error_retryable(exc, safe) and backoff.wait():
                    continue
                raise TransportFailed(
                    f"no answer from {url}: {type(exc).__name__}: {exc}", url
                ) from exc
            if response.is_success:
                return response
            retry, retry_after = response_retry(response, safe)
            if not (retry and backoff.wait(retry_after)):
                return response


def _new_key() -> str:
    return str(uuid.uuid4())


def _segment(value: str) -> str:
    """An id as one URL path segment (an id with a slash cannot reach another route)."""
    from urllib.parse import quote

    return quote(str(value), safe="")


def _query(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]  # a presigned URL's query is a credential: keep it out


def _copy(
    chunks: Iterator[bytes], handle: IO[bytes], size: int, progress: Progress | None
) -> tuple[str, int]:
    """Write `chunks` to `handle`; their SHA-256 (hex) and length."""
    digest, done = hashlib.sha256(), 0
    for chunk in chunks:
        handle.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, size)
    return digest.hexdigest(), done


def _version_status(model: Mapping[str, Any], version: int) -> str:
    for entry in model.get("versions") or []:
        if entry.get("version") == version:
            return str(entry.get("status"))
    return str(model.get("status"))


def _require_model_extras() -> None:
    needed = ("joblib", "sklearn", "numpy")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependency(
            f'load_model needs {", ".join(missing)}: pip install "creditml-client[models]"'
        )
