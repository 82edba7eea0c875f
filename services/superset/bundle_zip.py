"""Zip services/superset/bundle for `superset import-dashboards`, with the real database URIs.

Runs in Superset's own environment (standard library + PyYAML only, no `mbats` import). The
committed database files carry a placeholder URI; here each becomes
``$MBATS_SUPERSET_DATA_URL/<database>``, the read-only role's server URL (password included),
e.g. ``postgresql://mbats_superset:pw@postgres:5432``. Database names: ``MBATS_RISK_DB`` and
``MBATS_SECMASTER_DB`` (default ``risk`` and ``secmaster``).

    python bundle_zip.py OUT.zip [BUNDLE_DIR]
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = "mbats_dashboards"
DB_NAMES = {"risk": ("MBATS_RISK_DB", "risk"), "secmaster": ("MBATS_SECMASTER_DB", "secmaster")}


def database_uri(stem: str, data_url: str) -> str:
    env, default = DB_NAMES[stem]
    server = data_url.rstrip("/")
    for prefix in ("postgresql://", "postgres://"):
        if server.startswith(prefix):
            server = "postgresql+psycopg2://" + server[len(prefix):]
    return f"{server}/{os.environ.get(env) or default}"


def build(out: Path, bundle: Path = HERE / "bundle", data_url: str | None = None) -> Path:
    data_url = data_url or os.environ.get("MBATS_SUPERSET_DATA_URL", "").strip()
    if not data_url:
        raise SystemExit("MBATS_SUPERSET_DATA_URL is not set (read-only role's server URL, "
                         "e.g. postgresql://mbats_superset:PASSWORD@postgres:5432)")
    files = sorted(p for p in bundle.rglob("*.yaml"))
    if not files:
        raise SystemExit(f"no YAML files under {bundle}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            rel = path.relative_to(bundle)
            text = path.read_text()
            if rel.parts[0] == "databases":
                config = yaml.safe_load(text)
                config["sqlalchemy_uri"] = database_uri(path.stem, data_url)
                text = yaml.safe_dump(config, sort_keys=False)
            zf.writestr(f"{ROOT}/{rel.as_posix()}", text)
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    print(build(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else HERE / "bundle"))
