-- secmaster: everyone reads bars; only the loader writes them.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {runner}, {loader}, {sim};
GRANT INSERT, UPDATE ON bars, instruments, loads TO {loader};
GRANT DELETE ON loads TO {loader};  -- a re-load that changed nothing drops its empty load row
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {loader};
GRANT TEMPORARY ON DATABASE {database} TO {loader};
-- financing and margin terms are reference data, loaded like instruments (`mbats data financing load`)
GRANT INSERT, UPDATE ON instrument_financing TO {loader};
