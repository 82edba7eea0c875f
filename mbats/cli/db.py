"""`mbats db …`: create, migrate and stop the platform's databases."""

from __future__ import annotations

import typer

from mbats.cli.app import group

app = group(help="Create and migrate the secmaster and risk databases; manage the embedded PostgreSQL.")


@app.command("upgrade")
def upgrade() -> None:
    """Create the secmaster, risk and mlflow databases if missing and migrate them to the latest schema."""
    from mbats.cli.output import console
    from mbats.db import server_url
    from mbats.db.migrate import upgrade_all

    created = upgrade_all()
    for name, new in created.items():
        console.print(f"{name}: {'created and ' if new else ''}migrated to head")
    console.print(f"server: {server_url().split('@')[-1]}")


@app.command("stop")
def stop() -> None:
    """Stop the embedded PostgreSQL (its data stays under MBATS_HOME/pgdata)."""
    from mbats.cli.output import console
    from mbats.config import get_settings
    from mbats.db.embedded import stop as stop_server

    settings = get_settings()
    if settings.database_url:
        console.print("MBATS_DATABASE_URL names an external server; nothing to stop")
        return
    console.print("stopped" if stop_server(settings.home / "pgdata") else "not running")


@app.command("url")
def url(database: str = typer.Argument("risk", help="database name")) -> None:
    """Print the SQLAlchemy URL of a database, password masked (starts the embedded server if needed).

    The embedded server's password is in MBATS_HOME/pgpass (readable by you only); for an external
    server it is the one in MBATS_DATABASE_URL.
    """
    from mbats.db import database_url, make_url

    print(make_url(database_url(database)).render_as_string(hide_password=True))
