"""What a loaded model needs and gives: its input schema, read from the fitted estimator
(scikit-learn's own introspection; run at registration, in the vetting child process)."""

from __future__ import annotations

from typing import Any

from creditml.models.errors import ModelRejected
from creditml.models.schema import ModelSchema


def inspect_model(model: Any) -> ModelSchema:
    """The input schema of a fitted estimator; ModelRejected when it cannot serve predictions.

    Never raises anything else: an unexpected error becomes a rejection that names its type.
    """
    try:
        return _inspect(model)
    except ModelRejected:
        raise
    except Exception as exc:
        raise ModelRejected(
            f"the {type(model).__name__} could not be inspected ({type(exc).__name__})"
        ) from exc


# Estimators whose predictions are several values per row, which the service cannot serve.
_MULTI_OUTPUT_WRAPPERS = frozenset(
    {"MultiOutputClassifier", "MultiOutputRegressor", "ClassifierChain", "RegressorChain"}
)


def final_estimator(model: Any) -> Any:
    """The estimator that makes a (nested) pipeline's predictions."""
    while isinstance(getattr(model, "steps", None), list) and model.steps:
        model = model.steps[-1][1]
    return model


def _reject_multi_output(model: Any) -> None:
    # Multi-output classifiers keep one classes_ array per output. (n_outputs_ is no guide:
    # an MLP counts its output units there. Other multi-output models predict 2-D arrays,
    # which the trial prediction refuses.)
    final = final_estimator(model)
    classes = getattr(final, "classes_", None)
    multi = (
        type(final).__name__ in _MULTI_OUTPUT_WRAPPERS
        or isinstance(classes, list)
        or (classes is not None and getattr(classes, "ndim", 1) != 1)
    )
    if multi:
        raise ModelRejected(
            f"the {type(final).__name__} predicts several outputs per row; only models with "
            "one output per row can be served"
        )


def _inspect(model: Any) -> ModelSchema:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not callable(getattr(model, "predict", None)):
        raise ModelRejected(f"a {type(model).__name__} has no predict method")
    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise ModelRejected(f"the {type(model).__name__} is not fitted") from exc
    except TypeError as exc:
        raise ModelRejected(f"a {type(model).__name__} is not a scikit-learn estimator") from exc
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int) or n_features < 1:
        raise ModelRejected("the model does not record its number of input features")
    _reject_multi_output(model)
    names = getattr(model, "feature_names_in_", None)
    classes = getattr(model, "classes_", None) if is_classifier(model) else None
    task = (
        "classification"
        if is_classifier(model)
        else "regression"
        if is_regressor(model)
        else "other"
    )
    try:
        probabilities = callable(getattr(model, "predict_proba", None))
    except AttributeError:
        probabilities = False
    return ModelSchema(
        n_features=n_features,
        feature_names=[str(name) for name in names] if names is not None else None,
        classes=[_json_scalar(label) for label in classes] if classes is not None else None,
        task=task,
        estimator=describe(model),
        probabilities=probabilities,
    )


def _json_scalar(value: Any) -> str | int | float | bool:
    plain = value.item() if hasattr(value, "item") else value
    return plain if isinstance(plain, str | int | float | bool) else str(plain)


def describe(model: Any) -> str:
    """The estimator as its owner knows it, e.g. Pipeline[StandardScaler, SVC]."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        inner = ", ".join(describe(step) for _, step in steps if step not in (None, "passthrough"))
        return f"{type(model).__name__}[{inner}]"
    return type(model).__name__
