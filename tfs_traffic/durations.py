"""Prometheus-style durations ("7d", "1h30m", "90s") and times (RFC 3339, Unix seconds, "now")."""

import re
from datetime import UTC, datetime

from tfs_traffic.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; raises UsageError on anything else."""
    text = text.strip()
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration {text!r}: use Prometheus units, e.g. 90s, 15m, 1h, 7d")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for whole seconds (604800 -> '1w' is avoided: '7d')."""
    seconds = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def parse_time(text: str) -> float:
    """Unix seconds for 'now', a Unix timestamp or an RFC 3339 time."""
    text = text.strip()
    if text == "now":
        return datetime.now(UTC).timestamp()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid time {text!r}: use RFC 3339 (2026-01-31T12:00:00Z) or Unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def rfc3339(timestamp: float) -> str:
    """RFC 3339 in UTC with a Z suffix, to the second."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
