"""`mbats ml …`: train, list, promote and serve the models the ML strategy trades on."""

from __future__ import annotations

import typer

from mbats.cli.app import group

from mbats.cli.options import END, GRANULARITY, parse_window

ml_app = group(
    help="Machine learning: train a model with walk-forward validation (registered as @challenger), "
    "promote it to @champion when it beats the champion out of sample, serve it over REST. "
    "The ml_signal strategy trades on @champion.",
)


def _print_json(value) -> None:
    from mbats.cli.output import print_json

    print_json(value)


@ml_app.command("train")
def train_command(
    instruments: list[str] = typer.Argument(..., help="instruments to train on, e.g. EUR_USD GBP_USD"),
    granularity: str = GRANULARITY,
    start: str = typer.Option(None, "--start", help="first bar (UTC date/time), e.g. 2017-01-01; default: all data"),
    end: str = END,
    model: str = typer.Option("logreg", help="logreg, gbt, rf or dummy (the base-rate floor)"),
    param: list[str] = typer.Option([], "--param", "-p", help="classifier hyper-parameter name=value, repeatable"),
    folds: int = typer.Option(5, help="walk-forward folds"),
    horizon: int = typer.Option(1, help="bars ahead the model predicts the direction of"),
    name: str = typer.Option(None, help="registered model name (default MBATS_ML_MODEL_NAME)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """Train, validate walk-forward, log to MLflow and register a new version as @challenger."""
    from mbats.kernel.strategies import parse_param_options
    from mbats.errors import UsageError
    from mbats.ml.train import TrainSpec, train
    from mbats.specs import RangeSpec, check, check_symbol

    start_at, end_at, names = parse_window(start, end)

    for symbol in instruments:
        try:
            check_symbol(symbol)
        except ValueError as exc:
            raise UsageError(f"INSTRUMENTS: {exc}") from None
    if not 2 <= folds <= 100:
        raise UsageError(f"--folds: must be from 2 to 100 (got {folds})")
    if not 1 <= horizon <= 10_000:
        raise UsageError(f"--horizon: must be from 1 to 10000 bars (got {horizon})")
    check(RangeSpec, {"start": start_at, "end": end_at}, names)
    spec = TrainSpec(instruments=[i.upper() for i in instruments], granularity=granularity, start=start_at, end=end_at,
                     model=model, params=parse_param_options(param), folds=folds, horizon=horizon, model_name=name)
    result = train(spec)
    summary = {"model_name": result.model_name, "version": result.version, "alias": "challenger",
               "model_uri": result.model_uri, "run_id": result.run_id, "rows": result.rows,
               "data_from": result.data_from, "data_to": result.data_to, "dataset_uri": result.dataset_uri,
               "oos": result.oos_metrics, "folds": result.fold_metrics, "seconds": round(result.seconds, 2)}
    if as_json:
        _print_json(summary)
        return
    from mbats.cli.output import console, table

    table("walk-forward folds", ["fold", "rows", "auc", "accuracy", "log loss", "signal bp/bar"],
          [(i, int(m["rows"]), m["auc"], m["accuracy"], m["log_loss"], m["signal_return_bp"])
           for i, m in enumerate(result.fold_metrics)], right=["fold", "rows", "auc", "accuracy", "log loss",
                                                               "signal bp/bar"])
    oos = result.oos_metrics
    console.print(f"registered {result.model_name} v{result.version} as @challenger "
                  f"(OOS auc {oos['auc']:.4f}, accuracy {oos['accuracy']:.4f}); "
                  f"next: `mbats ml promote`")


@ml_app.command("models")
def models_command(
    name: str = typer.Option(None, help="registered model name (default MBATS_ML_MODEL_NAME)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """List the versions of the registered model with their aliases and out-of-sample metrics."""
    from mbats.ml.registry import list_versions

    rows = list_versions(name)
    if as_json:
        _print_json(rows)
        return
    from mbats.cli.output import console, table

    if not rows:
        console.print("no versions yet: run `mbats ml train EUR_USD`")
        return
    def known(row: dict, key: str):
        # a version registered in the MLflow UI has no mbats tags: say so rather than leave a blank
        return row[key] if row[key] is not None else "missing"

    table(f"model {rows[0]['name']}", ["version", "aliases", "source", "model", "instruments", "gran", "data to",
                                       "oos auc", "oos accuracy", "promotion", "run id"],
          [(r["version"], r["aliases"], r["source"], r["model"], known(r, "instruments"), known(r, "granularity"),
            (r["data_to"] or "missing")[:16], known(r, "oos_auc"), known(r, "oos_accuracy"), r["promotion"],
            r["run_id"]) for r in rows], right=["version", "oos auc", "oos accuracy"])
    if any(r["source"] == "external" for r in rows):
        console.print("external: registered outside `mbats ml train` (no instruments or out-of-sample metrics); "
                      "`mbats ml promote --holdout-start …` scores such versions on bars you name", highlight=False)


@ml_app.command("promote")
def promote_command(
    name: str = typer.Option(None, help="registered model name (default MBATS_ML_MODEL_NAME)"),
    metric: str = typer.Option("oos_auc", help="oos_auc, oos_accuracy, oos_signal_return_bp or oos_log_loss"),
    min_improvement: float = typer.Option(0.0, help="how much better the challenger must be"),
    force: bool = typer.Option(False, "--force", help="promote even if the challenger is not better"),
    holdout_start: str = typer.Option(None, "--holdout-start",
                                      help="for versions registered outside mbats (no out-of-sample metric): score "
                                           "challenger and champion on bars from this UTC time, e.g. 2026-10-01"),
    holdout_end: str = typer.Option(None, "--holdout-end", help="end of the holdout (default: the latest bar)"),
    holdout_instruments: list[str] = typer.Option(["EUR_USD"], "--instrument", "-i",
                                                  help="holdout instrument, repeatable"),
    holdout_granularity: str = typer.Option("H1", "--granularity", "-g", help="holdout bar size"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """Move @champion to @challenger if the challenger beats it out of sample; the reason is recorded.

    A version registered or aliased in the MLflow UI carries no out-of-sample metric: promotion then
    refuses and says what to do, or with --holdout-start scores both versions on the same held-out bars.
    """
    from mbats.errors import UsageError
    from mbats.ml.registry import Holdout, promote
    from mbats.specs import check_symbol, finite

    finite(min_improvement, "--min-improvement", -1e6, 1e6)
    holdout = None
    if holdout_start:
        from mbats.cli.options import check_window, parse_when

        start_at, end_at = parse_when(holdout_start, "--holdout-start"), parse_when(holdout_end, "--holdout-end")
        check_window(start_at, end_at, {"start": "--holdout-start", "end": "--holdout-end"})
        for symbol in holdout_instruments:
            try:
                check_symbol(symbol)
            except ValueError as exc:
                raise UsageError(f"--instrument: {exc}") from None
        holdout = Holdout([i.upper() for i in holdout_instruments], holdout_granularity, start_at, end_at)
    elif holdout_end:
        raise UsageError("--holdout-end needs --holdout-start")
    result = promote(name, metric=metric, min_improvement=min_improvement, force=force, holdout=holdout)
    if as_json:
        _print_json(result.as_dict())
        return
    from mbats.cli.output import console

    verdict = "[green]promoted[/]" if result.promoted else "[yellow]not promoted[/]"
    console.print(f"{verdict}: {result.reason}", highlight=False)


@ml_app.command("serve")
def serve_command(
    alias: str = typer.Option("champion", help="registry alias to serve"),
    version: str = typer.Option(None, help="serve this version instead of an alias"),
    name: str = typer.Option(None, help="registered model name (default MBATS_ML_MODEL_NAME)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(5001, help="port to listen on"),
) -> None:
    """Serve the model over REST (POST /invocations, GET /ping) until interrupted."""
    import os

    from mbats.errors import UsageError
    from mbats.ml import registry
    from mbats.ml.serve import serve_command as argv, serve_env

    if not 1 <= port <= 65535:
        raise UsageError(f"--port: must be from 1 to 65535 (got {port})")
    model = registry.model_name(name)
    uri = f"models:/{model}/{version}" if version else registry.resolve(model, alias).alias_uri
    typer.echo(f"serving {uri} on http://{host}:{port}/invocations", err=True)
    command = argv(uri, host, port)
    os.execve(command[0], command, serve_env())
