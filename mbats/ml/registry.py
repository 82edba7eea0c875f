"""The model registry: resolve ``models:/<name>@<alias>``, load models, list versions, promote.

Promotion moves ``@champion`` to the ``@challenger`` version only when the challenger's
out-of-sample metric beats the champion's; the decision and its reason are written as tags on
both versions and in the challenger's description, so the registry shows why. A version registered
or aliased in the MLflow UI has no such metric: promotion then refuses with what to do, or scores
both versions on a holdout the caller names (recorded as the version's ``holdout`` tag).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import pandas as pd

from mbats.config import get_settings
from mbats.errors import MbatsError, NotFoundError, ServiceUnavailableError
from mbats.ml.train import CHALLENGER, CHAMPION

# metric → True when higher is better
METRICS = {"oos_auc": True, "oos_accuracy": True, "oos_signal_return_bp": True, "oos_log_loss": False}


@contextlib.contextmanager
def mlflow_errors():
    """Turn MLflow/HTTP connection failures into one-line errors naming the setting to check."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    try:
        yield
    except RestException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(str(exc).splitlines()[0][:300]) from None
        raise
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ServiceUnavailableError(
            f"MLflow server {get_settings().mlflow_tracking_uri} is not reachable ({type(exc).__name__}); "
            "check MBATS_MLFLOW_TRACKING_URI") from None
    except MlflowException as exc:
        text = str(exc)
        if "Max retries exceeded" in text or "Connection refused" in text or "API request" in text:
            raise ServiceUnavailableError(
                f"MLflow server {get_settings().mlflow_tracking_uri} is not reachable "
                f"({text.splitlines()[0][:200]}); check MBATS_MLFLOW_TRACKING_URI") from None
        raise


def client():
    """An MlflowClient on the platform's tracking store (server or the embedded Postgres)."""
    import mlflow
    from mlflow import MlflowClient

    from mbats.tracking import tracking_uri

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_name(name: str | None = None) -> str:
    return name or get_settings().ml_model_name


@dataclass
class Resolved:
    name: str
    alias: str
    version: str
    uri: str            # pinned: models:/<name>/<version>
    alias_uri: str      # models:/<name>@<alias>


def resolve(name: str | None = None, alias: str = CHAMPION) -> Resolved:
    """The version an alias points to now; NotFoundError says how to create it."""
    from mlflow.exceptions import MlflowException

    name = model_name(name)
    with mlflow_errors():
        try:
            mv = client().get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower() or \
                    getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "INVALID_PARAMETER" in str(exc):
                hint = "`mbats ml train`" if alias == CHALLENGER else "`mbats ml train` then `mbats ml promote`"
                raise NotFoundError(f"model {name} has no @{alias} version; run {hint}") from None
            raise
    return Resolved(name, alias, str(mv.version), f"models:/{name}/{mv.version}", f"models:/{name}@{alias}")


@lru_cache(maxsize=8)
def _load(uri: str, tracking: str):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(uri)


def load_model(uri: str):
    """A pyfunc model by URI; pinned ``models:/name/version`` URIs are cached (their content never
    changes), alias URIs are loaded afresh because the alias can move."""
    import mlflow.pyfunc

    from mbats.tracking import tracking_uri

    with mlflow_errors():
        client()
        if "@" in uri:
            return mlflow.pyfunc.load_model(uri)
        return _load(uri, tracking_uri())


def version_run_id(name: str, version: str) -> str | None:
    """The MLflow run that produced a registered version (None when it was registered without one)."""
    with mlflow_errors():
        return client().get_model_version(name, str(version)).run_id or None


# Tags `mbats ml train` writes on every version; a version registered or aliased in the MLflow UI
# (or with the plain MlflowClient) has none of them.
MBATS_TAGS = ("instruments", "granularity", "data_from", "data_to", "oos_auc", "oos_accuracy", "oos_log_loss")


