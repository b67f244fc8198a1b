"""When will a fading version go idle? A robust trend on its daily call totals.

Theil-Sen (the median of pairwise slopes) shrugs off a few outlier days — a batch job, a
holiday — that would tilt a least-squares line. It is a dozen lines of statistics, so no
numeric library is pulled into the core install for it. Kendall's tau says how consistently the
totals fall; only a clear, consistent decline gets a date.
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tfs_traffic.prometheus.api import Querier

DAY = 86400.0
MIN_POINTS = 4
MAX_TAU = -0.5  # at most this rank correlation with time: most day pairs must fall


@dataclass(frozen=True)
class Forecast:
    """A falling trend: calls/day = intercept + slope * t, reaching zero at `idle_at` (Unix s)."""

    slope_per_day: float
    idle_at: float
    tau: float
    points: int


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept) of the Theil-Sen line through (t, y) points."""
    slopes = [(y2 - y1) / (t2 - t1) for i, (t1, y1) in enumerate(points) for t2, y2 in points[i + 1 :] if t2 != t1]
    slope = statistics.median(slopes)
    intercept = statistics.median(y - slope * t for t, y in points)
    return slope, intercept


def kendall_tau(points: Sequence[tuple[float, float]]) -> float:
    """Kendall's tau-a of y against t: +1 always rising, -1 always falling, ~0 no trend."""
    concordant = discordant = 0
    for i, (t1, y1) in enumerate(points):
        for t2, y2 in points[i + 1 :]:
            sign = (t2 - t1) * (y2 - y1)
            concordant += sign > 0
            discordant += sign < 0
    pairs = len(points) * (len(points) - 1) / 2
    return (concordant - discordant) / pairs if pairs else 0.0


def forecast_idle(daily_totals: Sequence[tuple[float, float]]) -> Forecast | None:
    """The projected time daily calls reach zero, or None when traffic is not clearly falling.

    `daily_totals` are (end of day as Unix seconds, calls in that day). Flat, rising or noisy
    series get None: a date is a claim, made only when most day-to-day pairs decline.
    """
    points = sorted((t, y) for t, y in daily_totals if y == y)  # drop NaN
    if len(points) < MIN_POINTS or all(y == 0 for _, y in points):
        return None
    tau = kendall_tau(points)
    slope, intercept = theil_sen(points)
    if slope >= 0 or tau > MAX_TAU:
        return None
    # The totals cover the day *ending* at t, so a total of zero means idle from half a day earlier.
    idle_at = -intercept / slope - DAY / 2
    return Forecast(slope_per_day=slope * DAY, idle_at=idle_at, tau=tau, points=len(points))


def daily_totals_query(selector: str = "") -> str:
    """Calls per version in the day ending at each evaluation time; sources combined with max."""
    from tfs_traffic.prometheus import promql

    return promql.max_of_sources(
        {
            s: f"sum by ({promql.BY_VERSION}) (increase({promql.select(m, selector)}[1d]))"
            for s, m in promql.CALL_SOURCES.items()
        }
    )


def daily_totals(
    client: "Querier", at: float, window: float, selector: str = ""
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(model, version) -> [(end of day, calls that day)] for the whole days inside the window."""
    days = max(1, int(window // DAY))
    result = client.query_range(daily_totals_query(selector), at - (days - 1) * DAY, at, DAY)
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for series in result:
        key = (series["metric"].get("model_name", ""), series["metric"].get("model_version", ""))
        out[key] = [(float(t), float(v)) for t, v in series["values"]]
    return out
