-- Read-only access for Superset to one database: SELECT on the `dash` views, nothing else.
-- Applied to the risk and secmaster databases by mbats.dashboards.views.apply_views(), after the
-- views, with {role} replaced by the quoted role name (MBATS_SUPERSET_DB_USER). The views run
-- with their owner's rights, so the role needs no right on the tables behind them.
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA dash TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA dash TO {role};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dash TO {role};
-- Read-only means no scratch space either: TEMP is a PUBLIC right by default, so it is taken from
-- PUBLIC (the database owner keeps it; the writer that migrates gets it back explicitly, as bar
-- loads stage through a temporary table). A warning, not an error, where we may not change it.
REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC;
GRANT TEMPORARY ON DATABASE {database} TO CURRENT_USER;
-- A dashboard query may not hold the database for long; a timeout the role cannot exceed by default.
DO $$
BEGIN
    EXECUTE 'ALTER ROLE {role} SET statement_timeout = ''60s''';
    EXECUTE 'ALTER ROLE {role} SET idle_in_transaction_session_timeout = ''60s''';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'cannot set timeouts on the read-only role (not a superuser or CREATEROLE)';
END
$$;
