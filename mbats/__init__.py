"""MBATS: a self-hosted platform for systematic FX strategies."""

__version__ = "0.1.0"
