"""Downloads: a model version sealed to one of the caller's devices (DESIGN §11).

    caller's device (404 otherwise) -> the model and version (ready)
    -> owner or admin: free
       anyone else: a replay of a charged request answers as it did; a (device, version)
       already bought is free; no download price: 403; otherwise ONE ledger transaction
       debits the download price (kind `download`) and claims (device, version), on the
       condition that the model still sells downloads at that price
    -> the version's small part, nonce, digest and KMS-unwrapped data key, sealed to the
       device (creditml.models.device_seal), plus a short-lived presigned GET of the big part

Nothing here loads or unpickles a model: the version's parts stay ciphertext, and the data
key leaves only inside the seal. Logs name ids, never keys or sealed bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.billing.entries import DownloadPriceHeld, EntryKind, IdempotencySlot, LedgerEntry
from creditml.billing.ledger import AlreadyClaimed, Ledger, PreconditionNotMet, request_hash
from creditml.errors import (
    DomainError,
    DownloadNotAllowed,
    IdempotencyKeyReused,
    LedgerBusy,
    ModelNotFound,
    ModelNotReady,
    VersionNotFound,
    VersionNotReady,
)
from creditml.models.crypto import DataKeys, encryption_context
from creditml.models.device_seal import (
    DeviceBinding,
    DownloadSecret,
    decode_public_key,
    seal_for_device,
)
from creditml.models.devices import Device, DeviceService
from creditml.models.records import Model, StoredParts, VersionStatus
from creditml.observability import logger

MAX_PRICE_RETRIES = 3
BIG_URL_TTL_SECONDS = 300


class ModelCatalog(Protocol):
    def get(self, model_id: str) -> Model: ...


class PartSource(Protocol):
    def stored(self, model_id: str, version: int) -> StoredParts: ...

    def big_url(self, big_key: str, expires_in: int) -> str: ...


class Purchases(Protocol):
    """What the ledger knows of a caller's downloads (read side)."""

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None: ...

    def claimed(self, account_id: str, claim: str) -> str | None: ...

    def balance(self, account_id: str) -> int: ...


def purchase_claim(model_id: str, version: int, device_id: str) -> str:
    """What one download buys, once per account: this version on this device."""
    return f"DOWNLOAD#{model_id}#{version}#{device_id}"


def download_fingerprint(model_id: str, device_id: str, version: int | None) -> str:
    """The request as idempotency sees it: the model and the body as sent (a replay
    without `version` answers with the version first delivered)."""
    return request_hash(
        "download", {"model_id": model_id, "device_id": device_id, "version": version}
    )


@dataclass(frozen=True)
class _Sale:
    cost: int
    balance: int
    replayed: bool = False


@dataclass(frozen=True)
class _Package:
    """A sealed download, before its price: made first, so nothing fails after a charge."""

    model_id: str
    version: int
    big_url: str
    big_sha256: str
    big_size: int
    sealed: dict[str, str]

    def with_sale(self, sale: _Sale) -> Download:
        return Download(**vars(self), cost=sale.cost, balance=sale.balance, replayed=sale.replayed)


@dataclass(frozen=True)
class Download(_Package):
    """The answer to a download: the package, what it cost, and whether it is a replay."""

    cost: int
    balance: int
    replayed: bool = False


