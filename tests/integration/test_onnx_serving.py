"""ONNX serving end to end through the real handlers under moto: registration converts a
model and gates its graph, the graph is stored sealed and split like the model, and what the
API answers equals what the owner's own model answers, for every estimator family of the
zoo, whichever runtime serves it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from creditml.auth.roles import Role
from creditml.composition.registration import data_keys, model_parts, registrar
from creditml.models.crypto import ONNX_GRAPH, unseal
from creditml.models.onnx_runtime import OnnxModel
from creditml.models.service import upload_key
from creditml.settings import get_settings
from creditml.storage.model_parts import Uploads
from tests.conftest import ROOT, load_event
from tests.integration.conftest import Api, register_and_login
from tests.integration.publishing import (
    bind_upload,
    create_model,
    grant,
    model_file,
    predict,
    publish,
)

pytestmark = pytest.mark.integration

IRIS_X, IRIS_Y = load_iris(return_X_y=True)
BINARY_X, BINARY_Y = make_classification(200, 6, n_informative=4, random_state=3)
REG_X, REG_Y = load_diabetes(return_X_y=True)
STRING_LABELS = np.array(["setosa", "versicolor", "virginica"])[IRIS_Y]

# Families that must be served by their exact ONNX graph.
ONNX_FAMILIES: dict[str, Callable[[], Any]] = {
    "DecisionTreeClassifier binary": lambda: DecisionTreeClassifier(random_state=0).fit(
        BINARY_X, BINARY_Y
    ),
    "DecisionTreeClassifier multiclass, string labels": lambda: DecisionTreeClassifier(
        max_depth=5, random_state=0
    ).fit(IRIS_X, STRING_LABELS),
    "DecisionTreeRegressor": lambda: DecisionTreeRegressor(max_depth=6, random_state=0).fit(
        REG_X, REG_Y
    ),
    "RandomForestClassifier multiclass": lambda: RandomForestClassifier(
        n_estimators=15, random_state=0
    ).fit(IRIS_X, IRIS_Y),
    "RandomForestRegressor": lambda: RandomForestRegressor(
        n_estimators=10, max_depth=6, random_state=0
    ).fit(REG_X, REG_Y),
    "ExtraTreesClassifier binary": lambda: ExtraTreesClassifier(
        n_estimators=10, random_state=0
    ).fit(BINARY_X, BINARY_Y),
    "ExtraTreesRegressor": lambda: ExtraTreesRegressor(
        n_estimators=10, max_depth=6, random_state=0
    ).fit(REG_X, REG_Y),
    "GradientBoostingClassifier binary": lambda: GradientBoostingClassifier(
        n_estimators=15, random_state=0
    ).fit(BINARY_X, BINARY_Y),
    "GradientBoostingClassifier multiclass": lambda: GradientBoostingClassifier(
        n_estimators=10, random_state=0
    ).fit(IRIS_X, IRIS_Y),
    "GradientBoostingRegressor": lambda: GradientBoostingRegressor(
        n_estimators=15, random_state=0
    ).fit(REG_X, REG_Y),
}

# Every other family of the allowlist's estimators, one representative each: served by
# whichever runtime the gate chose, always with the model's own answers.
OTHER_FAMILIES: dict[str, Callable[[], Any]] = {
    "HistGradientBoostingClassifier": lambda: HistGradientBoostingClassifier(
        max_iter=10, random_state=0
    ).fit(BINARY_X, BINARY_Y),
    "LogisticRegression": lambda: LogisticRegression(max_iter=500).fit(IRIS_X, IRIS_Y),
    "LinearRegression": lambda: LinearRegression().fit(REG_X, REG_Y),
    "Ridge": lambda: Ridge().fit(REG_X, REG_Y),
    "SVC": lambda: SVC().fit(BINARY_X, BINARY_Y),
    "SVR": lambda: SVR().fit(REG_X, REG_Y),
    "KNeighborsClassifier": lambda: KNeighborsClassifier().fit(IRIS_X, IRIS_Y),
    "MLPClassifier": lambda: MLPClassifier(
        hidden_layer_sizes=(8,), max_iter=300, random_state=0
    ).fit(BINARY_X, BINARY_Y),
    "GaussianNB": lambda: GaussianNB().fit(IRIS_X, IRIS_Y),
    "LinearDiscriminantAnalysis": lambda: LinearDiscriminantAnalysis().fit(IRIS_X, IRIS_Y),
    "AdaBoostClassifier": lambda: AdaBoostClassifier(n_estimators=10, random_state=0).fit(
        BINARY_X, BINARY_Y
    ),
    "BaggingClassifier": lambda: BaggingClassifier(n_estimators=5, random_state=0).fit(
        BINARY_X, BINARY_Y
    ),
    "Pipeline[StandardScaler, LogisticRegression]": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=500)
    ).fit(IRIS_X, IRIS_Y),
}


def _fitted(make: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


def _boundary_rows(model: Any, X: np.ndarray, limit: int = 600) -> np.ndarray:
    """Training rows, and for the splits of the model's trees a training row with the split
    feature set to the threshold and to its nearest doubles on either side (how scikit-learn
    compares: float32 inputs against float64 thresholds)."""
    rows = [X[:40]]
    trees = [e for e in np.ravel(getattr(model, "estimators_", [model])) if hasattr(e, "tree_")]
    rng = np.random.default_rng(7)
    splits = [
        (tree.tree_.feature[node], tree.tree_.threshold[node])
        for tree in trees
        for node in np.flatnonzero(tree.tree_.children_left != -1)
    ]
    for index in rng.permutation(len(splits))[: limit // 3]:
        feature, threshold = splits[index]
        base = X[rng.integers(len(X))]
        for value in (threshold, np.nextafter(threshold, np.inf), np.nextafter(threshold, -np.inf)):
            row = base.copy()
            row[feature] = value
            rows.append(row[None, :])
    return np.vstack(rows)


def _served_answers(api: Api, model: Any, X: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Publish `model`, predict on its boundary rows through the API; the version as its
    owner sees it, the rows, and the receipt."""
    publisher = register_and_login(api, "zoo-owner@example.com", role=Role.PUBLISHER)
    model_id = publish(api, publisher["access"], model_file(model), price=1)
    user = register_and_login(api, "zoo-user@example.com")
    grant(api, user["id"], 10_000)
    rows = _boundary_rows(model, X)
    status, receipt = predict(api, user["access"], model_id, {"inputs": rows.tolist()})
    assert status == 200, receipt
    shown = api.call(
        "ModelsFunction",
        load_event("models_get", access_token=publisher["access"], model_id=model_id),
    )[1]
    return {"version": shown["versions"][0], "receipt": receipt}, rows


