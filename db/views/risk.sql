-- Views over the risk database: the only objects Superset's datasets read (schema `dash`).
-- Applied by mbats.dashboards.views.apply_views() after every `mbats db upgrade`: the schema is
-- dropped and rebuilt in one transaction, so a view may change its columns.
-- Dashboards depend on these column names, not on the tables: when a table changes, change the
-- view here and keep its columns (the dataset files in services/superset/bundle are checked
-- against these views by the tests).
CREATE SCHEMA IF NOT EXISTS dash;

-- One row per run, with its key metrics pivoted out of the long-form run_metrics table.
CREATE OR REPLACE VIEW dash.runs AS
SELECT r.id AS run_id,
       -- parameters in the label (key=value, alphabetical) so sweep runs differ in the run picker
       '#' || r.id || ' ' || r.strategy || ' ' || array_to_string(r.instruments, ',') || ' ' || r.granularity
           || coalesce(' ' || (SELECT string_agg(p.key || '=' || p.value, ' ' ORDER BY p.key)
                               FROM jsonb_each_text(CASE WHEN jsonb_typeof(r.params) = 'object' THEN r.params END) p), '')
           || CASE WHEN r.sweep_id IS NOT NULL THEN ' [' || r.sweep_id || ']' ELSE '' END
           -- paper sessions on the OANDA simulator say so wherever a run is named
           || CASE WHEN r.broker ->> 'environment' = 'sim' THEN ' [oanda-sim]' ELSE '' END AS run_label,
       -- where a paper/live run's prices and fills came from (NULL for backtests)
       CASE WHEN r.mode IN ('paper', 'live') THEN 'oanda-' || (r.broker ->> 'environment') END AS source,
       r.run_type, r.mode, r.strategy, r.params::text AS params, array_to_string(r.instruments, ',') AS instruments,
       r.granularity, r.status, r.sweep_id, r.account, r.cash AS start_cash,
       r.started_at, r.finished_at, r.duration_s, r.data_from, r.data_to, r.bars,
       m.total_return_pct, m.annual_return_pct, m.sharpe, m.sortino, m.calmar, m.max_drawdown_pct,
       m.trades, m.win_rate_pct, m.profit_factor, m.expectancy, m.sqn, m.exposure_pct, m.final_value,
       -- every amount of the run (cash, value, P&L, costs, financing) is in this currency
       coalesce(r.broker ->> 'account_currency', 'USD') AS account_currency
FROM runs r
LEFT JOIN LATERAL (
    SELECT max(value) FILTER (WHERE metric = 'total_return_pct')  AS total_return_pct,
           max(value) FILTER (WHERE metric = 'annual_return_pct') AS annual_return_pct,
           max(value) FILTER (WHERE metric = 'sharpe')            AS sharpe,
           max(value) FILTER (WHERE metric = 'sortino')           AS sortino,
           max(value) FILTER (WHERE metric = 'calmar')            AS calmar,
           max(value) FILTER (WHERE metric = 'max_drawdown_pct')  AS max_drawdown_pct,
           max(value) FILTER (WHERE metric = 'trades')            AS trades,
           max(value) FILTER (WHERE metric = 'win_rate_pct')      AS win_rate_pct,
           max(value) FILTER (WHERE metric = 'profit_factor')     AS profit_factor,
           max(value) FILTER (WHERE metric = 'expectancy')        AS expectancy,
           max(value) FILTER (WHERE metric = 'sqn')               AS sqn,
           max(value) FILTER (WHERE metric = 'exposure_pct')      AS exposure_pct,
           max(value) FILTER (WHERE metric = 'final_value')       AS final_value
    FROM run_metrics rm WHERE rm.run_id = r.id
) m ON true;

-- Equity curve and drawdown of every run.
CREATE OR REPLACE VIEW dash.equity AS
SELECT e.run_id, d.run_label, d.mode, e.ts, e.value, e.cash, e.drawdown_pct,
       100.0 * (e.value / NULLIF(first_value(e.value) OVER (PARTITION BY e.run_id ORDER BY e.ts), 0) - 1.0) AS return_pct,
       e.margin_used, d.account_currency
