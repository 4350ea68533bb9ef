"""Where a registered model's bytes live: the small part (with the wrapped data key, nonce
and digest) in the parts table, the big part in the models bucket. Also the uploads bucket
(presigned POSTs, reading and deleting uploads) and KMS data keys."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.models import Model

from creditml.models.crypto import MODEL, ONNX_GRAPH, ModelIntegrityError, SealedModel
from creditml.models.records import ServingChoice, StoredParts, UploadedFile
from creditml.models.schema import ModelSchema
from creditml.storage.clients import unavailable_when_transient
from creditml.storage.dynamo import Transaction, TransactionCancelled
from creditml.storage.models import add_version_ready
from creditml.storage.tables import bind_table


class _PartsItem(Model):
    model_id = UnicodeAttribute(hash_key=True)
    version = NumberAttribute(range_key=True)
    small = BinaryAttribute(legacy_encoding=False)
    wrapped_key = BinaryAttribute(legacy_encoding=False)
    nonce = BinaryAttribute(legacy_encoding=False)
    digest = UnicodeAttribute()
    big_key = UnicodeAttribute()
    big_size = NumberAttribute()
    # SHA-256 of the big part's bytes as stored (what a download names, so that serving one
    # never reads the big part). Written at registration; for versions registered before
    # it existed, computed from S3 by the first download and remembered.
    big_sha256 = UnicodeAttribute(null=True)
    # Versions served by ONNX: the graph, sealed and split like the model (its own data
    # key; creditml.models.crypto), small part here, big part in the models bucket.
    onnx_small = BinaryAttribute(legacy_encoding=False, null=True)
    onnx_wrapped_key = BinaryAttribute(legacy_encoding=False, null=True)
    onnx_nonce = BinaryAttribute(legacy_encoding=False, null=True)
    onnx_digest = UnicodeAttribute(null=True)
    onnx_big_key = UnicodeAttribute(null=True)


# Big parts are hashed from S3 in chunks of this size (never held in memory whole).
_HASH_CHUNK = 1024 * 1024


class ModelParts:
    """Stores and fetches the two parts of sealed models. Storing the small part is one
    transaction with the version's pending -> ready step in the models table."""

    def __init__(self, table_name: str, bucket: str, models_table: str) -> None:
        self._item = bind_table(_PartsItem, table_name)
        self._bucket = bucket
        self._models_table = models_table

    @cached_property
    def _s3(self) -> Any:
        return boto3.client("s3")

    @cached_property
    def _signer(self) -> Any:
        # Signature V4 for presigned GETs: V2 (botocore's default for presigning S3) is not
        # accepted in every region, and V4 bounds the URL's life by X-Amz-Expires.
        return boto3.client("s3", config=Config(signature_version="s3v4"))

    def put_big(
        self, model_id: str, version: int, sealed: SealedModel, artifact: str = MODEL
    ) -> str:
        """Upload the big part of the model (or of another `artifact` of the version) under
        a key of its own (a duplicate registration running at the same time can never
        overwrite it); returns the key."""
        suffix = "part" if artifact == MODEL else f"{artifact}.part"
        key = f"{model_id}/{version}/{uuid.uuid4().hex}.{suffix}"
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=sealed.big)
        return key

    def delete_big(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def committed_big_key(self, model_id: str, version: int) -> str | None:
        """The big part's key the stored parts of a version name (None: none stored)."""
        try:
            item = self._item.get(model_id, version, consistent_read=True)
        except DoesNotExist:
            return None
        return str(item.big_key)

    def commit_ready(
        self,
        model_id: str,
        version: int,
        sealed: SealedModel,
        big_key: str,
        schema: ModelSchema,
        size: int,
        serving: ServingChoice | None = None,
    ) -> bool:
        """In ONE transaction: store the small part (pointing at `big_key`) and, for a
        version served by ONNX, the graph's small part (pointing at its big part), mark the
        pending version ready with what serves it, and make it the serving version unless a
        newer one serves or the model is archived. False when the version was no longer
        pending or its parts were already stored (another delivery of the same upload won)."""
        serving = serving or ServingChoice()
        small = self._item(
            model_id,
            version,
            small=sealed.small,
            wrapped_key=sealed.wrapped_key,
            nonce=sealed.nonce,
            digest=sealed.digest,
            big_key=big_key,
            big_size=len(sealed.big),
            big_sha256=hashlib.sha256(sealed.big).hexdigest(),
        )
        if serving.graph is not None:
            graph, graph_key = serving.graph
            small.onnx_small = graph.small
            small.onnx_wrapped_key = graph.wrapped_key
            small.onnx_nonce = graph.nonce
            small.onnx_digest = graph.digest
            small.onnx_big_key = graph_key
        for promote in (True, False):
            tx = Transaction(self._item)
            tx.put("parts", small, condition=self._item.model_id.does_not_exist(), return_old=False)
            add_version_ready(
                tx,
                self._models_table,
                model_id,
                version,
                schema,
                size,
                promote=promote,
                runtime=serving.runtime,
                runtime_reason=serving.reason,
            )
            try:
                tx.commit()
            except TransactionCancelled as cancelled:
                if {"parts", "version"} & cancelled.failed.keys():
                    return False
                if promote and "model" in cancelled.failed:  # a newer version serves
                    continue
                raise
            return True
        return False

    def fetch(self, model_id: str, version: int) -> SealedModel:
        """Both parts of a registered version's model file (two reads: DynamoDB, then S3);
        ServiceUnavailable when either fails for a reason that passes."""
        return self._fetch(model_id, version, serving=False)[1]

    def fetch_serving(self, model_id: str, version: int) -> tuple[str, SealedModel]:
        """What serves a registered version, sealed: its ONNX graph when it has one (the
        artifact ONNX_GRAPH), else its model file (MODEL). Two reads, as `fetch`."""
        return self._fetch(model_id, version, serving=True)

    def _fetch(self, model_id: str, version: int, serving: bool) -> tuple[str, SealedModel]:
        with unavailable_when_transient():
            try:
                item = self._item.get(model_id, version, consistent_read=True)
            except DoesNotExist as exc:
                raise LookupError(f"no parts for {model_id} v{version}") from exc
            graph = serving and item.onnx_big_key is not None
            key = item.onnx_big_key if graph else item.big_key
            big = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        if graph:
            return ONNX_GRAPH, SealedModel(
                small=bytes(item.onnx_small),
                big=big,
                nonce=bytes(item.onnx_nonce),
                wrapped_key=bytes(item.onnx_wrapped_key),
                digest=str(item.onnx_digest),
            )
        return MODEL, SealedModel(
            small=bytes(item.small),
            big=big,
            nonce=bytes(item.nonce),
            wrapped_key=bytes(item.wrapped_key),
            digest=item.digest,
        )

    def stored(self, model_id: str, version: int) -> StoredParts:
        """What a download needs of a registered version without its big part's bytes (one
        read; plus, once per version registered before big parts were hashed, a streamed
        read of the big part to hash it). LookupError when the version has no parts."""
        with unavailable_when_transient():
            try:
                item = self._item.get(model_id, version, consistent_read=True)
            except DoesNotExist as exc:
                raise LookupError(f"no parts for {model_id} v{version}") from exc
            big_sha256 = item.big_sha256 or self._remember_big_sha256(item)
        return StoredParts(
            small=bytes(item.small),
            wrapped_key=bytes(item.wrapped_key),
            nonce=bytes(item.nonce),
            digest=item.digest,
            big_key=item.big_key,
            big_size=int(item.big_size),
            big_sha256=big_sha256,
        )

    def _remember_big_sha256(self, item: _PartsItem) -> str:
        digest = hashlib.sha256()
        answer = self._s3.get_object(Bucket=self._bucket, Key=item.big_key)
        with answer["Body"] as body:
            for chunk in iter(lambda: body.read(_HASH_CHUNK), b""):
                digest.update(chunk)
        found = digest.hexdigest()
        # Conditional on the same big part: a concurrent download computed the same.
        item.update(
            actions=[self._item.big_sha256.set(found)],
            condition=self._item.big_key == item.big_key,
        )
        return found

    def big_url(self, big_key: str, expires_in: int) -> str:
        """A presigned GET of a big part, valid `expires_in` seconds (signed locally, no AWS
        call; S3 checks the signer's s3:GetObject when it is used)."""
        url: str = self._signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": big_key},
            ExpiresIn=expires_in,
        )
        return url


