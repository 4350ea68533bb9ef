"""One validated, cached settings object, read from the environment in exactly one place.

Deployed, SAM sets these variables from template.yaml; locally the dev stack sets the same
ones, pointing AWS_ENDPOINT_URL at the embedded AWS. Nothing else reads os.environ.
"""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Runtime configuration. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stage: str = Field("dev", alias="STAGE")
    # The `service` of log lines written outside a function's invocation (import, CLI);
    # during one, each function's own name (creditml.observability) takes its place.
    service_name: str = Field("creditml", alias="POWERTOOLS_SERVICE_NAME", min_length=1)
    region: str = Field("us-east-1", alias="AWS_REGION")
    users_table: str = Field("creditml-users", alias="USERS_TABLE")
    sessions_table: str = Field("creditml-sessions", alias="SESSIONS_TABLE")
    ledger_table: str = Field("creditml-ledger", alias="LEDGER_TABLE")
    limits_table: str = Field("creditml-limits", alias="LIMITS_TABLE")
    api_keys_table: str = Field("creditml-api-keys", alias="API_KEYS_TABLE")
    usage_table: str = Field("creditml-usage", alias="USAGE_TABLE")
    reports_bucket: str = Field("creditml-reports", alias="REPORTS_BUCKET")
    # The function that makes daily reports (POST /reports/daily/{date} starts it).
    usage_report_function: str = Field("usage-report", alias="USAGE_REPORT_FUNCTION")
    # The function that serves predictions (the web UI's predict form invokes it).
    predict_function: str = Field("predict", alias="PREDICT_FUNCTION")
    jwt_secret_id: str = Field("creditml/jwt-signing-key", alias="JWT_SECRET_ARN")
    # How long a fetched signing secret is trusted before it is read again (rotation window).
    jwt_secret_max_age_seconds: int = Field(300, alias="JWT_SECRET_MAX_AGE_SECONDS", ge=0)
    jwt_issuer: str = Field("creditml", alias="JWT_ISSUER")
    models_table: str = Field("creditml-models", alias="MODELS_TABLE")
    model_parts_table: str = Field("creditml-model-parts", alias="MODEL_PARTS_TABLE")
    devices_table: str = Field("creditml-devices", alias="DEVICES_TABLE")
    max_devices_per_user: int = Field(20, alias="MAX_DEVICES_PER_USER", ge=1, le=1000)
    # How long a download's presigned GET of the big part stays valid.
    download_url_ttl_seconds: int = Field(300, alias="DOWNLOAD_URL_TTL_SECONDS", ge=10, le=3600)
    uploads_bucket: str = Field("creditml-uploads", alias="UPLOADS_BUCKET")
    models_bucket: str = Field("creditml-models", alias="MODELS_BUCKET")
    model_key_id: str = Field("alias/creditml-models", alias="MODEL_KEY_ID")
    # DynamoDB items max out at 400 KB; the small part shares its item with a few hundred
    # bytes of key, nonce and digest.
    small_size_kb: int = Field(3, alias="SMALL_SIZE_KB", ge=1, le=350)
    max_model_bytes: int = Field(200 * 1024 * 1024, alias="MAX_MODEL_BYTES", gt=0)
    # Registration refuses a model that takes more memory than this once loaded (a small
    # compressed file can hold a huge array), and checks it in a child process limited to
    # these CPU and wall-clock seconds (creditml.models.vetting).
    model_max_memory_mb: int = Field(512, alias="MODEL_MAX_MEMORY_MB", ge=1)
    model_trial_cpu_seconds: int = Field(60, alias="MODEL_TRIAL_CPU_SECONDS", ge=1)
    model_trial_wall_seconds: int = Field(120, alias="MODEL_TRIAL_WALL_SECONDS", ge=1)
    upload_url_ttl_seconds: int = Field(900, alias="UPLOAD_URL_TTL_SECONDS", ge=60, le=43200)
    # How long after its presigned POST expires a version still waits for its upload (a
    # large file started just in time, and its registration's retries, take minutes), and
    # how many attempts registration gets (S3 invokes register_model asynchronously: one
    # attempt and two retries); the last one rejects what keeps failing.
    upload_grace_seconds: int = Field(900, alias="UPLOAD_GRACE_SECONDS", ge=0)
    registration_max_attempts: int = Field(3, alias="REGISTRATION_MAX_ATTEMPTS", ge=1)
    model_cache_bytes: int = Field(512 * 1024 * 1024, alias="MODEL_CACHE_BYTES", ge=0)
    prediction_outputs_bucket: str = Field(
        "creditml-prediction-outputs", alias="PREDICTION_OUTPUTS_BUCKET"
    )
    max_prediction_rows: int = Field(10_000, alias="MAX_PREDICTION_ROWS", ge=1)
    # Lambda's synchronous payload limit is 6 MB, the event wrapper included.
    max_request_bytes: int = Field(6 * 1024 * 1024 - 64 * 1024, alias="MAX_REQUEST_BYTES", gt=0)
    # Outputs up to this size stay in the ledger entry; larger ones go to S3, so a big batch
    # never bloats (or breaks, at 400 KB) the billing write.
    inline_outputs_bytes: int = Field(1024, alias="INLINE_OUTPUTS_BYTES", ge=0, le=64 * 1024)
    max_top_up_credits: int = Field(1_000_000, alias="MAX_TOP_UP_CREDITS", gt=0)
    access_token_ttl_seconds: int = Field(900, alias="ACCESS_TOKEN_TTL_SECONDS", gt=0, le=3600)
    refresh_token_ttl_seconds: int = Field(30 * 24 * 3600, alias="REFRESH_TOKEN_TTL_SECONDS", gt=0)
    # Predictions per account, and other authenticated requests per user or API key, per
    # minute (DESIGN §12); above it, 429 rate_limited.
    rate_limit_per_minute: int = Field(600, alias="RATE_LIMIT_PER_MINUTE", ge=1)
    # Tracing (X-Ray through Powertools) is on where Powertools turns it on: inside Lambda
    # (LAMBDA_TASK_ROOT is set), not under SAM local or Chalice, unless disabled explicitly.
    lambda_task_root: str = Field("", alias="LAMBDA_TASK_ROOT")
    trace_disabled: bool = Field(False, alias="POWERTOOLS_TRACE_DISABLED")
    sam_local: str = Field("", alias="AWS_SAM_LOCAL")
    chalice_local: str = Field("", alias="AWS_CHALICE_CLI_MODE")

    @property
    def tracing_enabled(self) -> bool:
        """Whether X-Ray tracing runs (creditml.observability); Powertools' own rule."""
        emulated = bool(self.sam_local or self.chalice_local)
        return bool(self.lambda_task_root) and not emulated and not self.trace_disabled


@cache
def get_settings() -> Settings:
    """The process-wide settings, validated once on first use (not at import)."""
    return Settings.model_validate(dict(os.environ))


def reset_settings() -> None:
    """Forget the cached settings (tests and the local stack change the environment)."""
    get_settings.cache_clear()
