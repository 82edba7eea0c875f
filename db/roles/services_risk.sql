-- risk: the runner records runs and their results (a resumed run rewrites its rows, hence DELETE).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {runner};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {runner};
REVOKE CONNECT ON DATABASE {database} FROM {loader}, {sim};
