"""Skip init work whose inputs did not change (``make stack-up`` on a warm stack).

An init step (Airflow's ``db migrate``, Superset's upgrade/admin/roles/dashboards import) is
described by a digest of everything it depends on: the installed versions (lock files), the files
it reads (config, dashboards bundle), the settings it uses (passwords only as part of the hash) and
a fingerprint of the database it writes (the database's oid and its alembic revision, so a
recreated or wiped database runs the init again). The digest of the last successful run is kept in
``MBATS_STACK_DIR/stamps/<name>``; the step runs again only when the digest differs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg2


def digest(*parts: str | bytes | Path) -> str:
    """sha256 over strings, bytes and files (a folder: every file under it, by relative path)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                           and p.suffix != ".pyc") if part.is_dir() else [part]
            for f in files:
                h.update(str(f.relative_to(part) if part.is_dir() else f.name).encode() + b"\0")
                h.update(f.read_bytes() if f.exists() else b"<missing>")
                h.update(b"\0")
        else:
            h.update(part if isinstance(part, bytes) else part.encode())
            h.update(b"\0")
    return h.hexdigest()


def installed(venv: Path, *distributions: str) -> str:
    """Names (with versions) of the installed dist-info folders of ``distributions`` in ``venv``."""
    found = []
    for site in sorted(venv.glob("lib/python*/site-packages")):
        for dist in distributions:
            found += sorted(p.name for p in site.glob(f"{dist}-*.dist-info"))
    return " ".join(found) or f"<none of {distributions} in {venv}>"


def database_fingerprint(url: str, *queries: str) -> str:
    """The database's oid, its alembic revision and the answers of ``queries`` ("" when unreachable)."""
    url = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        conn = psycopg2.connect(url, connect_timeout=10)
    except psycopg2.Error:
        return "<unreachable>"
    try:
        conn.autocommit = True
        out = []
        with conn.cursor() as cur:
            cur.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
            out.append(str(cur.fetchone()[0]))
            for query in ("SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version", *queries):
                try:
                    cur.execute(query)
                    out.append(repr(cur.fetchall()))
                except psycopg2.Error:  # no such table yet: a fresh database
                    out.append("<none>")
        return "|".join(out)
    finally:
        conn.close()


class Stamp:
    def __init__(self, folder: Path, name: str):
        self.path = folder / "stamps" / name

    def fresh(self, value: str) -> bool:
        return self.path.exists() and self.path.read_text().strip() == value

    def record(self, value: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(value + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
