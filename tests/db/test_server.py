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


def test_configured_database_names_are_where_migrations_and_writers_meet(pg_server, monkeypatch):
    """MBATS_RISK_DB / MBATS_SECMASTER_DB rename the databases for migrations and writers alike."""
    from mbats.db.migrate import upgrade_all

    monkeypatch.setenv("MBATS_RISK_DB", "risk_renamed")
    monkeypatch.setenv("MBATS_SECMASTER_DB", "secmaster_renamed")
    reset_settings_cache()
    db.dispose_engines()
    try:
        created = upgrade_all()
        assert created.get("risk_renamed") is True and created.get("secmaster_renamed") is True
        for logical, real, table in (("risk", "risk_renamed", "runs"), ("secmaster", "secmaster_renamed", "bars")):
            with db.connect(logical) as conn, conn.cursor() as cur:
                cur.execute("SELECT current_database(), to_regclass(%s) IS NOT NULL", (table,))
                assert cur.fetchone() == (real, True)
            with db.engine(logical).connect() as conn:
                assert conn.exec_driver_sql("SELECT current_database()").scalar() == real
    finally:
        monkeypatch.undo()
        reset_settings_cache()
        db.dispose_engines()
        conn = db.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS risk_renamed WITH (FORCE)")
            cur.execute("DROP DATABASE IF EXISTS secmaster_renamed WITH (FORCE)")
        conn.close()
