-- One login role per kind of service, each with only the rights it needs. Applied to the risk and
-- secmaster databases by mbats.db.roles.apply_service_roles() after every migration (so new tables
-- are covered), with {database}, {runner}, {loader}, {sim} replaced by quoted names. Only the
-- migrating role owns schemas and tables: no service role may CREATE, ALTER, DROP or TRUNCATE.
--
--   runner  strategy runners, backtests, sweeps: read bars; write runs and their results (risk)
--   loader  market-data downloads and file imports: write bars, instruments, loads (secmaster);
--           TEMP for the COPY staging table; nothing in risk
--   sim     the OANDA simulator: read bars, nothing else (mlflow-serving needs no database at all)
REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE {database} TO {runner}, {loader}, {sim};
GRANT USAGE ON SCHEMA public TO {runner}, {loader}, {sim};
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {runner}, {loader}, {sim};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {runner}, {loader}, {sim};
