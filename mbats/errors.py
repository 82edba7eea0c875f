"""Errors a user can act on.

Every failure the CLI expects (bad input, wrong settings, a service that is down) raises a
subclass of :class:`MbatsError`; the CLI prints its message on one line and exits non-zero.
"""


class MbatsError(Exception):
    """An expected failure with a message that says what to fix."""

    exit_code = 1


class UsageError(MbatsError):
    """A command-line option, parameter or request field is out of range or malformed (exit code 2)."""

    exit_code = 2


class ConfigError(MbatsError):
    """A setting is missing or wrong."""


class DataValidationError(MbatsError):
    """Input data broke a rule; nothing of the load was committed."""


class NotFoundError(MbatsError):
    """An instrument, strategy, run or model that does not exist."""


class ServiceUnavailableError(MbatsError):
    """A server (Postgres, MLflow, S3, OANDA) could not be reached."""
