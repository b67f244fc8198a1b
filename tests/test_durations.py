import pytest

from tfs_traffic.durations import format_duration, parse_duration, parse_time, rfc3339
from tfs_traffic.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604800), ("1h30m", 5400), ("90s", 90), ("1w", 604800), ("500ms", 0.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7 days", "-1h", "0s", "1h-"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_times_round_trip() -> None:
    assert parse_time("2026-01-31T12:00:00Z") == 1769860800
    assert rfc3339(1769860800) == "2026-01-31T12:00:00Z"
    assert parse_time("1769860800") == 1769860800
    assert format_duration(604800) == "7d" and format_duration(5400) == "1h30m"
    with pytest.raises(UsageError):
        parse_time("yesterday")
