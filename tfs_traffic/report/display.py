"""How the report shows its numbers in every format: calls, coverage, times, URLs, version order."""

import math
from urllib.parse import urlsplit, urlunsplit


def display_calls(calls: float | None) -> int | None:
    """Calls as a whole number; a positive count never rounds down to 0 (increase() extrapolates)."""
    if calls is None:
        return None
    if calls <= 0:
        return 0
    return max(1, round(calls))


def display_coverage(coverage: float) -> float:
    """Coverage to 4 places, rounded down so a value below a threshold never shows as on it."""
    return math.floor(min(1.0, max(0.0, coverage)) * 10000) / 10000


def redact_url(url: str) -> str:
    """The URL without credentials (user:password@)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def ago(at: float, when: float) -> str:
    """`when` relative to `at`: "<1h ago" (the last call's resolution is an hour), "5h ago", "9d ago"."""
    seconds = max(0.0, at - when)
    if seconds < 3600:
        return "<1h ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"


def version_key(version: str) -> tuple[int, int, str]:
    """A model version's place in listings: numeric versions in numeric order, then the rest
    alphabetically (`model_version` is a string label; TF Serving's versions are int64)."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)
