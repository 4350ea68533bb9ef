"""The download and device services against in-memory fakes at their Protocol boundaries
(no AWS), with the real ledger rules, the real model encryption and the real device seal."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from creditml.auth.roles import Role
from creditml.auth.tokens import AccessClaims
from creditml.billing.entries import (
    AccountState,
    ClaimTaken,
    DownloadPriceHeld,
    EntryKind,
    LedgerEntry,
    PendingEntry,
    PreconditionFailed,
    SlotTaken,
    StaleVersion,
    WriteOutcome,
    WritePlan,
    Written,
)
from creditml.billing.ledger import Ledger
from creditml.errors import (
    DeviceNotFound,
    DownloadNotAllowed,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidParameter,
    ModelNotFound,
    TooManyDevices,
    VersionNotFound,
    VersionNotReady,
)
from creditml.models.crypto import SealedModel, seal
from creditml.models.device_seal import (
    DeviceBinding,
    SealError,
    assemble,
    encode_public_key,
    open_for_device,
)
from creditml.models.devices import Device, DeviceService
from creditml.models.downloads import Download, DownloadService
from creditml.models.records import Model, ModelVersion, StoredParts, VersionStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FINGERPRINT = hashlib.sha256(b"this machine").hexdigest()
MODEL_FILE = os.urandom(5000)
MODEL_ID = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"


def caller(user_id: str, role: Role = Role.USER) -> AccessClaims:
    return AccessClaims(user_id=user_id, role=role, expires_at=0)


class Keys:
    """A KMS stand-in: one data key per context."""

    def __init__(self) -> None:
        self.keys: dict[tuple[tuple[str, str], ...], bytes] = {}

    def generate(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        key = os.urandom(32)
        self.keys[tuple(sorted(context.items()))] = key
        return key, b"wrapped"

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        return self.keys[tuple(sorted(context.items()))]


class Parts:
    def __init__(self, keys: Keys) -> None:
        self.sealed: dict[int, SealedModel] = {}
        self.keys = keys

    def add(self, version: int) -> None:
        self.sealed[version] = seal(MODEL_FILE, MODEL_ID, version, self.keys, 1)

    def stored(self, model_id: str, version: int) -> StoredParts:
        s = self.sealed[version]
        return StoredParts(
            s.small, s.wrapped_key, s.nonce, s.digest, f"big/{version}", len(s.big),
            hashlib.sha256(s.big).hexdigest(),
        )  # fmt: skip

    def big_url(self, big_key: str, expires_in: int) -> str:
        return f"https://models.example/{big_key}?expires={expires_in}"


class Models:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.reads = 0

    def get(self, model_id: str) -> Model:
        self.reads += 1
        if model_id != self.model.id:
            raise ModelNotFound()
        return self.model


class Devices:
    def __init__(self) -> None:
        self.devices: dict[tuple[str, str], Device] = {}

    def add(self, device: Device, maximum: int) -> bool:
        if sum(1 for user, _ in self.devices if user == device.user_id) >= maximum:
            return False
        self.devices[(device.user_id, device.id)] = device
        return True

    def get(self, user_id: str, device_id: str) -> Device | None:
        return self.devices.get((user_id, device_id))

    def of_user(self, user_id: str) -> list[Device]:
        return [d for (user, _), d in self.devices.items() if user == user_id]

    def delete(self, user_id: str, device_id: str) -> bool:
        return self.devices.pop((user_id, device_id), None) is not None


class LedgerTable:
    """The ledger table's rules in memory: one transaction = the account, the entry slot,
    the purchase claim and the download-price precondition, all or nothing."""

    def __init__(self, models: Models) -> None:
        self.models = models
        self.accounts: dict[str, AccountState] = {}
        self.slots: dict[tuple[str, str], tuple[LedgerEntry, str]] = {}
        self.claims: dict[tuple[str, str], str] = {}
        self.entries: list[LedgerEntry] = []
        self.before_write: list[Any] = []  # callables run before the next writes

    def fund(self, account_id: str, amount: int) -> None:
        state = self.accounts.get(account_id, AccountState(0, 0))
        self.accounts[account_id] = AccountState(state.balance + amount, state.seq + 1)

    def write(self, pending: PendingEntry, plan: WritePlan) -> WriteOutcome:
        if self.before_write:
            self.before_write.pop(0)()
        account = pending.account_id
        actual = self.accounts.get(account, AccountState(0, 0))
        if (account, pending.slot.entry_id) in self.slots:
            entry, stored = self.slots[(account, pending.slot.entry_id)]
            return SlotTaken(entry, stored)
        if pending.claim is not None and (account, pending.claim) in self.claims:
            return ClaimTaken()
        condition = pending.precondition
        if isinstance(condition, DownloadPriceHeld) and (
            self.models.model.download_price != condition.download_price
            or self.models.model.archived
        ):
            return PreconditionFailed()
        expected = plan.expected
        if (actual.balance, actual.seq) != (expected.balance, expected.seq) or (
            actual.balance + pending.amount < 0
        ):
            return StaleVersion(actual)
        entry = plan.entry(pending, NOW)
        self.accounts[account] = AccountState(entry.balance_after, actual.seq + 1)
        self.slots[(account, pending.slot.entry_id)] = (entry, pending.request_hash)
        if pending.claim is not None:
            self.claims[(account, pending.claim)] = entry.id
        self.entries.append(entry)
        return Written(entry)

    def slot(self, actor_id: str, entry_id: str) -> tuple[LedgerEntry, str] | None:
        return self.slots.get((actor_id, entry_id))

    def claimed(self, account_id: str, claim: str) -> str | None:
        return self.claims.get((account_id, claim))

    def balance(self, account_id: str) -> int:
        return self.accounts.get(account_id, AccountState(0, 0)).balance


def _model(download_price: int | None = None, **changes: Any) -> Model:
    versions = [
        ModelVersion(version=1, status=VersionStatus.READY, created_at=NOW),
        ModelVersion(version=2, status=VersionStatus.PENDING, created_at=NOW),
    ]
    fields: dict[str, Any] = {
        "id": MODEL_ID, "name": "m", "description": None, "owner_id": "owner", "price": 1,
        "download_price": download_price, "created_at": NOW, "updated_at": NOW,
        "archived": False, "latest_version": 2, "serving_version": 1, "versions": versions,
    }  # fmt: skip
    return Model(**(fields | changes))


class World:
    def __init__(self, download_price: int | None = None) -> None:
        keys = Keys()
        self.parts = Parts(keys)
        self.parts.add(1)
        self.models = Models(_model(download_price))
        self.table = LedgerTable(self.models)
        self.devices = DeviceService(Devices(), max_devices=3, clock=lambda: NOW)
        # A per-minute debit limit of 1: downloads must not count against it
        self.ledger = Ledger(self.table, debits_per_minute=1, clock=lambda: 0.0)
        self.service = DownloadService(
            self.devices, self.models, self.parts, keys, self.ledger, self.table
        )
        self.keys: dict[str, X25519PrivateKey] = {}

    def device(self, user: AccessClaims) -> Device:
        key = X25519PrivateKey.generate()
        public = encode_public_key(key.public_key().public_bytes_raw())
        device = self.devices.register(user, "laptop", public, FINGERPRINT)
        self.keys[device.id] = key
        return device

    def download(self, user: AccessClaims, device: Device, key: str = "k1", **kw: Any) -> Download:
        return self.service.download(user, MODEL_ID, device.id, kw.get("version"), key)

    def rebuilt(self, answer: Download, device: Device) -> bytes:
        binding = DeviceBinding(MODEL_ID, answer.version, device.id, FINGERPRINT)
        secret = open_for_device(answer.sealed, self.keys[device.id], binding)
        big = self.parts.sealed[answer.version].big
        return assemble(secret, big, MODEL_ID, answer.version)


OWNER, ADMIN, BUYER = caller("owner", Role.PUBLISHER), caller("root", Role.ADMIN), caller("buyer")


@pytest.mark.parametrize("who", [OWNER, ADMIN])
def test_owner_and_admins_download_free_and_the_seal_opens_to_the_file(who: AccessClaims) -> None:
    world = World()
    device = world.device(who)
    answer = world.download(who, device)
    assert (answer.cost, answer.version, answer.replayed) == (0, 1, False)
    assert answer.big_url.endswith("big/1?expires=300")
    assert world.rebuilt(answer, device) == MODEL_FILE
    assert world.table.entries == []


def test_the_seal_is_bound_to_the_device_its_key_and_its_fingerprint() -> None:
    world = World()
    device, other = world.device(OWNER), world.device(OWNER)
    answer = world.download(OWNER, device)
    cases = [
        (world.keys[other.id], DeviceBinding(MODEL_ID, 1, device.id, FINGERPRINT)),
        (world.keys[device.id], DeviceBinding(MODEL_ID, 1, device.id, "0" * 64)),
        (world.keys[device.id], DeviceBinding(MODEL_ID, 1, other.id, FINGERPRINT)),
        (world.keys[device.id], DeviceBinding(MODEL_ID, 2, device.id, FINGERPRINT)),
    ]
    for key, binding in cases:
        with pytest.raises(SealError):
            open_for_device(answer.sealed, key, binding)


def test_others_need_a_download_price_then_pay_once_per_device_and_version() -> None:
    world = World()
    world.table.fund("buyer", 20)
    laptop, desktop = world.device(BUYER), world.device(BUYER)
    with pytest.raises(DownloadNotAllowed):
        world.download(BUYER, laptop)
    world.models.model = _model(download_price=6)

    first = world.download(BUYER, laptop, key="a")
    assert (first.cost, first.balance) == (6, 14)
    assert world.rebuilt(first, laptop) == MODEL_FILE
    assert world.download(BUYER, laptop, key="b").cost == 0  # already bought
    second = world.download(BUYER, desktop, key="c")  # not counted as a prediction: no 429
    assert (second.cost, second.balance) == (6, 8)
    assert [e.kind for e in world.table.entries] == [EntryKind.DOWNLOAD] * 2
    assert world.table.entries[0].details == {
        "model_id": MODEL_ID, "version": 1, "device_id": laptop.id, "price": 6,
    }  # fmt: skip


def test_a_replay_answers_as_first_delivered_and_another_body_is_refused() -> None:
    world = World(download_price=5)
    world.table.fund("buyer", 20)
    laptop, desktop = world.device(BUYER), world.device(BUYER)
    first = world.download(BUYER, laptop, key="same")
    replay = world.download(BUYER, laptop, key="same")
    assert (replay.cost, replay.balance, replay.replayed) == (5, 15, True)
    assert world.rebuilt(replay, laptop) == MODEL_FILE
    assert first.replayed is False
    with pytest.raises(IdempotencyKeyReused):
        world.download(BUYER, desktop, key="same")
    # Archived since: the retry of the charged request still gets its answer; others 404
    world.models.model = _model(download_price=5, archived=True)
    assert world.download(BUYER, laptop, key="same").replayed is True
    with pytest.raises(ModelNotFound):
        world.download(BUYER, desktop, key="new")
    assert len(world.table.entries) == 1


def test_insufficient_credits_buys_nothing() -> None:
    world = World(download_price=5)
    world.table.fund("buyer", 4)
    laptop = world.device(BUYER)
    with pytest.raises(InsufficientCredits) as raised:
        world.download(BUYER, laptop)
    assert raised.value.extra == {"balance": 4, "required": 5}
    assert (world.table.claims, world.table.balance("buyer")) == ({}, 4)


def test_a_price_change_while_buying_charges_the_new_price() -> None:
    world = World(download_price=5)
    world.table.fund("buyer", 20)
    laptop = world.device(BUYER)

    def raise_price() -> None:
        world.models.model = _model(download_price=8)

    world.table.before_write.append(raise_price)
    answer = world.download(BUYER, laptop)
    assert (answer.cost, answer.balance) == (8, 12)


def test_a_purchase_made_concurrently_is_not_charged_again() -> None:
    world = World(download_price=5)
    world.table.fund("buyer", 20)
    laptop = world.device(BUYER)

    def bought_meanwhile() -> None:
        world.table.claims[("buyer", f"DOWNLOAD#{MODEL_ID}#1#{laptop.id}")] = "other"

    world.table.before_write.append(bought_meanwhile)
    assert world.download(BUYER, laptop).cost == 0
    assert world.table.balance("buyer") == 20


def test_a_free_download_price_lets_anyone_download_without_an_entry() -> None:
    world = World(download_price=0)
    laptop = world.device(BUYER)
    assert world.download(BUYER, laptop).cost == 0
    assert world.table.entries == []


def test_devices_are_the_callers_own_and_versions_must_be_ready() -> None:
    world = World(download_price=5)
    theirs = world.device(BUYER)
    with pytest.raises(DeviceNotFound):
        world.download(OWNER, theirs)
    mine = world.device(OWNER)
    with pytest.raises(VersionNotFound):
        world.download(OWNER, mine, version=3)
    with pytest.raises(VersionNotReady):
        world.download(OWNER, mine, version=2)
    world.models.model = _model(serving_version=None)
    with pytest.raises(ModelNotFound):  # never served: others do not see it
        world.download(BUYER, theirs)


def test_device_registration_checks_key_fingerprint_and_cap() -> None:
    service = DeviceService(Devices(), max_devices=2, clock=lambda: NOW)
    key = encode_public_key(X25519PrivateKey.generate().public_key().public_bytes_raw())
    with pytest.raises(InvalidParameter):
        service.register(BUYER, "x", "AAAA", FINGERPRINT)
    with pytest.raises(InvalidParameter):
        service.register(BUYER, "x", key, FINGERPRINT.upper())
    service.register(BUYER, "a", key, FINGERPRINT)
    service.register(BUYER, "b", key, FINGERPRINT)
    with pytest.raises(TooManyDevices):
        service.register(BUYER, "c", key, FINGERPRINT)
    assert [d.name for d in service.listed(BUYER)] == ["a", "b"]
    assert service.listed(OWNER) == []
    with pytest.raises(DeviceNotFound):
        service.delete(OWNER, service.listed(BUYER)[0].id)


class FailingKeys(Keys):
    """A KMS that cannot unwrap (throttled, a key disabled): the download cannot be sealed."""

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        raise RuntimeError("KMS unavailable")


def test_a_download_that_cannot_be_sealed_charges_nothing() -> None:
    """Charged only if delivered: the seal, the data key and the URL are made before the
    debit, so a failure there (KMS, S3, a device key no agreement can use) costs nothing."""
    world = World(download_price=5)
    world.table.fund("buyer", 20)
    laptop = world.device(BUYER)
    world.service._keys = FailingKeys()
    with pytest.raises(RuntimeError, match="KMS unavailable"):
        world.download(BUYER, laptop)
    assert (world.table.entries, world.table.claims, world.table.balance("buyer")) == ([], {}, 20)
