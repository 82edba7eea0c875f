"""Which PostgreSQL MBATS uses: the configured server, or the embedded one it starts itself."""

from mbats import db
from mbats.config import reset_settings_cache


def test_a_configured_server_is_used_and_nothing_is_started(pg_server, monkeypatch, tmp_path):
    monkeypatch.setenv("MBATS_DATABASE_URL", pg_server)
    monkeypatch.setenv("MBATS_HOME", str(tmp_path))
    reset_settings_cache()
    try:
        assert db.server_url() == pg_server
        conn = db.connect("risk")
        conn.close()
        assert not (tmp_path / "pgdata").exists()
    finally:
        monkeypatch.undo()
        reset_settings_cache()


def test_embedded_server_is_reused_and_keeps_its_data_local(pg_server, mbats_home):
    assert db.server_url() == pg_server
    assert (mbats_home / "pgdata" / "PG_VERSION").exists()
    with db.connect("postgres") as conn, conn.cursor() as cur:
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone()[0] == "127.0.0.1"
        cur.execute("SELECT datname FROM pg_database")
        assert {"secmaster", "risk", "mlflow"} <= {r[0] for r in cur.fetchall()}
