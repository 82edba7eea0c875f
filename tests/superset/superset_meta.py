"""Superset metadata DB helpers for the tests."""

from __future__ import annotations


def _snapshot(metadata_db: str) -> dict:
    """What an import controls, without timestamps: databases, datasets+columns, charts, dashboards."""
    from mbats.db import connect

    conn = connect(metadata_db)
    try:
        with conn.cursor() as cur:
            out = {}
            for name, query in {
                "dbs": "SELECT id, uuid::text, database_name, sqlalchemy_uri FROM dbs ORDER BY id",
                "tables": "SELECT id, uuid::text, table_name, schema, database_id FROM tables ORDER BY id",
                "columns": "SELECT table_id, column_name, type, is_dttm FROM table_columns ORDER BY table_id, column_name",
                "slices": "SELECT id, uuid::text, slice_name, viz_type, datasource_id, params FROM slices ORDER BY id",
                "dashboards": "SELECT id, uuid::text, slug, dashboard_title, position_json, json_metadata "
                              "FROM dashboards ORDER BY id",
                "dashboard_slices": "SELECT dashboard_id, slice_id FROM dashboard_slices ORDER BY 1, 2",
            }.items():
                cur.execute(query)
                out[name] = cur.fetchall()
            return out
    finally:
        conn.close()
