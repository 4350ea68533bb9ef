"""Model metadata in the models table (pk `model_id`, sk `sk`):

  sk = "MODEL"              name, owner, price, download price (absent: not downloadable),
                            archived, latest and serving version;
                            `catalog` = "public" while it serves and is not archived
                            (sparse GSI `catalog`); `owner_id` (GSI `by_owner`)
  sk = "VERSION#00000001"   status pending/ready/rejected/expired, reason, schema, sizes;
                            owner_id (so `by_owner` returns an owner's models with their
                            versions in one query); while pending: the SHA-256 of its upload
                            token, `upload_deadline`, the registration `attempts`, and
                            `awaiting_upload` = "pending" (sparse GSI `pending_uploads`,
                            sorted by deadline, which the expiry sweep reads)

Model parts live in another table (creditml.storage.model_parts), which the models API may
not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model as PynamoModel

from creditml.billing.entries import DownloadPriceHeld, ModelStillServing, Precondition
from creditml.errors import ModelNotFound
from creditml.models.records import (
    EXPIRED_REASON,
    Model,
    ModelVersion,
    Runtime,
    VersionStatus,
    VersionUpload,
)
from creditml.models.schema import ModelSchema
from creditml.models.service import UNCHANGED, Unchanged, UploadBinding
from creditml.storage.dynamo import Transaction, condition_failed
from creditml.storage.tables import bind_table

MODEL_SK = "MODEL"
PUBLIC = "public"
AWAITING = "pending"


def version_sk(version: int) -> str:
    return f"VERSION#{version:08d}"


class _Catalog(GlobalSecondaryIndex["_ModelItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "catalog"
        projection = AllProjection()

    catalog = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class _ByOwner(GlobalSecondaryIndex["_ModelItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by_owner"
        projection = AllProjection()

    owner_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class _PendingUploads(GlobalSecondaryIndex["_ModelItem"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "pending_uploads"
        projection = KeysOnlyProjection()

    awaiting_upload = UnicodeAttribute(hash_key=True)
    upload_deadline = UnicodeAttribute(range_key=True)


class _ModelItem(PynamoModel):
    model_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    created_at = UnicodeAttribute()
    # MODEL
    name = UnicodeAttribute(null=True)
    description = UnicodeAttribute(null=True)
    owner_id = UnicodeAttribute(null=True)
    price = NumberAttribute(null=True)
    download_price = NumberAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    archived = BooleanAttribute(null=True)
    latest_version = NumberAttribute(null=True)
    serving_version = NumberAttribute(null=True)
    catalog = UnicodeAttribute(null=True)
    # VERSION#
    version = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    model_schema = JSONAttribute(null=True)
    registered_at = UnicodeAttribute(null=True)
    size_bytes = NumberAttribute(null=True)
    runtime = UnicodeAttribute(null=True)
    runtime_reason = UnicodeAttribute(null=True)

    upload_token_hash = UnicodeAttribute(null=True)
    upload_deadline = UnicodeAttribute(null=True)
    attempts = NumberAttribute(null=True)
    awaiting_upload = UnicodeAttribute(null=True)

    catalog_index = _Catalog()
    owner_index = _ByOwner()
    pending_index = _PendingUploads()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _stamp(moment: datetime) -> str:
    """UTC, one fixed format: stamps compare as strings in DynamoDB conditions."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _version(item: _ModelItem) -> ModelVersion:
    return ModelVersion(
        version=int(item.version or 0),
        status=VersionStatus(str(item.status)),
        reason=item.reason,
        created_at=datetime.fromisoformat(item.created_at),
        registered_at=datetime.fromisoformat(item.registered_at) if item.registered_at else None,
        size_bytes=int(item.size_bytes) if item.size_bytes is not None else None,
        model_schema=ModelSchema.model_validate(item.model_schema) if item.model_schema else None,
        runtime=Runtime(item.runtime) if item.runtime else None,
        runtime_reason=item.runtime_reason,
        upload_deadline=_moment(item.upload_deadline),
    )


