"""Errors that end a command with one clear line instead of a traceback."""


class ToolError(Exception):
    """A failure outside the user's control (Prometheus down, a build failing): exit status 1."""

    exit_code = 1


class UsageError(ToolError):
    """The user's input is wrong (bad flag value, malformed config file): exit status 2."""

    exit_code = 2
