"""The scikit-learn estimators MBATS trains, by short name, with typed parameter overrides."""

from __future__ import annotations

import ast

from sklearn.base import ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mbats.errors import MbatsError

MODEL_KINDS = ("logreg", "gbt", "rf", "dummy")


def _parse(value: object) -> object:
    """``"0.5"`` → 0.5, ``"None"`` → None; other strings stay strings."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def make_estimator(kind: str, params: dict[str, object] | None = None, seed: int = 7) -> ClassifierMixin:
    """A fresh, unfitted classifier; ``params`` set the classifier's own hyper-parameters."""
    if kind == "logreg":
        clf = LogisticRegression(C=1.0, max_iter=1000)
    elif kind == "gbt":
        clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_depth=3, random_state=seed)
    elif kind == "rf":
        clf = RandomForestClassifier(n_estimators=100, max_depth=5, min_samples_leaf=50, n_jobs=1,
                                     random_state=seed)
    elif kind == "dummy":  # predicts the training base rate: the floor any real model must beat
        clf = DummyClassifier(strategy="prior")
    else:
        raise MbatsError(f"unknown model '{kind}'; choose one of {', '.join(MODEL_KINDS)}")
    if params:
        known = clf.get_params()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise MbatsError(f"model {kind} has no parameter(s) {', '.join(unknown)}")
        clf.set_params(**{k: _parse(v) for k, v in params.items()})
    # Scaling matters for the linear model and is harmless for the others.
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])