def list_versions(name: str | None = None) -> list[dict]:
    name = model_name(name)
    from mlflow.exceptions import MlflowException

    with mlflow_errors():
        mlf = client()
        versions = mlf.search_model_versions(f"name = '{name}'")
        # Version search results do not carry aliases; the registered model does.
        try:
            aliases = mlf.get_registered_model(name).aliases if versions else {}
        except MlflowException:
            aliases = {}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        rows.append({"name": name, "version": str(mv.version), "aliases": sorted(by_version.get(str(mv.version), [])),
                     "run_id": mv.run_id, "created": mv.creation_timestamp, "model": mv.tags.get("model"),
                     "instruments": mv.tags.get("instruments"), "granularity": mv.tags.get("granularity"),
                     "oos_auc": _float(mv.tags.get("oos_auc")), "oos_accuracy": _float(mv.tags.get("oos_accuracy")),
                     "oos_log_loss": _float(mv.tags.get("oos_log_loss")), "promotion": mv.tags.get("promotion"),
                     "data_from": mv.tags.get("data_from"), "data_to": mv.tags.get("data_to"),
                     "holdout": mv.tags.get("holdout"),
                     # registered outside mbats (MLflow UI, plain client): say so instead of showing blanks
                     "source": "mbats" if mv.tags.get("instruments") else "external",
                     "missing": [t for t in MBATS_TAGS if mv.tags.get(t) in (None, "")]})
    return rows


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


@dataclass
class Holdout:
    """Bars to score versions that carry no out-of-sample metric (registered outside mbats)."""
    instruments: list[str]
    granularity: str
    start: datetime
    end: datetime | None = None
    horizon: int = 1

    def describe(self) -> str:
        end = f"{self.end:%Y-%m-%d %H:%M}" if self.end else "latest bar"
        return f"{','.join(self.instruments)} {self.granularity} {self.start:%Y-%m-%d %H:%M}..{end} UTC"


def evaluate_on_holdout(name: str, version: str, holdout: Holdout) -> dict[str, float]:
    """``oos_*`` metrics of one version on the holdout bars (the features training uses)."""
    import numpy as np

    from mbats.backtest.runner import BacktestSpec, load_bars
    from mbats.ml.features import FEATURES, LEADING_NAN_ROWS, make_dataset
    from mbats.ml.serve import up_probability
    from mbats.ml.train import score

    bars = load_bars(BacktestSpec(strategy="", instruments=holdout.instruments, granularity=holdout.granularity,
                                  start=holdout.start, end=holdout.end))
    frames = [make_dataset(bars[s], holdout.horizon) for s in holdout.instruments]
    data = pd.concat(frames)
    if len(data) < 50:
        raise MbatsError(f"the holdout {holdout.describe()} has {len(data)} usable rows; at least 50 are needed "
                         f"(the features drop each instrument's first {LEADING_NAN_ROWS} bars): widen it")
    model = load_model(f"models:/{name}/{version}")
    proba = up_probability(model.predict(data[list(FEATURES)]))
    metrics = score(data["target"].to_numpy(), np.asarray(proba, dtype="float64"), data["fwd_ret"].to_numpy())
    return {f"oos_{k}": v for k, v in metrics.items()}


def _holdout_overlap(mv, holdout: Holdout) -> str | None:
    """Why the holdout is not out of sample for this version (it overlaps the data it was trained on)."""
    data_to = mv.tags.get("data_to")
    if data_to and pd.Timestamp(holdout.start) <= pd.Timestamp(data_to):
        return (f"the holdout starts at {holdout.start:%Y-%m-%d %H:%M}, inside v{mv.version}'s training data "
                f"(to {data_to[:16]}); start it after that")
    return None


@dataclass
class Promotion:
    promoted: bool
    reason: str
    name: str
    challenger: str
    champion_before: str | None
    champion_after: str | None
    metric: str
    challenger_value: float | None
    champion_value: float | None
    holdout: str | None = None   # where the compared metrics came from when computed at promotion

    def as_dict(self) -> dict:
        return dict(vars(self))