def _assert_same_answers(model: Any, receipt: dict[str, Any], rows: np.ndarray) -> None:
    expected = model.predict(rows).tolist()
    assert receipt["outputs"] == expected  # labels and regression values: identical
    if hasattr(model, "predict_proba") and receipt["probabilities"] is not None:
        np.testing.assert_allclose(
            receipt["probabilities"], model.predict_proba(rows), rtol=0, atol=1e-12
        )


@pytest.mark.parametrize("family", sorted(ONNX_FAMILIES))
def test_tree_families_are_served_by_onnx_with_the_models_own_answers(
    api: Api, family: str
) -> None:
    model = _fitted(ONNX_FAMILIES[family])
    X = IRIS_X if model.n_features_in_ == 4 else BINARY_X if model.n_features_in_ == 6 else REG_X
    served, rows = _served_answers(api, model, X)
    assert (served["version"]["runtime"], served["version"]["runtime_reason"]) == ("onnx", None)
    _assert_same_answers(model, served["receipt"], rows)


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_every_other_family_answers_as_the_model_does_and_says_what_serves_it(
    api: Api, family: str
) -> None:
    model = _fitted(OTHER_FAMILIES[family])
    X = IRIS_X if model.n_features_in_ == 4 else BINARY_X if model.n_features_in_ == 6 else REG_X
    served, rows = _served_answers(api, model, X)
    version = served["version"]
    assert version["runtime"] in ("onnx", "sklearn")
    # scikit-learn serves it with the reason, or ONNX does after passing the gate.
    assert (version["runtime"] == "sklearn") == bool(version["runtime_reason"])
    _assert_same_answers(model, served["receipt"], rows)


def _parts_item(model_id: str) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=get_settings().model_parts_table,
        Key={"model_id": {"S": model_id}, "version": {"N": "1"}},
    )["Item"]
    return item