FROM equity e JOIN dash.runs d USING (run_id);

-- Round-trip trades.
CREATE OR REPLACE VIEW dash.trades AS
SELECT t.run_id, d.run_label, d.mode, t.instrument, t.direction, t.size, t.entry_ts, t.entry_price,
       t.exit_ts, t.exit_price, t.pnl, t.pnl_net, t.commission, t.return_pct, t.mfe_pct, t.mae_pct,
       t.bars_held, t.is_open,
       CASE WHEN t.is_open THEN 'open' WHEN t.pnl_net > 0 THEN 'win' WHEN t.pnl_net < 0 THEN 'loss' ELSE 'flat' END AS outcome,
       t.financing, d.account_currency
FROM trades t JOIN dash.runs d USING (run_id);

-- Daily financing (17:00 New York rollovers) booked by backtests and paper/live runs alike:
-- amount in the run's account currency, amount_quote in the instrument's quote currency.
CREATE OR REPLACE VIEW dash.financing AS
SELECT f.run_id, d.run_label, d.mode, f.ts, f.instrument, f.units, f.price, f.annual_rate, f.days,
       f.amount_quote, f.fx_rate, f.amount, d.account_currency
FROM financing f JOIN dash.runs d USING (run_id);

-- Net position (signed units, shorts negative) per instrument over time, rebuilt from trade
-- entries and exits: one row per (run, instrument, ts) holding the position after every event at
-- that moment, so a long-to-short flip at one timestamp is one row with the new (negative) size.
CREATE OR REPLACE VIEW dash.exposure AS
SELECT DISTINCT ON (run_id, instrument, ts) run_id, run_label, instrument, ts, net_units, gross_notional
FROM (
    SELECT run_id, run_label, instrument, ts,
           sum(delta) OVER w AS net_units, sum(notional) OVER w AS gross_notional,
           row_number() OVER w AS seq
    FROM (
        SELECT t.run_id, d.run_label, t.instrument, t.entry_ts AS ts,
               CASE WHEN t.direction = 'short' THEN -t.size ELSE t.size END AS delta, t.size * t.entry_price AS notional
        FROM trades t JOIN dash.runs d USING (run_id)
        UNION ALL
        SELECT t.run_id, d.run_label, t.instrument, t.exit_ts,
               CASE WHEN t.direction = 'short' THEN t.size ELSE -t.size END, -t.size * t.entry_price
        FROM trades t JOIN dash.runs d USING (run_id) WHERE t.exit_ts IS NOT NULL
    ) events
    WINDOW w AS (PARTITION BY run_id, instrument ORDER BY ts, delta ROWS UNBOUNDED PRECEDING)
) positions
ORDER BY run_id, instrument, ts, seq DESC;

-- Parameter sweeps: one row per run of a sweep, its first two parameters (alphabetical) pulled
-- out for heatmaps, and its rank by Sharpe within the sweep.
CREATE OR REPLACE VIEW dash.sweep_results AS
SELECT d.run_id, d.run_label, d.sweep_id, d.strategy, d.instruments, d.granularity, d.status, d.params,
       k.keys[1] AS param_1_name, r.params ->> k.keys[1] AS param_1,
       k.keys[2] AS param_2_name, r.params ->> k.keys[2] AS param_2,
       d.total_return_pct, d.sharpe, d.sortino, d.max_drawdown_pct, d.trades, d.win_rate_pct, d.profit_factor,
       d.started_at,
       rank() OVER (PARTITION BY d.sweep_id ORDER BY d.sharpe DESC NULLS LAST) AS sharpe_rank
FROM dash.runs d
JOIN runs r ON r.id = d.run_id
CROSS JOIN LATERAL (SELECT array(SELECT jsonb_object_keys(r.params) ORDER BY 1) AS keys) k
WHERE d.sweep_id IS NOT NULL;

-- Live and paper trading ----------------------------------------------------------------------

