import pytest


@pytest.fixture(scope="session")
def sample_data(pg_server):
    """The bundled sample bars, loaded once per session."""
    from mbats.db import connect
    from mbats.secmaster.samples import load_samples

    conn = connect("secmaster")
    try:
        return load_samples(conn)
    finally:
        conn.close()
