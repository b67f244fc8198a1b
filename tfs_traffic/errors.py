"""Errors that end a command with one clear line instead of a traceback."""


class ToolError(Exception):
    """A failure outside the user's control (Prometheus down, a build failing): exit status 1."""

    exit_code = 1


class UsageError(ToolError):
    """The user's input is wrong (bad flag value, malformed config file): exit status 2."""

    exit_code = 2


def yaml_problem(error: Exception) -> tuple[int | None, str]:
    """The 1-based line and the problem of a PyYAML error, for a one-line message (no yaml import here:
    the sidecar imports this module and needs no YAML)."""
    mark = getattr(error, "problem_mark", None)
    return (mark.line + 1 if mark is not None else None), str(getattr(error, "problem", None) or error)