class DownloadService:
    def __init__(
        self,
        devices: DeviceService,
        models: ModelCatalog,
        parts: PartSource,
        keys: DataKeys,
        ledger: Ledger,
        purchases: Purchases,
        big_url_ttl: int = BIG_URL_TTL_SECONDS,
    ) -> None:
        self._devices = devices
        self._models = models
        self._parts = parts
        self._keys = keys
        self._ledger = ledger
        self._purchases = purchases
        self._big_url_ttl = big_url_ttl

    def download(
        self,
        caller: AccessClaims,
        model_id: str,
        device_id: str,
        version: int | None,
        idempotency_key: str,
    ) -> Download:
        """Seal a version (default: the serving one) to one of the caller's devices, and
        charge its download price when the caller is neither its owner nor an admin."""
        device = self._devices.owned(caller, device_id)
        model = self._models.get(model_id)
        packages: dict[int, _Package] = {}

        def package(number: int) -> _Package:
            """The sealed download of `number` (made once): everything that could fail is
            done before any charge, so a download is charged only when it can be delivered."""
            if number not in packages:
                packages[number] = self._package(model.id, number, device)
            return packages[number]

        if caller.role is Role.ADMIN or caller.user_id == model.owner_id:
            number = self._ready_version(model, version)
            sale = _Sale(cost=0, balance=self._purchases.balance(caller.user_id))
        else:
            number, sale = self._buy(caller, model, device, version, idempotency_key, package)
        return package(number).with_sale(sale)

    def _buy(
        self,
        caller: AccessClaims,
        model: Model,
        device: Device,
        version: int | None,
        idempotency_key: str,
        package: Callable[[int], _Package],
    ) -> tuple[int, _Sale]:
        slot = IdempotencySlot.of(caller.user_id, idempotency_key)
        fingerprint = download_fingerprint(model.id, device.id, version)
        for _ in range(MAX_PRICE_RETRIES):
            try:
                number = self._sellable(model, version)
            except DomainError:
                # Archived (or another change) since this key was charged: its retry still
                # gets its answer. One read, on error paths only.
                replay = self._replayed(slot, fingerprint)
                if replay is None:
                    raise
                return self._replay(replay)
            replay = self._replayed(slot, fingerprint)
            if replay is not None:  # answered as first delivered (cost included)
                return self._replay(replay)
            claim = purchase_claim(model.id, number, device.id)
            if self._purchases.claimed(caller.user_id, claim) is not None:
                return number, self._free(caller)  # this device already has this version
            if model.download_price is None:
                raise DownloadNotAllowed()
            if model.download_price == 0:
                return number, self._free(caller)
            package(number)  # sealable and signed before a credit moves
            try:
                return self._charge(slot, fingerprint, model, number, device, claim)
            except AlreadyClaimed:  # bought by a concurrent request a moment ago
                return number, self._free(caller)
            except PreconditionNotMet:  # the download price changed, or the model archived
                model = self._models.get(model.id)
        raise LedgerBusy()  # the price kept changing under us: 503, retry with the same key

    def _sellable(self, model: Model, version: int | None) -> int:
        """The version others may download; ModelNotFound when the model is not visible to
        them (archived, or nothing ever served), as on GET /models/{id}."""
        if model.archived or model.serving_version is None:
            raise ModelNotFound()
        return self._ready_version(model, version)

    @staticmethod
    def _replay(entry: LedgerEntry) -> tuple[int, _Sale]:
        return int(entry.details["version"]), _Sale(
            -entry.amount, entry.balance_after, replayed=True
        )

    def _replayed(self, slot: IdempotencySlot, fingerprint: str) -> LedgerEntry | None:
        taken = self._purchases.slot(slot.actor_id, slot.entry_id)
        if taken is None:
            return None
        entry, stored = taken
        if stored != fingerprint or entry.kind is not EntryKind.DOWNLOAD:
            raise IdempotencyKeyReused()
        return entry

    def _free(self, caller: AccessClaims) -> _Sale:
        return _Sale(cost=0, balance=self._purchases.balance(caller.user_id))

    def _charge(
        self,
        slot: IdempotencySlot,
        fingerprint: str,
        model: Model,
        number: int,
        device: Device,
        claim: str,
    ) -> tuple[int, _Sale]:
        """The version charged for and the sale (a concurrent retry with the same key may
        have been charged first: then its version and cost)."""
        assert model.download_price is not None
        entry, replayed = self._ledger.debit(
            slot.actor_id,
            model.download_price,
            slot=slot,
            request=fingerprint,
            details={
                "model_id": model.id,
                "version": number,
                "device_id": device.id,
                "price": model.download_price,
            },
            precondition=DownloadPriceHeld(model.id, model.download_price),
            kind=EntryKind.DOWNLOAD,
            claim=claim,
        )
        if replayed:  # a concurrent retry with the same key was charged first
            return self._replay(entry)
        logger().info(
            "Download charged",
            extra={"model_id": model.id, "version": number, "credits": model.download_price},
        )
        return number, _Sale(-entry.amount, entry.balance_after)

    @staticmethod
    def _ready_version(model: Model, version: int | None) -> int:
        """The version to download: the one asked for, else the serving one; it must be
        ready."""
        if version is None:
            if model.serving_version is None:
                raise ModelNotReady()
            return model.serving_version
        found = next((v for v in model.versions if v.version == version), None)
        if found is None:
            raise VersionNotFound()
        if found.status is not VersionStatus.READY:
            raise VersionNotReady()
        return version

    def _package(self, model_id: str, version: int, device: Device) -> _Package:
        parts = self._parts.stored(model_id, version)
        data_key = self._keys.unwrap(parts.wrapped_key, encryption_context(model_id, version))
        secret = DownloadSecret(
            small=parts.small,
            data_key=data_key,
            nonce=parts.nonce,
            digest=parts.digest,
            big_sha256=parts.big_sha256,
            big_size=parts.big_size,
        )
        binding = DeviceBinding(model_id, version, device.id, device.fingerprint)
        sealed = seal_for_device(secret, decode_public_key(device.public_key), binding)
        return _Package(
            model_id=model_id,
            version=version,
            big_url=self._parts.big_url(parts.big_key, self._big_url_ttl),
            big_sha256=parts.big_sha256,
            big_size=parts.big_size,
            sealed=sealed,
        )
