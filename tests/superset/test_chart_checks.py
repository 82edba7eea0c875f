"""The axis checks themselves (chart_checks), on hand-made renderings: they flag the old defects."""

from __future__ import annotations

from chart_checks import Rendered, axis_problems

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 UTC, ms


def _equity_chart():
    from mbats.dashboards.bundle import dashboards

    return next(c for d in dashboards() for row in d.rows for c in row if c.name == "Equity")


def _payload(values):
    return {"result": [{"colnames": ["ts", "account value"], "coltypes": [2, 0],
                        "data": [{"ts": T0 + i * DAY, "account value": v} for i, v in enumerate(values)]}]}


def _rendered(values, y_extent, x_extent=(T0, T0 + 2 * DAY), x_type="time", texts=(), text=""):
    inst = {"x": [{"type": x_type, "scale": x_type, "extent": list(x_extent), "categories": None}],
            "y": [{"type": "value", "scale": "interval", "extent": list(y_extent), "categories": None}],
            "series": [{"type": "line", "name": "run", "data": [[T0 + i * DAY, v] for i, v in enumerate(values)]}],
            "texts": list(texts)}
    return Rendered(1, "Equity", "echarts_timeseries_line", "Equity" + text, 1, [inst])


VALUES = [10_000.0, 10_030.0, 9_970.0]


def test_a_fitted_equity_axis_passes():
    assert axis_problems(_equity_chart(), _rendered(VALUES, (9_960, 10_040)), _payload(VALUES), True) == []


def test_an_equity_axis_from_zero_is_a_flat_line():
    problems = axis_problems(_equity_chart(), _rendered(VALUES, (0, 12_000)), _payload(VALUES), True)
    assert len(problems) == 1 and "drawn flat" in problems[0]


def test_an_axis_that_cuts_the_data_off_or_a_short_time_axis():
    cut = axis_problems(_equity_chart(), _rendered(VALUES, (9_980, 10_040)), _payload(VALUES), True)
    assert any("does not bracket" in p for p in cut)
    short = axis_problems(_equity_chart(), _rendered(VALUES, (9_960, 10_040), x_extent=(T0, T0 + DAY)),
                         _payload(VALUES), True)
    assert any("does not span" in p for p in short)
    category = axis_problems(_equity_chart(), _rendered(VALUES, (9_960, 10_040), x_type="category"),
                             _payload(VALUES), True)
    assert any("x-axis is 'category'" in p for p in category)


def test_overlapping_labels_and_no_results_are_reported():
    texts = [{"text": "2024-01-01", "x": 10, "y": 100, "w": 60, "h": 12},
             {"text": "2024-01-02", "x": 30, "y": 101, "w": 60, "h": 12},
             {"text": "2024-01-03", "x": 200, "y": 100, "w": 60, "h": 12}]
    problems = axis_problems(_equity_chart(), _rendered(VALUES, (9_960, 10_040), texts=texts), _payload(VALUES), True)
    assert problems == ["'Equity': labels drawn on top of each other: ('2024-01-01', '2024-01-02')"]
    empty = axis_problems(_equity_chart(), _rendered(VALUES, (9_960, 10_040), text="\nNo results"), _payload(VALUES),
                          True)
    assert any("No results" in p for p in empty)


def test_a_number_x_axis_is_ranged_apart_from_the_values():
    """The Monte Carlo quantile curve: x is the percentile 1..99 (a number), y the final equity. The
    percentiles are not y values (an axis fitted to 99,000..101,000 is right), but an x-axis that
    stops short of percentile 99 is flagged."""
    from mbats.dashboards.bundle import dashboards

    chart = next(c for d in dashboards() for row in d.rows for c in row
                 if c.name.startswith("Final equity by percentile"))
    values = {q: 99_000.0 + 20 * q for q in range(1, 100)}
    payload = {"result": [{"colnames": ["percentile", "simulated"], "coltypes": [0, 0],
                           "data": [{"percentile": q, "simulated": v} for q, v in values.items()]}]}

    def rendered(x_extent):
        inst = {"x": [{"type": "value", "scale": "interval", "extent": list(x_extent), "categories": None}],
                "y": [{"type": "value", "scale": "interval", "extent": [99_000, 101_000], "categories": None}],
                "series": [{"type": "line", "name": "simulated", "data": [[q, v] for q, v in values.items()]}],
                "texts": []}
        return Rendered(1, chart.name, chart.viz_type, chart.name, 1, [inst])

    assert axis_problems(chart, rendered((1, 99)), payload, False) == []
    short = axis_problems(chart, rendered((1, 50)), payload, False)
    assert len(short) == 1 and "number x-axis" in short[0]
