-- Read-only access for Superset to one database: SELECT on the `dash` views, nothing else.
-- Applied to the risk and secmaster databases by mbats.dashboards.views.apply_views(), after the
-- views, with {role} replaced by the quoted role name (MBATS_SUPERSET_DB_USER). The views run
-- with their owner's rights, so the role needs no right on the tables behind them.
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA dash TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA dash TO {role};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dash TO {role};
