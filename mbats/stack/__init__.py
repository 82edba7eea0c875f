"""The MBATS stack as local processes (no Docker): embedded PostgreSQL, an S3 server (SeaweedFS),
MLflow, Airflow, Superset and the OANDA simulator under supervisord, started by the same start
scripts as the containers in docker-compose.yml. ``python -m mbats.stack up|down|status``.
"""