def _moment(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def _model(item: _ModelItem, versions: list[ModelVersion]) -> Model:
    return Model(
        id=str(item.model_id),
        name=str(item.name),
        description=item.description,
        owner_id=str(item.owner_id),
        price=int(item.price or 0),
        download_price=None if item.download_price is None else int(item.download_price),
        created_at=datetime.fromisoformat(item.created_at),
        updated_at=datetime.fromisoformat(str(item.updated_at)),
        archived=bool(item.archived),
        latest_version=int(item.latest_version or 0),
        serving_version=int(item.serving_version) if item.serving_version else None,
        serving_schema=ModelSchema.model_validate(item.model_schema) if item.model_schema else None,
        versions=sorted(versions, key=lambda v: v.version, reverse=True),
    )


class ModelRepository:
    """Reads and writes model metadata and version status."""

    def __init__(self, table_name: str) -> None:
        self._item = bind_table(_ModelItem, table_name)

    def create(
        self,
        model_id: str,
        name: str,
        description: str | None,
        owner_id: str,
        price: int,
        upload: UploadBinding,
    ) -> Model:
        """A new model with version 1 pending upload."""
        now = _now()
        item = self._item
        head = item(
            model_id,
            MODEL_SK,
            created_at=now,
            updated_at=now,
            name=name,
            description=description,
            owner_id=owner_id,
            price=price,
            archived=False,
            latest_version=1,
        )
        first = self._pending(model_id, 1, owner_id, now, upload)
        tx = Transaction(item)
        tx.put("model", head, condition=item.sk.does_not_exist(), return_old=False)
        tx.put("version", first, condition=item.sk.does_not_exist(), return_old=False)
        tx.commit()
        return self.get(model_id)

    def _pending(
        self, model_id: str, version: int, owner_id: str, now: str, upload: UploadBinding
    ) -> _ModelItem:
        pending: _ModelItem = self._item(
            model_id,
            version_sk(version),
            created_at=now,
            version=version,
            owner_id=owner_id,
            status=str(VersionStatus.PENDING),
            upload_token_hash=upload.token_hash,
            upload_deadline=_stamp(upload.deadline),
            awaiting_upload=AWAITING,
        )
        return pending

    def add_version(
        self, model_id: str, expected_latest: int, owner_id: str, upload: UploadBinding
    ) -> int:
        """Open the next version for upload; returns its number."""
        item = self._item
        version = expected_latest + 1
        now = _now()
        pending = self._pending(model_id, version, owner_id, now, upload)
        tx = Transaction(item)
        tx.put("version", pending, condition=item.sk.does_not_exist(), return_old=False)
        tx.update(
            "model",
            item(model_id, MODEL_SK),
            actions=[item.latest_version.set(version), item.updated_at.set(now)],
            condition=item.latest_version == expected_latest,
        )
        tx.commit()
        return version

    def get(self, model_id: str) -> Model:
        """The model with all its versions; ModelNotFound otherwise."""
        items = list(self._item.query(model_id, consistent_read=True))
        head = next((i for i in items if i.sk == MODEL_SK), None)
        if head is None:
            raise ModelNotFound()
        return _model(head, [_version(i) for i in items if i.sk.startswith("VERSION#")])

    def head(self, model_id: str) -> Model:
        """The model without its versions (one GetItem); ModelNotFound otherwise."""
        try:
            item = self._item.get(model_id, MODEL_SK, consistent_read=True)
        except DoesNotExist as exc:
            raise ModelNotFound() from exc
        return _model(item, [])

    def heads(self, model_ids: Iterable[str]) -> dict[str, Model]:
        """The models (without versions) among `model_ids`, by id; unknown ids are left out."""
        keys = [(model_id, MODEL_SK) for model_id in sorted(set(model_ids))]
        return {str(item.model_id): _model(item, []) for item in self._item.batch_get(keys)}

    def names(self, model_ids: Iterable[str]) -> dict[str, str]:
        """Model id -> name, for the known ids among `model_ids`."""
        return {model_id: model.name for model_id, model in self.heads(model_ids).items()}

    def owners(self, model_ids: Iterable[str]) -> dict[str, str]:
        """Model id -> owner id, for the known ids among `model_ids`."""
        return {model_id: model.owner_id for model_id, model in self.heads(model_ids).items()}

    def upload_state(self, model_id: str, version: int) -> VersionUpload | None:
        """A version's status and upload binding; None when there is no such version."""
        try:
            item = self._item.get(model_id, version_sk(version), consistent_read=True)
        except DoesNotExist:
            return None
        return VersionUpload(
            VersionStatus(str(item.status)), item.upload_token_hash, _moment(item.upload_deadline)
        )

    def count_attempt(self, model_id: str, version: int) -> int | None:
        """Count one registration attempt on a pending version; the attempts so far, or None
        when the version is no longer pending."""
        item = self._item
        record = item(model_id, version_sk(version))
        try:
            record.update(
                actions=[item.attempts.add(1)],
                condition=item.status == str(VersionStatus.PENDING),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return None
            raise
        return int(record.attempts or 0)

    def overdue_uploads(self, now: datetime, limit: int = 100) -> list[tuple[str, int]]:
        """Pending versions whose upload deadline has passed (oldest first, at most
        `limit`): (model id, version) pairs."""
        found = self._item.pending_index.query(
            AWAITING, self._item.upload_deadline < _stamp(now), limit=limit
        )
        return [(str(i.model_id), int(i.sk.removeprefix("VERSION#"))) for i in found]

    def expire(self, model_id: str, version: int, now: datetime) -> bool:
        """Mark a pending version whose upload deadline passed before `now` expired; False
        when it was no longer pending or its deadline has not passed."""
        item = self._item
        try:
            item(model_id, version_sk(version)).update(
                actions=[
                    item.status.set(str(VersionStatus.EXPIRED)),
                    item.reason.set(EXPIRED_REASON),
                    item.registered_at.set(_stamp(now)),
                    item.awaiting_upload.remove(),
                ],
                condition=(item.status == str(VersionStatus.PENDING))
                & (item.upload_deadline < _stamp(now)),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def catalog(self) -> list[Model]:
        """Models that serve predictions and are not archived (heads only, no versions)."""
        return [_model(i, []) for i in self._item.catalog_index.query(PUBLIC)]

    def owned_by(self, owner_id: str) -> list[Model]:
        """The owner's models with their versions (one query: versions carry the owner)."""
        heads: dict[str, _ModelItem] = {}
        versions: dict[str, list[ModelVersion]] = {}
        for i in self._item.owner_index.query(owner_id):
            if i.sk == MODEL_SK:
                heads[str(i.model_id)] = i
            else:
                versions.setdefault(str(i.model_id), []).append(_version(i))
        return [_model(head, versions.get(key, [])) for key, head in heads.items()]

    def update(
        self,
        model_id: str,
        price: int | None,
        description: str | None,
        download_price: int | Unchanged | None = UNCHANGED,
    ) -> Model:
        """Change what is given (`download_price` None: no longer downloadable)."""
        item = self._item
        actions: list[Any] = [item.updated_at.set(_now())]
        if price is not None:
            actions.append(item.price.set(price))
        if description is not None:
            actions.append(item.description.set(description))
        if download_price is None:
            actions.append(item.download_price.remove())
        elif not isinstance(download_price, Unchanged):
            actions.append(item.download_price.set(download_price))
        try:
            item(model_id, MODEL_SK).update(actions=actions, condition=item.sk.exists())
        except UpdateError as exc:
            if condition_failed(exc):
                raise ModelNotFound() from exc
            raise
        return self.get(model_id)

    def archive(self, model_id: str) -> Model:
        item = self._item
        try:
            item(model_id, MODEL_SK).update(
                actions=[
                    item.archived.set(True),
                    item.catalog.remove(),
                    item.updated_at.set(_now()),
                ],
                condition=item.sk.exists(),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                raise ModelNotFound() from exc
            raise
        return self.get(model_id)

    def reject(self, model_id: str, version: int, reason: str) -> bool:
        """Mark a pending version rejected; False when it was not pending (already decided)."""
        item = self._item
        try:
            item(model_id, version_sk(version)).update(
                actions=[
                    item.status.set(str(VersionStatus.REJECTED)),
                    item.reason.set(reason),
                    item.registered_at.set(_now()),
                    item.awaiting_upload.remove(),
                ],
                condition=item.status == str(VersionStatus.PENDING),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True


def check_still_serving(
    tx: Transaction, label: str, table_name: str, expected: ModelStillServing
) -> None:
    """Add to `tx` a check that the model is unchanged where a charge depends on it: same
    price, same serving version, not archived."""
    item = bind_table(_ModelItem, table_name)
    condition = (
        (item.price == expected.price)
        & (item.serving_version == expected.version)
        & (item.archived == False)  # noqa: E712 - a DynamoDB condition
    )
    tx.check(label, item, expected.model_id, MODEL_SK, condition=condition)


def check_download_price(
    tx: Transaction, label: str, table_name: str, expected: DownloadPriceHeld
) -> None:
    """Add to `tx` a check that the model still sells downloads at the price charged and is
    not archived."""
    item = bind_table(_ModelItem, table_name)
    condition = (item.download_price == expected.download_price) & (
        item.archived == False  # noqa: E712 - a DynamoDB condition
    )
    tx.check(label, item, expected.model_id, MODEL_SK, condition=condition)


def check_precondition(
    tx: Transaction, label: str, table_name: str, expected: Precondition
) -> None:
    """Add to `tx` the check a ledger write's precondition stands for."""
    if isinstance(expected, DownloadPriceHeld):
        check_download_price(tx, label, table_name, expected)
    else:
        check_still_serving(tx, label, table_name, expected)


def add_version_ready(
    tx: Transaction,
    table_name: str,
    model_id: str,
    version: int,
    schema: ModelSchema,
    size: int,
    *,
    promote: bool,
    runtime: Runtime = Runtime.SKLEARN,
    runtime_reason: str | None = None,
) -> None:
    """Add to `tx` the pending -> ready step of a version (label "version"), recording what
    serves it, and, with `promote`, making it the serving version unless a newer one serves
    or the model is archived (label "model")."""
    item = bind_table(_ModelItem, table_name)
    now = _now()
    described = schema.model_dump()
    actions = [
        item.status.set(str(VersionStatus.READY)),
        item.model_schema.set(described),
        item.registered_at.set(now),
        item.size_bytes.set(size),
        item.runtime.set(str(runtime)),
        item.awaiting_upload.remove(),
    ]
    if runtime_reason is not None:
        actions.append(item.runtime_reason.set(runtime_reason))
    tx.update(
        "version",
        item(model_id, version_sk(version)),
        actions=actions,
        condition=item.status == str(VersionStatus.PENDING),
    )
    if promote:
        newer_serving = (
            item.serving_version.does_not_exist() | (item.serving_version < version)
        ) & (item.archived == False)  # noqa: E712
        tx.update(
            "model",
            item(model_id, MODEL_SK),
            actions=[
                item.serving_version.set(version),
                item.catalog.set(PUBLIC),
                item.model_schema.set(described),
                item.updated_at.set(now),
            ],
            condition=newer_serving,
        )
