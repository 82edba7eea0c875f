-- Views over the security master for the data-coverage dashboard (schema `dash`).
-- Applied by mbats.dashboards.views.apply_views() after every `mbats db upgrade`: the schema is
-- dropped and rebuilt in one transaction, so a view may change its columns.
CREATE SCHEMA IF NOT EXISTS dash;

-- Length of one bar of an OANDA granularity code, in seconds (NULL for W and M).
CREATE OR REPLACE FUNCTION dash.granularity_seconds(code text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN code ~ '^S[0-9]+$' THEN substr(code, 2)::int
        WHEN code ~ '^M[0-9]+$' THEN 60 * substr(code, 2)::int
        WHEN code ~ '^H[0-9]+$' THEN 3600 * substr(code, 2)::int
        WHEN code = 'D' THEN 86400
    END
$$;

-- The FX trading day of a bar: the day that ends at 17:00 New York (the OANDA daily alignment),
-- named by the date it ends on. Sunday-evening bars belong to Monday, so the week has five FX
-- days and no weekend stubs (UTC calendar days cut every FX day in two).
CREATE OR REPLACE FUNCTION dash.fx_day(ts timestamptz) RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT ((ts AT TIME ZONE 'America/New_York') + interval '7 hours')::date
$$;

-- Bars per instrument, granularity and FX day. `day` is the FX day (a timestamp at its date, for
-- time axes); `day_label` the same as text, for a category axis that shows only days with bars
-- (the data spans years with long breaks between ranges); `series` names instrument and
-- granularity together, so counts of different bar lengths are never summed.
CREATE OR REPLACE VIEW dash.bars_daily AS
SELECT i.symbol AS instrument, b.granularity, i.symbol || ' ' || b.granularity AS series,
       dash.fx_day(b.ts)::timestamp AS day, to_char(dash.fx_day(b.ts), 'YYYY-MM-DD') AS day_label,
       count(*) AS bars, (86400 / dash.granularity_seconds(b.granularity)) AS expected_bars,
       min(b.ts) AS first_ts, max(b.ts) AS last_ts,
       count(*) FILTER (WHERE b.bid_close IS NOT NULL) AS bars_with_bid_ask,
       round(100.0 * count(*) * dash.granularity_seconds(b.granularity) / 86400.0, 2) AS day_coverage_pct
FROM bars b JOIN instruments i ON i.id = b.instrument_id
GROUP BY i.symbol, b.granularity, dash.fx_day(b.ts);

-- Summary per instrument and granularity.
CREATE OR REPLACE VIEW dash.coverage AS
SELECT i.symbol AS instrument, i.vendor, i.is_synthetic, b.granularity, count(*) AS bars,
       min(b.ts) AS first_ts, max(b.ts) AS last_ts,
       count(DISTINCT dash.fx_day(b.ts)) AS days_with_bars
FROM bars b JOIN instruments i ON i.id = b.instrument_id
GROUP BY i.symbol, i.vendor, i.is_synthetic, b.granularity;

-- Gaps: consecutive bars further apart than one bar, except the weekly FX close
-- (Friday evening to Sunday evening UTC, at most 72 hours). missing_bars counts the bar slots
-- between them. Gaps longer than 30 days are not listed: they separate data ranges (e.g. the
-- sample data and a later download), they are not missing bars (mbats.dashboards.bundle.MAX_GAP_DAYS).
CREATE OR REPLACE VIEW dash.bar_gaps AS
SELECT instrument, granularity, prev_ts AS gap_start, ts AS gap_end,
       extract(epoch FROM ts - prev_ts) / 3600.0 AS gap_hours,
       (extract(epoch FROM ts - prev_ts) / dash.granularity_seconds(granularity))::bigint - 1 AS missing_bars
FROM (
    SELECT i.symbol AS instrument, b.granularity, b.ts,
           lag(b.ts) OVER (PARTITION BY b.instrument_id, b.granularity ORDER BY b.ts) AS prev_ts
    FROM bars b JOIN instruments i ON i.id = b.instrument_id
    WHERE dash.granularity_seconds(b.granularity) IS NOT NULL
) s
WHERE prev_ts IS NOT NULL
  AND extract(epoch FROM ts - prev_ts) > dash.granularity_seconds(granularity)
  AND NOT (extract(isodow FROM prev_ts AT TIME ZONE 'UTC') IN (5, 6, 7)
           AND extract(isodow FROM ts AT TIME ZONE 'UTC') IN (7, 1)
           AND ts - prev_ts <= interval '72 hours')
  AND ts - prev_ts <= interval '30 days';
