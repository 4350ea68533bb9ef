"""Billed predictions through the predict function's real handler, under moto: charged if
and only if delivered, replays, price changes, large outputs, privacy, one DynamoDB call."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from creditml.api.routes.predictions import get_prediction_service
from creditml.auth.roles import Role
from creditml.composition.predictions import build_prediction_service
from creditml.settings import get_settings
from tests.conftest import load_event, with_body
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import LABELS, ROWS, create_model, model_file, publish
from tests.integration.publishing import grant as _grant
from tests.integration.publishing import predict as _predict
from tests.integration.publishing import predict_raw as _predict_raw

PREDICT = "PredictFunction"


def _balance(api: Api, token: str) -> int:
    status, body = api.call("BillingFunction", load_event("billing_balance", access_token=token))
    assert status == 200
    return int(body["balance"])


def _history(api: Api, token: str) -> list[dict[str, Any]]:
    status, page = api.call(PREDICT, load_event("predictions_list", access_token=token))
    assert status == 200
    return list(page["items"])


@pytest.fixture
def setup(api: Api) -> dict[str, Any]:
    """A publisher's ready forest (price 2) and a user holding 100 credits."""
    publisher = register_and_login(api, "pub@example.com", role=Role.PUBLISHER)
    model = RandomForestClassifier(n_estimators=8, random_state=0).fit(ROWS, LABELS)
    data = model_file(model)
    model_id = publish(api, publisher["access"], data, price=2)
    user = register_and_login(api, "user@example.com")
    _grant(api, user["id"], 100)
    return {"publisher": publisher, "user": user, "model_id": model_id, "data": data}


def test_receipt_cost_balance_and_record(api: Api, setup: dict[str, Any]) -> None:
    token, model_id = setup["user"]["access"], setup["model_id"]
    rows = ROWS[:3].tolist()
    status, receipt = _predict(api, token, model_id, {"inputs": rows})
    assert status == 200, receipt
    reference = joblib.load(io.BytesIO(setup["data"]))
    assert receipt["outputs"] == reference.predict(np.array(rows)).tolist()
    np.testing.assert_allclose(receipt["probabilities"], reference.predict_proba(np.array(rows)))
    assert (receipt["cost"], receipt["balance"], receipt["model_version"]) == (6, 94, 1)
    assert _balance(api, token) == 94
    (record,) = _history(api, token)
    assert (record["id"], record["rows"], record["cost"]) == (receipt["prediction_id"], 3, 6)
    event = load_event(
        "predictions_get", access_token=token, prediction_id=receipt["prediction_id"]
    )
    status, shown = api.call(PREDICT, event)
    assert status == 200
    assert shown["outputs"] == receipt["outputs"]


