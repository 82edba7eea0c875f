"""The MLflow artifacts of a sweep's parent run: every configuration's scores (csv) and, for a grid of
two varied parameters, an SVG heatmap of the ranking metric — written once per sweep, so they cost one
plot and one upload whatever the grid size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def varied(scores: pd.DataFrame, params: list[str]) -> list[str]:
    """The grid's parameters that take more than one value."""
    return [p for p in params if p in scores and scores[p].nunique(dropna=True) > 1]


# viridis at 0, .25, .5, .75, 1 (matplotlib's colours, without importing matplotlib: ~1 s a sweep)
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def _colour(t: float) -> str:
    if t != t:  # NaN: no score
        return "#dddddd"
    t = min(max(t, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return "#" + "".join(f"{round(x + (y - x) * (t - i)):02x}" for x, y in zip(a, b))


def heatmap(scores: pd.DataFrame, x: str, y: str, value: str, title: str, path: Path) -> Path:
    """``value`` over the (x, y) grid as an SVG (MLflow's artifact view shows it); cells of several
    configurations (other parameters varied too) show their best; hover a cell for its value."""
    from xml.sax.saxutils import escape

    grid = scores.pivot_table(index=y, columns=x, values=value, aggfunc="max").sort_index().sort_index(axis=1)
    values = grid.to_numpy(dtype="float64")
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = (high - low) or 1.0
    cell, left, top = 28, 70, 40
    width, height = left + cell * grid.shape[1] + 120, top + cell * grid.shape[0] + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11">', f'<text x="{left}" y="20" font-size="13">{escape(title)}</text>']
    for r, row_label in enumerate(grid.index[::-1]):  # the lowest y at the bottom
        row = values[grid.shape[0] - 1 - r]
        out.append(f'<text x="{left - 6}" y="{top + r * cell + cell / 2 + 4}" text-anchor="end">{escape(str(row_label))}</text>')
        for c, v in enumerate(row):
            out.append(f'<rect x="{left + c * cell}" y="{top + r * cell}" width="{cell}" height="{cell}" '
                       f'fill="{_colour((v - low) / span)}"><title>{escape(f"{x}={grid.columns[c]} {y}={row_label}: {value}={v:.4g}")}'
                       "</title></rect>")
    bottom = top + cell * grid.shape[0]
    for c, col_label in enumerate(grid.columns):
        out.append(f'<text x="{left + c * cell + cell / 2}" y="{bottom + 14}" text-anchor="middle">{escape(str(col_label))}</text>')
    out.append(f'<text x="{left + cell * grid.shape[1] / 2}" y="{bottom + 34}" text-anchor="middle">{escape(x)}</text>')
    out.append(f'<text x="14" y="{top + cell * grid.shape[0] / 2}" transform="rotate(-90 14 {top + cell * grid.shape[0] / 2})" '
               f'text-anchor="middle">{escape(y)}</text>')
    legend_x = left + cell * grid.shape[1] + 20
    for i in range(10):  # colour scale, best at the top
        out.append(f'<rect x="{legend_x}" y="{top + i * 12}" width="14" height="12" fill="{_colour(1 - i / 9)}"/>')
    out.append(f'<text x="{legend_x + 18}" y="{top + 10}">{high:.4g}</text>')
    out.append(f'<text x="{legend_x + 18}" y="{top + 118}">{low:.4g}</text>')
    out.append(f'<text x="{legend_x}" y="{top + 136}">{escape(value)}</text></svg>')
    path.write_text("\n".join(out), encoding="utf-8")
    return path


def write(result, grid: dict, folder: Path) -> list[Path]:
    """``sweep_scores.csv`` and, when exactly two grid parameters vary, ``heatmap_<metric>.svg``."""
    frame = result.table()
    paths = [folder / "sweep_scores.csv"]
    frame.to_csv(paths[0], index=False)
    metric = f"vec_{result.rank_by}"
    axes = varied(frame, list(grid))
    if len(axes) == 2 and metric in frame and frame[metric].notna().any():
        x, y = axes
        paths.append(heatmap(frame.astype({metric: "float64"}), x, y, metric,
                             f"{result.sweep_id}: {result.rank_by} (vectorised)", folder / f"heatmap_{result.rank_by}.svg"))
    return paths