TOKEN_META = "upload-token"  # noqa: S105 - a metadata name, not a secret
TOKEN_FIELD = f"x-amz-meta-{TOKEN_META}"  # the form field S3 stores as that metadata


class Uploads:
    """The uploads bucket: presigned POSTs for publishers, and the registration's reads."""

    def __init__(self, bucket: str) -> None:
        self._bucket = bucket

    @cached_property
    def _s3(self) -> Any:
        return boto3.client("s3")

    def presigned_post(
        self, key: str, max_bytes: int, expires_in: int, token: str
    ) -> dict[str, Any]:
        """A presigned POST for exactly `key`, carrying `token` as object metadata; the
        policy pins both (AWS refuses a form whose key or token was changed; registration
        checks the token again, since moto does not enforce policies)."""
        post: dict[str, Any] = self._s3.generate_presigned_post(
            Bucket=self._bucket,
            Key=key,
            Fields={TOKEN_FIELD: token},
            Conditions=[["content-length-range", 1, max_bytes], {TOKEN_FIELD: token}],
            ExpiresIn=expires_in,
        )
        return post

    def read(self, key: str, max_bytes: int) -> UploadedFile | None:
        """The upload (at most max_bytes + 1 bytes of it, so oversize is detectable) with its
        token and time, or None when it is gone (already registered by an earlier delivery
        of the same event)."""
        try:
            # Not a ranged GET: S3 answers one on an empty object with InvalidRange.
            answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        with answer["Body"] as body:
            data: bytes = body.read(max_bytes + 1)
        token = answer.get("Metadata", {}).get(TOKEN_META)
        return UploadedFile(data, token, answer["LastModified"])

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def put(self, key: str, data: bytes, fields: Mapping[str, str] | None = None) -> None:
        """Upload directly (seeding and tests; publishers use presigned POSTs). Pass the
        `fields` of the version's presigned POST: registration ignores an upload that does
        not carry its version's token."""
        token = (fields or {}).get(TOKEN_FIELD)
        metadata = {TOKEN_META: token} if token else {}
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, Metadata=metadata)


class KmsDataKeys:
    """Data keys from one KMS key (GenerateDataKey / Decrypt with an encryption context)."""

    def __init__(self, key_id: str) -> None:
        self._key_id = key_id

    @cached_property
    def _kms(self) -> Any:
        return boto3.client("kms")

    def generate(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        answer = self._kms.generate_data_key(
            KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=context
        )
        return answer["Plaintext"], answer["CiphertextBlob"]

    def unwrap(self, wrapped: bytes, context: dict[str, str]) -> bytes:
        try:
            with unavailable_when_transient():
                answer = self._kms.decrypt(
                    CiphertextBlob=wrapped, EncryptionContext=context, KeyId=self._key_id
                )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "InvalidCiphertextException":
                raise ModelIntegrityError("the data key belongs to another model") from exc
            raise
        plaintext: bytes = answer["Plaintext"]
        return plaintext
