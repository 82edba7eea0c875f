"""The `mbats` command line (typer)."""