def test_the_graph_is_sealed_and_split_like_the_model(api: Api) -> None:
    settings = get_settings()
    publisher = register_and_login(api, "owner@example.com", role=Role.PUBLISHER)
    model = _fitted(ONNX_FAMILIES["RandomForestClassifier multiclass"])
    model_id = publish(api, publisher["access"], model_file(model))
    artifact, sealed = model_parts().fetch_serving(model_id, 1)
    assert artifact == ONNX_GRAPH
    graph = unseal(sealed, model_id, 1, data_keys(), ONNX_GRAPH)
    served = OnnxModel.load(graph)
    assert served.predict(IRIS_X).tolist() == model.predict(IRIS_X).tolist()

    # Neither store alone holds a byte of the graph in the clear: DynamoDB keeps the small
    # part (and the wrapped key), S3 the big part; the split follows the model's rule.
    item = _parts_item(model_id)
    stored = b"".join(
        value.get("B", value.get("S", "").encode()) for value in item.values() if value
    )
    big = (
        boto3.client("s3")
        .get_object(Bucket=settings.models_bucket, Key=item["onnx_big_key"]["S"])["Body"]
        .read()
    )
    probe = graph[len(graph) // 2 : len(graph) // 2 + 32]
    assert probe not in stored
    assert probe not in big
    assert len(item["onnx_small"]["B"]) == min(
        settings.small_size_kb * 1024, (len(graph) + 48) // 5
    )
    assert len(big) == len(graph) + 48 - len(item["onnx_small"]["B"])
    # Its own data key: the graph's wrapped key is not the model's.
    assert item["onnx_wrapped_key"]["B"] != item["wrapped_key"]["B"]


def test_a_delivery_that_loses_the_race_leaves_no_part_behind(api: Api) -> None:
    # Two deliveries of one upload checked at the same time: the second to commit drops
    # both of its big parts (the model's and the graph's).
    settings = get_settings()
    publisher = register_and_login(api, "racer@example.com", role=Role.PUBLISHER)
    model_id = create_model(api, publisher["access"])[1]["model_id"]
    data = model_file()
    key = upload_key(model_id, 1)
    Uploads(settings.uploads_bucket).put(key, data, bind_upload(model_id, 1))
    first = registrar()._register(key, model_id, 1, data)
    second = registrar()._register(key, model_id, 1, data)
    assert (str(first.outcome), str(second.outcome)) == ("ready", "already_done")
    listing = boto3.client("s3").list_objects_v2(Bucket=settings.models_bucket)
    keys = sorted(entry["Key"] for entry in listing["Contents"])
    item = _parts_item(model_id)
    assert keys == sorted([item["big_key"]["S"], item["onnx_big_key"]["S"]])


def test_a_model_without_an_exact_converter_is_served_by_scikit_learn_with_the_reason(
    api: Api,
) -> None:
    publisher = register_and_login(api, "svc@example.com", role=Role.PUBLISHER)
    model = _fitted(lambda: make_pipeline(StandardScaler(), SVC()).fit(BINARY_X, BINARY_Y))
    model_id = publish(api, publisher["access"], model_file(model))
    shown = api.call(
        "ModelsFunction",
        load_event("models_get", access_token=publisher["access"], model_id=model_id),
    )[1]
    version = shown["versions"][0]
    assert version["runtime"] == "sklearn"
    assert "Pipeline[StandardScaler, SVC]" in version["runtime_reason"]
    # No graph is stored for it.
    assert "onnx_big_key" not in _parts_item(model_id)
    artifact, _ = model_parts().fetch_serving(model_id, 1)
    assert artifact == "model"


def test_a_conversion_that_crashes_its_process_never_rejects_the_model(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checker variant aborts the process while converting (as a crash in ONNX Runtime
    # would): the model passed its checks, so it is registered, served by scikit-learn.
    monkeypatch.setattr("creditml.models.vetting.CHECKER_MODULE", "tests.models.crashing_converter")
    monkeypatch.setattr("creditml.models.vetting._zygote", None)
    monkeypatch.syspath_prepend(str(ROOT))
    publisher = register_and_login(api, "crash@example.com", role=Role.PUBLISHER)
    model = _fitted(ONNX_FAMILIES["DecisionTreeRegressor"])
    model_id = publish(api, publisher["access"], model_file(model))
    version = api.call(
        "ModelsFunction",
        load_event("models_get", access_token=publisher["access"], model_id=model_id),
    )[1]["versions"][0]
    assert (version["status"], version["runtime"]) == ("ready", "sklearn")
    assert version["runtime_reason"] == "converting it to ONNX failed; scikit-learn serves it"
    user = register_and_login(api, "crash-user@example.com")
    grant(api, user["id"], 100)
    status, receipt = predict(api, user["access"], model_id, {"inputs": REG_X[:5].tolist()})
    assert status == 200
    assert receipt["outputs"] == model.predict(REG_X[:5]).tolist()


COLD_PREDICT = """
import importlib.util, io, json, sys
import joblib
from sklearn.ensemble import RandomForestClassifier
from sklearn.datasets import load_iris
X, y = load_iris(return_X_y=True)
model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
buffer = io.BytesIO(); joblib.dump(model, buffer)
from creditml.models.onnx_convert import to_onnx
graph, data = to_onnx(model), buffer.getvalue()
rows = X[:3]
for name in [m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "joblib")]:
    del sys.modules[name]
# What a predict container does: import the function, then load and run an ONNX version.
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)
from creditml.models.crypto import MODEL, ONNX_GRAPH, seal
from creditml.models.loader import ModelCache, ModelLoader

class Keys:
    def generate(self, context): return bytes(32), b"wrapped"
    def unwrap(self, wrapped, context): return bytes(32)

class Parts:
    def fetch_serving(self, model_id, version):
        artifact, payload = (ONNX_GRAPH, graph) if model_id == "onnx" else (MODEL, data)
        return artifact, seal(payload, model_id, version, Keys(), 3, artifact)

loader = ModelLoader(Parts(), Keys(), ModelCache(10**8))
served = loader.load("onnx", 1)[0]
outputs = served.predict(rows).tolist()
after_onnx = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy"))
loader.load("sklearn", 1)[0].predict(rows)
after_sklearn = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy"))
print(json.dumps({"outputs": outputs, "onnx": after_onnx, "sklearn": len(after_sklearn)}))
"""


def test_a_cold_predict_container_serving_onnx_never_imports_scikit_learn() -> None:
    # Fresh process: scikit-learn is used only to build the fixture, then forgotten; the
    # predict function's import and an ONNX version's load and prediction import none of it,
    # and loading a scikit-learn-served version afterwards does (so the probe can see it).
    app = ROOT / "functions" / "predict" / "app.py"
    result = subprocess.run(
        [sys.executable, "-c", COLD_PREDICT, str(app)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "POWERTOOLS_METRICS_DISABLED": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["onnx"] == []
    assert answer["sklearn"] > 0
    reference = RandomForestClassifier(n_estimators=5, random_state=0).fit(IRIS_X, IRIS_Y)
    assert answer["outputs"] == reference.predict(IRIS_X[:3]).tolist()


def test_the_owner_model_file_is_what_a_download_would_read(api: Api) -> None:
    # Downloads return the owner's original file: the model parts, never the graph's.
    publisher = register_and_login(api, "dl@example.com", role=Role.PUBLISHER)
    model = _fitted(ONNX_FAMILIES["GradientBoostingRegressor"])
    data = model_file(model)
    model_id = publish(api, publisher["access"], data)
    stored = model_parts().stored(model_id, 1)
    sealed = model_parts().fetch(model_id, 1)
    assert stored.big_key == _parts_item(model_id)["big_key"]["S"]
    assert unseal(sealed, model_id, 1, data_keys()) == data
    assert joblib.load(io.BytesIO(unseal(sealed, model_id, 1, data_keys()))).n_estimators == 15


def test_the_largest_small_parts_still_fit_one_dynamodb_item(api: Api) -> None:
    # SMALL_SIZE_KB may be 350: the model's small part takes it all, and its graph's small
    # part must still fit the same 400 KB item (found in review: the commit failed and the
    # version was rejected for a model of about 4 MB).
    from functools import partial

    from creditml.composition.models import model_repository, uploads
    from creditml.models.registration import Registrar
    from creditml.models.vetting import VettingLimits, vet_for_serving

    settings = get_settings()
    rng = np.random.default_rng(5)
    features = rng.normal(size=(20_000, 8))
    model = _fitted(
        lambda: RandomForestClassifier(n_estimators=6, random_state=0).fit(
            features, rng.integers(0, 2, size=20_000)
        )
    )
    data = model_file(model)
    assert len(data) > 2 * 1024 * 1024
    publisher = register_and_login(api, "big@example.com", role=Role.PUBLISHER)
    model_id = create_model(api, publisher["access"])[1]["model_id"]
    key = upload_key(model_id, 1)
    Uploads(settings.uploads_bucket).put(key, data, bind_upload(model_id, 1))
    registrar = Registrar(
        models=model_repository(),
        parts=model_parts(),
        uploads=uploads(),
        keys=data_keys(),
        vet=partial(vet_for_serving, limits=VettingLimits.from_settings(settings)),
        small_size_kb=350,
        max_bytes=settings.max_model_bytes,
    )
    assert str(registrar.register(key).outcome) == "ready"
    item = _parts_item(model_id)
    assert len(item["small"]["B"]) == 350 * 1024
    assert len(item["onnx_small"]["B"]) == 1024  # what is left of the budget: 1 KB
    artifact, sealed = model_parts().fetch_serving(model_id, 1)
    served = OnnxModel.load(unseal(sealed, model_id, 1, data_keys(), artifact))
    assert served.predict(features[:50]).tolist() == model.predict(features[:50]).tolist()
