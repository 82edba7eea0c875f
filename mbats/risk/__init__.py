"""The risk database: runs, orders, fills, trades, positions, equity curves and metrics."""
