"""The MLflow artifacts of a sweep's parent run: every configuration's scores (csv) and, for a grid of
two varied parameters, a heatmap of the ranking metric — written once per sweep, so they cost one
plot and one upload whatever the grid size."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def varied(scores: pd.DataFrame, params: list[str]) -> list[str]:
    """The grid's parameters that take more than one value."""
    return [p for p in params if p in scores and scores[p].nunique(dropna=True) > 1]


def heatmap(scores: pd.DataFrame, x: str, y: str, value: str, title: str, path: Path) -> Path:
    """``value`` over the (x, y) grid; cells of several configurations (other params) show their best."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    grid = scores.pivot_table(index=y, columns=x, values=value, aggfunc="max").sort_index().sort_index(axis=1)
    fig, ax = plt.subplots(figsize=(min(3 + 0.4 * grid.shape[1], 14), min(2.5 + 0.3 * grid.shape[0], 10)))
    image = ax.imshow(grid.to_numpy(dtype="float64"), aspect="auto", origin="lower", cmap="viridis")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=90 if grid.shape[1] > 12 else 0)
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=value)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write(result, grid: dict, folder: Path) -> list[Path]:
    """``sweep_scores.csv`` and, when exactly two grid parameters vary, ``heatmap_<metric>.png``."""
    frame = result.table()
    paths = [folder / "sweep_scores.csv"]
    frame.to_csv(paths[0], index=False)
    metric = f"vec_{result.rank_by}"
    axes = varied(frame, list(grid))
    if len(axes) == 2 and metric in frame and frame[metric].notna().any():
        x, y = axes
        paths.append(heatmap(frame.astype({metric: "float64"}), x, y, metric,
                             f"{result.sweep_id}: {result.rank_by} (vectorised)", folder / f"heatmap_{result.rank_by}.png"))
    return paths
