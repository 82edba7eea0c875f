"""`mbats dashboards …`: keep the Superset bundle in step with the `dash` views.

``python -m mbats.cli.dashboards`` runs the group on its own (`make superset-bundle` does).
"""

from __future__ import annotations

import typer

from mbats.cli.app import group

dashboards_app = group(help="Superset dashboards as code (services/superset/bundle).")


@dashboards_app.command("bundle")
def bundle_cmd(check: bool = typer.Option(False, "--check", help="only report files that differ; exit 1 if any")) -> None:
    """Regenerate the bundle from the spec and the live `dash` views (migrates first)."""
    from mbats.dashboards import bundle
    from mbats.db.migrate import upgrade_all

    upgrade_all()
    columns = bundle.live_view_columns()
    errors = bundle.chart_column_errors(columns)
    if errors:
        for e in errors:
            typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1)
    files = bundle.generate(columns)
    if check:
        problems = bundle.check(files)
        for p in problems:
            typer.echo(p)
        if problems:
            typer.echo("bundle out of date: run `mbats dashboards bundle`", err=True)
            raise typer.Exit(1)
        typer.echo(f"bundle up to date ({len(files)} files)")
        return
    written = bundle.write(files)
    typer.echo(f"wrote {len(written)} files to {bundle.BUNDLE_DIR}")


@dashboards_app.command("views")
def views_cmd() -> None:
    """Rebuild the `dash` views and the read-only role's grants."""
    from mbats.dashboards.views import apply_views

    for database, views in apply_views().items():
        typer.echo(f"{database}: {', '.join(views)}")


if __name__ == "__main__":
    from mbats.cli.main import run

    run(application=dashboards_app, prog_name="mbats dashboards")