-- Latest position per (run, instrument) of paper/live runs, open ones only. `notional` (units x
-- price) is in the instrument's quote currency; `unrealized_pnl` (units x price move, converted at
-- the bar's rate) is in the account currency, so dash.live_pnl_today can sum it across pairs.
CREATE OR REPLACE VIEW dash.live_positions AS
SELECT p.run_id, d.run_label, d.mode, d.account, p.instrument, p.ts, p.size, p.avg_price, p.market_price,
       p.unrealized_pnl, abs(p.size) * coalesce(p.market_price, p.avg_price) AS notional,
       split_part(p.instrument, '_', 2) AS quote_currency, d.account_currency
FROM (SELECT DISTINCT ON (run_id, instrument) * FROM positions ORDER BY run_id, instrument, ts DESC) p
JOIN dash.runs d USING (run_id)
WHERE d.mode IN ('paper', 'live') AND p.size <> 0;

-- Orders and fills of paper/live runs created today (UTC).
CREATE OR REPLACE VIEW dash.live_orders_today AS
SELECT o.run_id, d.run_label, d.mode, o.order_ref, o.client_order_id, o.instrument, o.created_at, o.side,
       o.order_type, o.size, o.price, o.status, o.updated_at
FROM orders o JOIN dash.runs d USING (run_id)
WHERE d.mode IN ('paper', 'live') AND o.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';

CREATE OR REPLACE VIEW dash.live_fills_today AS
SELECT f.run_id, d.run_label, d.mode, f.fill_id, f.order_ref, f.instrument, f.ts, f.size, f.price, f.commission,
       abs(f.size) * f.price AS notional
FROM fills f JOIN dash.runs d USING (run_id)
WHERE d.mode IN ('paper', 'live') AND f.ts >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';

-- P&L today per paper/live run: change of account value since the last value before today (UTC).
CREATE OR REPLACE VIEW dash.live_pnl_today AS
WITH day AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start)
SELECT d.run_id, d.run_label, d.mode, d.source, d.account, d.status,
       coalesce(prev.value, first_today.value, d.start_cash) AS value_start,
       coalesce(last.value, prev.value, d.start_cash) AS value_now,
       coalesce(last.value, prev.value, d.start_cash) - coalesce(prev.value, first_today.value, d.start_cash) AS pnl_today,
       coalesce(last.drawdown_pct, 0) AS drawdown_pct,
       (SELECT coalesce(sum(t.pnl_net), 0) FROM trades t, day WHERE t.run_id = d.run_id AND t.exit_ts >= day.start) AS realized_today,
       (SELECT coalesce(sum(p.unrealized_pnl), 0) FROM dash.live_positions p WHERE p.run_id = d.run_id) AS unrealized,
       last.ts AS updated_at, d.account_currency,
       -- the session's state (mbats live status): its runner, the account's kill switch, why it stopped,
       -- and a stop/flatten request it has not picked up yet
       r.broker -> 'process' ->> 'host' || ':' || (r.broker -> 'process' ->> 'pid') AS runner,
       CASE WHEN ks.tripped THEN 'TRIPPED' WHEN ks.account_key IS NOT NULL THEN 'ok' END AS kill_switch,
       coalesce(r.broker -> 'stop' ->> 'reason', r.broker -> 'stop' ->> 'signal', r.error) AS stop_reason,
       (SELECT string_agg(c.command, ',' ORDER BY c.id) FROM live_control c
         WHERE c.run_id = d.run_id AND c.handled_at IS NULL) AS pending_command
FROM dash.runs d
CROSS JOIN day
JOIN runs r ON r.id = d.run_id
LEFT JOIN live_kill_switch ks ON ks.account_key = r.broker ->> 'account_key'
LEFT JOIN LATERAL (SELECT value, ts, drawdown_pct FROM equity e WHERE e.run_id = d.run_id ORDER BY ts DESC LIMIT 1) last ON true
LEFT JOIN LATERAL (SELECT value FROM equity e WHERE e.run_id = d.run_id AND e.ts < day.start ORDER BY ts DESC LIMIT 1) prev ON true
LEFT JOIN LATERAL (SELECT value FROM equity e WHERE e.run_id = d.run_id AND e.ts >= day.start ORDER BY ts LIMIT 1) first_today ON true
WHERE d.mode IN ('paper', 'live');

