"""Backtrader runs over security-master bars, recorded into the risk database and MLflow."""