def promote(name: str | None = None, metric: str = "oos_auc", min_improvement: float = 0.0,
            force: bool = False, holdout: Holdout | None = None) -> Promotion:
    """Move ``@champion`` to ``@challenger`` if it beats the champion on ``metric`` out of sample.

    A version without the metric (registered or aliased in the MLflow UI) is refused with what to
    do, unless ``holdout`` is given: then both versions are scored on those same bars and compared.
    """
    if metric not in METRICS:
        raise MbatsError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    name = model_name(name)
    challenger = resolve(name, CHALLENGER)
    mlf = client()
    with mlflow_errors():
        challenger_mv = mlf.get_model_version(name, challenger.version)
        try:
            champion = resolve(name, CHAMPION)
            champion_mv = mlf.get_model_version(name, champion.version)
        except NotFoundError:
            champion, champion_mv = None, None
        new_value = _float(challenger_mv.tags.get(metric))
        old_value = _float(champion_mv.tags.get(metric)) if champion_mv else None
        same = champion is not None and champion.version == challenger.version
        lacking = [mv for mv in (challenger_mv, champion_mv) if mv is not None and _float(mv.tags.get(metric)) is None]
        held_out = None
        forced_blind = bool(lacking) and not same and holdout is None and force
        if lacking and not same and not forced_blind:
            if holdout is None:
                who = " and ".join(f"v{mv.version}" for mv in lacking)
                raise MbatsError(
                    f"{who} of {name} has no {metric} (registered outside `mbats ml train`: no instruments, no "
                    f"out-of-sample metrics), so promotion has nothing to compare; score both versions on bars "
                    f"neither was trained on with `mbats ml promote --holdout-start YYYY-MM-DD -i EUR_USD -g H1`, "
                    f"retrain with `mbats ml train`, or promote without a comparison with --force")
            for mv in (challenger_mv, champion_mv):
                overlap = mv is not None and _holdout_overlap(mv, holdout)
                if overlap:
                    raise MbatsError(f"holdout {holdout.describe()} is not out of sample: {overlap}")
            # Both on the same bars, so the comparison is fair even if one had a training-time metric.
            held_out = holdout.describe()
            new_metrics = evaluate_on_holdout(name, challenger.version, holdout)
            new_value = new_metrics[metric]
            old_value = evaluate_on_holdout(name, champion.version, holdout)[metric] if champion else None
            for key, value in new_metrics.items():
                if _float(challenger_mv.tags.get(key)) is None and key in METRICS:
                    mlf.set_model_version_tag(name, challenger.version, key, str(value))
            mlf.set_model_version_tag(name, challenger.version, "holdout", held_out)
        higher = METRICS[metric]
        if same:
            promoted, reason = False, f"v{challenger.version} is already the champion"
        elif forced_blind:
            promoted, reason = True, (f"forced without a comparison: {' and '.join(f'v{mv.version}' for mv in lacking)}"
                                      f" has no {metric}")
        elif champion is None:
            promoted, reason = True, f"no champion yet; v{challenger.version} {metric}={new_value:.5f}"
        else:
            gain = (new_value - old_value) if higher else (old_value - new_value)
            beats = gain > min_improvement
            word = "beats" if beats else "does not beat"
            promoted = beats
            reason = (f"challenger v{challenger.version} {metric}={new_value:.5f} {word} champion "
                      f"v{champion.version} {metric}={old_value:.5f} ({'higher' if higher else 'lower'} is better, "
                      f"required improvement > {min_improvement:g})")
        if held_out:
            reason = f"{reason} [both scored on holdout {held_out}]"
        if force and not promoted and not same:
            promoted, reason = True, f"forced: {reason}"
        mlf.set_model_version_tag(name, challenger.version, "promotion", "promoted" if promoted else "refused")
        mlf.set_model_version_tag(name, challenger.version, "promotion_reason", reason)
        if promoted:
            mlf.set_registered_model_alias(name, CHAMPION, challenger.version)
            if champion:
                mlf.set_model_version_tag(name, champion.version, "superseded_by", challenger.version)
            description = (challenger_mv.description or "").split("\nPromotion: ")[0]
            mlf.update_model_version(name, challenger.version, description=f"{description}\nPromotion: {reason}")
    return Promotion(promoted, reason, name, challenger.version, champion.version if champion else None,
                     challenger.version if promoted else (champion.version if champion else None), metric,
                     new_value, old_value, held_out)
