"""Outputs of large prediction batches, kept in S3 so the billing write stays small."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3


class PredictionOutputs:
    def __init__(self, bucket: str) -> None:
        self._bucket = bucket

    @cached_property
    def _s3(self) -> Any:
        return boto3.client("s3")

    @staticmethod
    def key(user_id: str, prediction_id: str) -> str:
        return f"{user_id}/{prediction_id}.json"

    def put(self, key: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType="application/json")

    def get(self, key: str) -> bytes:
        data: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        return data

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)