-- Risk-limit events (breaches, blocked orders, kill switch). The live engine owns the
-- `risk_events` table (ts, run_id, rule, instrument, detail, action); until it exists this view
-- is empty with the same columns, and the next `mbats db upgrade` points it at the table.
DO $$
BEGIN
    IF to_regclass('public.risk_events') IS NOT NULL THEN
        EXECUTE $v$
            CREATE OR REPLACE VIEW dash.risk_events AS
            SELECT e.ts::timestamptz AS ts, e.run_id::bigint AS run_id, d.run_label, d.mode, e.rule::text AS rule, e.instrument::text AS instrument,
                   e.detail::text AS detail, e.action::text AS action
            FROM public.risk_events e LEFT JOIN dash.runs d ON d.run_id = e.run_id
        $v$;
    ELSE
        EXECUTE $v$
            CREATE OR REPLACE VIEW dash.risk_events AS
            SELECT NULL::timestamptz AS ts, NULL::bigint AS run_id, NULL::text AS run_label, NULL::text AS mode,
                   NULL::text AS rule, NULL::text AS instrument, NULL::text AS detail, NULL::text AS action
            WHERE false
        $v$;
    END IF;
END
$$;

-- Risk-limit status per rule: events today and the last action taken.
CREATE OR REPLACE VIEW dash.risk_status AS
SELECT rule, count(*) AS events_today, max(ts) AS last_event_at,
       (array_agg(action ORDER BY ts DESC))[1] AS last_action,
       (array_agg(run_label ORDER BY ts DESC))[1] AS last_run
FROM dash.risk_events
WHERE ts >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY rule;

-- End-of-day risk (mbats.risk.eod: the eod_risk DAG / `mbats risk eod`) --------------------------

-- Every stored result, one row per (day, scope, kind, name); `as_of` as a timestamp for time axes.
-- Money is in the account currency unless `unit` says otherwise (run-scope VaR is % of equity).
CREATE OR REPLACE VIEW dash.eod_risk AS
SELECT e.as_of::timestamp AS as_of, e.scope, e.kind, e.name, e.value,
       coalesce(e.details ->> 'unit', 'USD') AS unit,
       (e.details ->> 'confidence')::double precision AS confidence,
       (e.details ->> 'scenarios')::int AS scenarios,
       (e.details ->> 'reliable')::boolean AS reliable,
       e.details ->> 'description' AS description,
       e.computed_at
FROM eod_risk e;

-- The latest day's results only (tables of "today's" stress and exposure).
CREATE OR REPLACE VIEW dash.eod_risk_latest AS
SELECT r.* FROM dash.eod_risk r
WHERE r.as_of = (SELECT max(as_of) FROM dash.eod_risk);

-- Research results (mbats.risk.research: `mbats walkforward` / the walk_forward DAG, `mbats montecarlo`) ---