BAD_INPUTS = [
    ({"inputs": [[1.0, 2.0, 3.0]]}, "body.inputs.0"),
    ({"inputs": [[1.0, 2.0, 3.0, 4.0, 5.0]]}, "body.inputs.0"),
    ({"inputs": [[1.0, 2.0, "3", 4.0]]}, "body.inputs.0.2"),
    ({"inputs": [[1.0, None, 3.0, 4.0]]}, "body.inputs.0.1"),
    ({"inputs": [[1.0, True, 3.0, 4.0]]}, "body.inputs.0.1"),
    ('{"inputs": [[1.0, NaN, 3.0, 4.0]]}', "body.inputs.0.1"),
    ('{"inputs": [[1.0, 2.0, Infinity, 4.0]]}', "body.inputs.0.2"),
    ('{"inputs": [[1.0, 2.0, 3.0, -Infinity]]}', "body.inputs.0.3"),
    ('{"inputs": [[1.0, 2.0, 3.0, 1e400]]}', "body.inputs.0.3"),
    ('{"inputs": [[1.0, 2.0, 1' + "0" * 400 + ", 4.0]]}", "body.inputs.0.2"),
    ({"inputs": [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]}, "body.inputs.1"),
    ({"inputs": [[1.0, 2.0, 3.0, 4.0], "row"]}, "body.inputs.1"),
    ({"inputs": []}, "body.inputs"),
    ({"inputs": "rows"}, "body.inputs"),
    ({"rows": [[1, 2, 3, 4]]}, "body"),
    ({"inputs": [{"a": 1, "b": 2, "c": 3, "d": 4}]}, "body.inputs.0"),
    ("not json", "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_INPUTS)
def test_bad_inputs_are_422_naming_row_and_field_and_cost_nothing(
    api: Api, setup: dict[str, Any], body: Any, field: str
) -> None:
    token = setup["user"]["access"]
    status, problem = _predict(api, token, setup["model_id"], body)
    assert status == 422, problem
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["field"] == field
    assert _balance(api, token) == 100
    assert _history(api, token) == []


def test_too_many_rows_and_too_large_bodies(api: Api, setup: dict[str, Any]) -> None:
    limits = {"max_prediction_rows": 5, "max_request_bytes": 2000}
    api.override(
        PREDICT,
        get_prediction_service,
        build_prediction_service(get_settings().model_copy(update=limits)),
    )
    token = setup["user"]["access"]
    status, problem = _predict(api, token, setup["model_id"], {"inputs": ROWS[:6].tolist()})
    assert (status, problem["errors"][0]["field"]) == (422, "body.inputs")
    assert "at most 5" in problem["detail"]
    status, problem = _predict(
        api, token, setup["model_id"], {"inputs": ROWS[:5].tolist(), "pad": "x" * 3000}
    )
    assert (status, problem["code"]) == (413, "payload_too_large")
    assert _balance(api, token) == 100


def test_body_not_sent_as_json_is_415(api: Api, setup: dict[str, Any]) -> None:
    response = _predict_raw(
        api,
        setup["user"]["access"],
        setup["model_id"],
        {"inputs": [[1, 2, 3, 4]]},
        content_type="text/plain",
    )
    assert response["statusCode"] == 415


def test_named_features(api: Api, setup: dict[str, Any]) -> None:
    named = make_pipeline(StandardScaler(), LogisticRegression()).fit(ROWS, LABELS)
    named.steps[0][1].feature_names_in_ = np.array(["a", "b", "c", "d"], dtype=object)
    model_id = publish(api, setup["publisher"]["access"], model_file(named), price=1)
    token = setup["user"]["access"]
    row = dict(zip("abcd", ROWS[0].tolist(), strict=True))
    status, receipt = _predict(api, token, model_id, {"inputs": [row, row]})
    assert (status, receipt["cost"]) == (200, 2)
    for bad, field in [
        ({**row, "e": 1.0}, "body.inputs.0.e"),
        ({k: v for k, v in row.items() if k != "c"}, "body.inputs.0.c"),
        ({**row, "b": None}, "body.inputs.0.b"),
    ]:
        status, problem = _predict(api, token, model_id, {"inputs": [bad]})
        assert (status, problem["errors"][0]["field"]) == (422, field)
    assert _balance(api, token) == 98


def test_insufficient_credits_is_402_without_outputs(api: Api, setup: dict[str, Any]) -> None:
    poor = register_and_login(api, "poor@example.com")
    _grant(api, poor["id"], 5)
    status, problem = _predict(
        api, poor["access"], setup["model_id"], {"inputs": ROWS[:3].tolist()}
    )
    assert (status, problem["code"]) == (402, "insufficient_credits")
    assert (problem["balance"], problem["required"]) == (5, 6)
    assert "outputs" not in problem
    assert _balance(api, poor["access"]) == 5


def test_unknown_unready_and_archived_models_cost_nothing(api: Api, setup: dict[str, Any]) -> None:
    token = setup["user"]["access"]
    body = {"inputs": ROWS[:1].tolist()}
    status, problem = _predict(api, token, str(uuid.uuid4()), body)
    assert (status, problem["code"]) == (404, "model_not_found")
    pending = create_model(api, setup["publisher"]["access"])[1]["model_id"]
    # An unpublished model is "not ready" to its owner and does not exist for anyone else.
    status, problem = _predict(api, setup["publisher"]["access"], pending, body)
    assert (status, problem["code"]) == (409, "model_not_ready")
    status, problem = _predict(api, token, pending, body)
    assert (status, problem["code"]) == (404, "model_not_found")
    archive = load_event(
        "models_archive", access_token=setup["publisher"]["access"], model_id=setup["model_id"]
    )
    assert api.call("ModelsFunction", archive)[0] == 204
    # Archived: gone to its owner, and no different from a model that never existed to
    # anyone else (no existence oracle).
    status, problem = _predict(api, setup["publisher"]["access"], setup["model_id"], body)
    assert (status, problem["code"]) == (410, "model_archived")
    status, problem = _predict(api, token, setup["model_id"], body)
    assert (status, problem["code"]) == (404, "model_not_found")
    assert _balance(api, token) == 100


def test_model_failures_cost_nothing(api: Api, setup: dict[str, Any]) -> None:
    broken = KNeighborsClassifier(n_neighbors=3).fit(ROWS[:10], LABELS[:10])
    broken.n_neighbors = 50  # fitted, registrable, fails at predict time
    model_id = publish(api, setup["publisher"]["access"], model_file(broken), price=1)
    token = setup["user"]["access"]
    status, problem = _predict(api, token, model_id, {"inputs": ROWS[:1].tolist()})
    assert (status, problem["code"]) == (500, "prediction_failed")
    # A model whose stored part is gone cannot load (in a container that has not cached it
    # yet): 500, no charge.
    settings = get_settings()
    for item in boto3.client("s3").list_objects_v2(Bucket=settings.models_bucket)["Contents"]:
        boto3.client("s3").delete_object(Bucket=settings.models_bucket, Key=item["Key"])
    api.override(PREDICT, get_prediction_service, build_prediction_service(settings))
    status, problem = _predict(api, token, setup["model_id"], {"inputs": ROWS[:1].tolist()})
    assert (status, problem["code"]) == (500, "model_unavailable")
    assert _balance(api, token) == 100
    assert _history(api, token) == []


def test_replays_return_the_receipt_once_charged(api: Api, setup: dict[str, Any]) -> None:
    token, model_id = setup["user"]["access"], setup["model_id"]
    key = str(uuid.uuid4())
    body = {"inputs": ROWS[:2].tolist()}
    first = _predict_raw(api, token, model_id, body, key)
    again = _predict_raw(api, token, model_id, body, key)
    assert first["statusCode"] == again["statusCode"] == 200
    assert first["body"] == again["body"]
    assert again["headers"].get("idempotent-replayed") == "true"
    assert _balance(api, token) == 96
    status, problem = _predict(api, token, model_id, {"inputs": ROWS[:3].tolist()}, key)
    assert (status, problem["code"]) == (409, "idempotency_key_reused")
    # Even after the model is archived, the retry still gets its receipt.
    archive = load_event(
        "models_archive", access_token=setup["publisher"]["access"], model_id=model_id
    )
    api.call("ModelsFunction", archive)
    late = _predict_raw(api, token, model_id, body, key)
    assert (late["statusCode"], late["body"]) == (200, first["body"])
    assert _balance(api, token) == 96


def test_a_price_change_is_charged_at_the_new_price(api: Api, setup: dict[str, Any]) -> None:
    token, model_id = setup["user"]["access"], setup["model_id"]
    assert _predict(api, token, model_id, {"inputs": ROWS[:1].tolist()})[1]["cost"] == 2
    # The owner raises the price; this container still caches the old one.
    update = load_event(
        "models_update", access_token=setup["publisher"]["access"], model_id=model_id
    )
    assert api.call("ModelsFunction", with_body(update, {"price": 5}))[0] == 200
    status, receipt = _predict(api, token, model_id, {"inputs": ROWS[:1].tolist()})
    assert (status, receipt["cost"], receipt["balance"]) == (200, 5, 93)


def test_large_batches_keep_outputs_out_of_the_billing_write(
    api: Api, setup: dict[str, Any]
) -> None:
    token = setup["user"]["access"]
    _grant(api, setup["user"]["id"], 1000)
    rows = np.random.default_rng(5).normal(size=(200, 4)).tolist()
    status, receipt = _predict(api, token, setup["model_id"], {"inputs": rows})
    assert (status, receipt["cost"]) == (200, 400)
    settings = get_settings()
    stored = boto3.client("s3").list_objects_v2(Bucket=settings.prediction_outputs_bucket)
    assert len(stored["Contents"]) == 1
    item = boto3.client("dynamodb").get_item(
        TableName=settings.ledger_table,
        Key={
            "account_id": {"S": setup["user"]["id"]},
            "sk": {"S": f"ENTRY#{receipt['prediction_id']}"},
        },
    )["Item"]
    assert len(json.dumps(item)) < 1024
    event = load_event(
        "predictions_get", access_token=token, prediction_id=receipt["prediction_id"]
    )
    assert api.call(PREDICT, event)[1]["outputs"] == receipt["outputs"]


def test_predictions_are_private(api: Api, setup: dict[str, Any]) -> None:
    status, receipt = _predict(
        api, setup["user"]["access"], setup["model_id"], {"inputs": ROWS[:1].tolist()}
    )
    other = register_and_login(api, "other@example.com")
    event = load_event(
        "predictions_get", access_token=other["access"], prediction_id=receipt["prediction_id"]
    )
    status, problem = api.call(PREDICT, event)
    assert (status, problem["code"]) == (404, "prediction_not_found")
    assert _history(api, other["access"]) == []


def test_a_warm_prediction_makes_exactly_one_dynamodb_call(api: Api, setup: dict[str, Any]) -> None:
    from botocore.client import BaseClient

    token, model_id = setup["user"]["access"], setup["model_id"]
    _predict(api, token, model_id, {"inputs": ROWS[:1].tolist()})  # warm up
    calls: list[str] = []
    original = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        calls.append(f"{self.meta.service_model.service_name}:{operation}")
        return original(self, operation, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", counting)
        status, _ = _predict(api, token, model_id, {"inputs": ROWS[:1].tolist()})
    assert status == 200
    assert calls == ["dynamodb:TransactWriteItems"]


def test_business_metrics_are_recorded(api: Api, setup: dict[str, Any]) -> None:
    # A cold container (its first load is a cache miss) whose metrics we watch
    seen: list[tuple[str, float]] = []
    service = build_prediction_service(
        get_settings(), observe=lambda name, value: seen.append((name, value))
    )
    api.override(PREDICT, get_prediction_service, service)
    poor = register_and_login(api, "poor@example.com")
    assert (
        _predict(api, setup["user"]["access"], setup["model_id"], {"inputs": ROWS[:3].tolist()})[0]
        == 200
    )
    assert _predict(api, poor["access"], setup["model_id"], {"inputs": ROWS[:1].tolist()})[0] == 402
    names = [name for name, _ in seen]
    assert names.count("ModelCacheMisses") == 1
    assert "ModelLoadTime" in names
    assert ("Predictions", 1) in seen
    assert ("PredictedRows", 3) in seen
    assert ("CreditsDebited", 6) in seen
    assert ("InsufficientCredits", 1) in seen


def test_a_reused_key_never_touches_the_charged_outputs(api: Api, setup: dict[str, Any]) -> None:
    token, model_id = setup["user"]["access"], setup["model_id"]
    _grant(api, setup["user"]["id"], 1000)
    key = str(uuid.uuid4())
    big = {"inputs": np.random.default_rng(8).normal(size=(200, 4)).tolist()}
    first = _predict_raw(api, token, model_id, big, key)
    assert first["statusCode"] == 200
    # Same key, other body: refused, and the charged result's stored outputs survive.
    other = {"inputs": np.random.default_rng(9).normal(size=(150, 4)).tolist()}
    status, problem = _predict(api, token, model_id, other, key)
    assert (status, problem["code"]) == (409, "idempotency_key_reused")
    # A same-body replay re-runs nothing it stores: the receipt is the first one, byte for byte.
    again = _predict_raw(api, token, model_id, big, key)
    assert again["body"] == first["body"]
    prediction_id = json.loads(first["body"])["prediction_id"]
    event = load_event("predictions_get", access_token=token, prediction_id=prediction_id)
    assert api.call(PREDICT, event)[1]["outputs"] == json.loads(first["body"])["outputs"]
    stored = boto3.client("s3").list_objects_v2(Bucket=get_settings().prediction_outputs_bucket)
    assert len(stored["Contents"]) == 1  # the losers' outputs were removed, the winner's kept


def test_a_retry_after_the_schema_changed_gets_its_receipt(api: Api, setup: dict[str, Any]) -> None:
    from tests.integration.publishing import upload_and_register

    token, model_id = setup["user"]["access"], setup["model_id"]
    key = str(uuid.uuid4())
    body = {"inputs": ROWS[:2].tolist()}
    first = _predict_raw(api, token, model_id, body, key)
    assert first["statusCode"] == 200
    # The owner ships version 2, which takes 6 features instead of 4.
    new_version = load_event(
        "models_new_version", access_token=setup["publisher"]["access"], model_id=model_id
    )
    assert api.call("ModelsFunction", new_version)[0] == 201
    wider = RandomForestClassifier(n_estimators=4, random_state=0).fit(
        np.random.default_rng(2).normal(size=(40, 6)), np.arange(40) % 2
    )
    upload_and_register(api, model_id, 2, model_file(wider))
    retry = _predict_raw(api, token, model_id, body, key)
    assert (retry["statusCode"], retry["body"]) == (200, first["body"])
    assert retry["headers"].get("idempotent-replayed") == "true"
    # A new request with the old width is now a 422, and costs nothing.
    status, _ = _predict(api, token, model_id, body)
    assert status == 422
    assert _balance(api, token) == 96


def _ledger_kinds(api: Api, token: str) -> list[str]:
    event = load_event("billing_transactions", access_token=token)
    status, page = api.call("BillingFunction", event)
    assert status == 200
    return [item["kind"] for item in page["items"]]


@pytest.mark.parametrize("form", ["lists", "objects"])
def test_ten_thousand_wide_rows_pass_the_request_limits(
    api: Api, setup: dict[str, Any], form: str
) -> None:
    # Given a model of 12 named features and a user who can pay for 10,000 rows
    names = [f"feature_{i:02d}" for i in range(12)]
    wide = np.random.default_rng(3).normal(size=(80, 12))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(wide, wide[:, 0] > 0)
    model.steps[0][1].feature_names_in_ = np.array(names, dtype=object)
    model_id = publish(api, setup["publisher"]["access"], model_file(model), price=1)
    _grant(api, setup["user"]["id"], 10_000)
    rows = np.round(np.random.default_rng(4).normal(size=(10_000, 12)), 6).tolist()
    inputs = rows if form == "lists" else [dict(zip(names, row, strict=True)) for row in rows]
    body = json.dumps({"inputs": inputs})
    assert len(body) > 1_000_000  # about 1.2 MB as lists, 2.1 MB as objects
    # When it is sent through the predict function's handler
    status, receipt = _predict(api, setup["user"]["access"], model_id, body)
    # Then it is served and charged in full
    assert status == 200, receipt
    assert (len(receipt["outputs"]), receipt["cost"], receipt["balance"]) == (10_000, 10_000, 100)


def test_a_deeply_nested_body_is_refused_and_costs_nothing(api: Api, setup: dict[str, Any]) -> None:
    token = setup["user"]["access"]
    status, problem = _predict(api, token, setup["model_id"], "[" * 100_000)
    assert (status, problem["code"]) == (422, "nesting_too_deep")
    assert _balance(api, token) == 100
    assert _history(api, token) == []


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/json", "application/json; charset=latin-1", "multipart/form-data"],
)
def test_a_body_not_labelled_json_is_415_and_changes_nothing(
    api: Api, setup: dict[str, Any], content_type: str | None
) -> None:
    token = setup["user"]["access"]
    event = load_event(
        "predictions_create",
        access_token=token,
        model_id=setup["model_id"],
        idempotency_key=str(uuid.uuid4()),
    )
    event = with_body(event, {"inputs": ROWS[:1].tolist()})
    del event["headers"]["content-type"]
    if content_type is not None:
        event["headers"]["content-type"] = content_type
    status, problem = api.call(PREDICT, event)
    assert (status, problem["code"]) == (415, "unsupported_media_type")
    assert _balance(api, token) == 100
    assert _history(api, token) == []
    # The same request labelled JSON (any letter case, UTF-8 named or not) is served.
    event["headers"]["content-type"] = "Application/JSON; charset=UTF-8"
    assert api.call(PREDICT, event)[0] == 200


def _overflowing_models() -> dict[str, Any]:
    # Trained on features of unit scale: 1e308 stays finite after scaling, but the
    # opposite-signed coefficients give inf - inf = NaN probabilities (once: null outputs).
    mixed = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        ROWS, (ROWS[:, 0] - ROWS[:, 1] > 0).astype(int)
    )
    # Trained on features of scale 0.1: the scaler itself overflows to inf, and the
    # classifier fails on it (once: a 500).
    small = ROWS * 0.1
    overflowing_scaler = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        small, (small[:, 0] + small[:, 1] > 0).astype(int)
    )
    # A regressor whose output leaves float range (once: null outputs, charged).
    regressor = LinearRegression().fit(ROWS, ROWS @ np.array([1.0, 2.0, 3.0, 4.0]))
    return {"nan": mixed, "scaler": overflowing_scaler, "regressor": regressor}


@pytest.mark.parametrize("kind", ["nan", "scaler", "regressor"])
def test_non_finite_results_are_422_and_cost_nothing(
    api: Api, setup: dict[str, Any], kind: str
) -> None:
    # Given a model that leaves float range for huge (but finite) inputs
    model_id = publish(
        api, setup["publisher"]["access"], model_file(_overflowing_models()[kind]), price=1
    )
    token = setup["user"]["access"]
    before = _ledger_kinds(api, token)
    # When a user sends them
    status, problem = _predict(api, token, model_id, {"inputs": [[1e308] * 4, [0.5] * 4]})
    # Then nothing is delivered and nothing is charged
    assert (status, problem["code"]) == (422, "non_finite_output"), problem
    assert "outputs" not in problem
    assert _balance(api, token) == 100
    assert _history(api, token) == []
    assert _ledger_kinds(api, token) == before == ["grant"]
    # while ordinary rows are still served
    status, receipt = _predict(api, token, model_id, {"inputs": [[0.5] * 4]})
    assert (status, receipt["cost"]) == (200, 1)