-- One row per walk-forward optimisation: settings, in-sample vs out-of-sample summary, and the
-- metrics of its stitched out-of-sample equity. `wf_label` names it in pickers and on every
-- walk-forward view (the dashboard's filter column).
CREATE OR REPLACE VIEW dash.walk_forwards AS
SELECT w.wf_id, w.wf_id || ' · ' || w.strategy || ' ' || array_to_string(w.instruments, ',') || ' ' || w.granularity
           || ' · ' || CASE WHEN w.anchored THEN 'anchored ' ELSE 'rolling ' END || w.train || ' / ' || w.test AS wf_label,
       w.strategy, array_to_string(w.instruments, ',') AS instruments, w.granularity, w.rank_by, w.train, w.test,
       CASE WHEN w.anchored THEN 'anchored' ELSE 'rolling' END AS window_mode, w.grid::text AS grid,
       w.windows, w.is_mean, w.oos_mean, w.degradation, w.efficiency,
       (w.metrics ->> 'total_return_pct')::double precision AS oos_return_pct,
       (w.metrics ->> 'sharpe')::double precision AS oos_sharpe,
       (w.metrics ->> 'max_drawdown_pct')::double precision AS oos_max_drawdown_pct,
       (w.metrics ->> 'trades')::double precision AS oos_trades,
       (w.metrics ->> 'final_value')::double precision AS oos_final_value,
       w.seconds, w.status, w.created_at, w.finished_at, w.mlflow_run_id
FROM walk_forwards w;

-- Per instrument and window: the configuration chosen in-sample and its in-sample and
-- out-of-sample scores (the walk-forward's rank_by metric). `window_label` sorts in time order.
CREATE OR REPLACE VIEW dash.walk_forward_windows AS
SELECT x.wf_id, f.wf_label, f.rank_by, x.instrument, x.window_no,
       to_char(x.test_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' ' || x.instrument || ' #' || x.window_no AS window_label,
       x.train_start, x.train_end, x.test_start, x.test_end,
       (SELECT string_agg(p.key || '=' || p.value, ' ' ORDER BY p.key)
          FROM jsonb_each_text(CASE WHEN jsonb_typeof(x.params) = 'object' THEN x.params END) p) AS params,
       x.is_score, x.oos_score, x.is_score - x.oos_score AS score_drop,
       (x.oos_metrics ->> 'total_return_pct')::double precision AS oos_return_pct,
       (x.is_metrics ->> 'total_return_pct')::double precision AS is_return_pct,
       x.oos_trades
FROM walk_forward_windows x JOIN dash.walk_forwards f USING (wf_id);

-- The stitched out-of-sample account value per instrument (and ALL: the instruments on one
-- account), with its drawdown below the running peak in percent (negative, as dash.equity).
CREATE OR REPLACE VIEW dash.walk_forward_equity AS
SELECT e.wf_id, f.wf_label, e.instrument, e.ts, e.value,
       100.0 * (e.value / NULLIF(max(e.value) OVER w, 0) - 1.0) AS drawdown_pct
FROM walk_forward_equity e JOIN dash.walk_forwards f USING (wf_id)
WINDOW w AS (PARTITION BY e.wf_id, e.instrument ORDER BY e.ts ROWS UNBOUNDED PRECEDING);

-- One row per Monte Carlo simulation of a run: p5/p50/p95 of final equity and max drawdown over
-- the paths beside the run's own figures. `mc_label` names it (the dashboard's filter column).
CREATE OR REPLACE VIEW dash.montecarlo AS
SELECT m.id AS mc_id, m.run_id, d.run_label,
       'MC ' || m.id || ' · run ' || d.run_label || ' · ' || m.method
           || CASE WHEN m.method = 'blocks' THEN ' ' || m.block_days || 'd' ELSE '' END
           || ' · ' || m.paths || ' paths · seed ' || m.seed AS mc_label,
       m.method, m.paths, m.seed, m.block_days, m.samples, m.start_cash,
       m.final_equity_p5, m.final_equity_p50, m.final_equity_p95,
       m.max_drawdown_pct_p5, m.max_drawdown_pct_p50, m.max_drawdown_pct_p95,
       m.prob_loss, 100.0 * m.prob_loss AS prob_loss_pct,
       m.run_final_equity, m.run_max_drawdown_pct, m.seconds, m.created_at, d.account_currency
FROM montecarlo m JOIN dash.runs d USING (run_id);

-- The 1..99 percentiles of a simulation's final equity and max drawdown, one row per percentile.
-- The 99 values are equally likely quantiles, so a histogram of them draws the distribution's shape.
CREATE OR REPLACE VIEW dash.montecarlo_percentiles AS
SELECT m.mc_id, m.mc_label, m.run_id, m.run_label, q.key::int AS percentile,
       q.value::double precision AS final_equity,
       (p.percentiles -> 'max_drawdown_pct' ->> q.key)::double precision AS max_drawdown_pct,
       m.start_cash, m.run_final_equity, m.run_max_drawdown_pct
FROM dash.montecarlo m
JOIN montecarlo p ON p.id = m.mc_id
CROSS JOIN LATERAL jsonb_each_text(p.percentiles -> 'final_equity') q;
