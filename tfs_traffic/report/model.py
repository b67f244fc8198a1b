"""The report's data: what it is asked (`Options`), what it found per version (`VersionReport`) and
the whole (`Report`), with the JSON output of docs/json.md."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfs_traffic.durations import rfc3339
from tfs_traffic.report.display import display_calls, display_coverage, redact_url
from tfs_traffic.report.forecast import Forecast

KEEP, RETIRE, UNKNOWN = "keep", "retire", "unknown"
VERDICTS = (KEEP, RETIRE, UNKNOWN)
DEFAULT_MAX_GAP_RATIO = 0.05
LAST_CALL_LOOKBACK = 30 * 86400.0  # --lookback's default


@dataclass(frozen=True)
class Options:
    """What the report is asked: the window ending at `at`, thresholds, and what to keep."""

    at: float
    window: float
    min_calls: float | None = None
    max_qps: float | None = None
    max_gap_ratio: float = DEFAULT_MAX_GAP_RATIO
    labels: Mapping[tuple[str, str], Sequence[str]] = field(default_factory=dict)  # from version_labels
    keep: frozenset[tuple[str, str]] = frozenset()  # --keep M:V
    hourly: bool = False  # also fetch hourly calls (the HTML sparklines): one more query
    forecast: bool = False  # also fit daily totals for an idle date (tfs_traffic.report.forecast): one more query
    forecast_horizon: float = 30 * 86400  # "idle within" this long after `at`
    rules: bool = True  # use queries/rules.yml's hourly series when they cover the window (one more query)
    selector: str = ""  # PromQL label matchers for every raw series (--selector): part of the fleet
    lookback: float = LAST_CALL_LOOKBACK  # how far back to look for the last call (--lookback)

    @property
    def step(self) -> float:
        """Coverage resolution: about 1008 steps per window (10 min over 7 days), never below 60 s.
        Each step costs a vector evaluation; the threshold (5 % = 50 steps) needs no finer grid."""
        return float(max(60, math.ceil(self.window / 1008)))

    @property
    def hours(self) -> int:
        """The whole hours of the window: the points of the hourly calls (at least one)."""
        return max(1, int(self.window // 3600))

    @property
    def last_call_span(self) -> float:
        """How far back the last call is looked for: --lookback, and never less than the window."""
        return max(self.lookback, self.window)


@dataclass
class VersionReport:
    model_name: str
    model_version: str
    verdict: str
    reason: str
    calls: float | None
    max_hourly_qps: float | None
    coverage: float
    labels: list[str]
    instances: list[str]
    calls_by_source: dict[str, float]
    available_at_window_start: bool
    hourly_calls: list[float] | None = None
    forecast: Forecast | None = None
    last_call_at: float | None = None
    estimated_ram_bytes: int | None = None  # TF Serving's own estimate (docs/metrics.md "Estimated memory")
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "verdict": self.verdict,
            "reason": self.reason,
            "calls": display_calls(self.calls),
            "max_hourly_qps": None if self.max_hourly_qps is None else round(self.max_hourly_qps, 6),
            "coverage": display_coverage(self.coverage),
            "labels": self.labels,
            "instances": self.instances,
            "calls_by_source": {k: display_calls(v) for k, v in sorted(self.calls_by_source.items())},
            "available_at_window_start": self.available_at_window_start,
            "last_call_at": None if self.last_call_at is None else rfc3339(self.last_call_at),
            "estimated_ram_bytes": self.estimated_ram_bytes,
            "note": self.note,
        }
        if self.hourly_calls is not None:
            out["hourly_calls"] = [display_calls(x) for x in self.hourly_calls]
        return out


@dataclass
class Report:
    evaluated_at: float
    window_seconds: float
    prometheus: str
    options: Options
    versions: list[VersionReport]
    queries: int = 0

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for x in self.versions if x.verdict == v) for v in VERDICTS}

    def retire_frees(self) -> tuple[int, int]:
        """TF Serving's RAM estimate summed over the `retire` versions (what unloading them frees in
        each server that loads them all), and how many `retire` versions have no estimate."""
        retire = [v for v in self.versions if v.verdict == RETIRE]
        known = [v.estimated_ram_bytes for v in retire if v.estimated_ram_bytes is not None]
        return sum(known), len(retire) - len(known)

    def idle_soon(self) -> list[VersionReport]:
        """Versions whose traffic is projected to reach zero within the forecast horizon."""
        deadline = self.evaluated_at + self.options.forecast_horizon
        return [v for v in self.versions if v.forecast is not None and v.forecast.idle_at <= deadline]

    def _forecast_json(self, version: VersionReport) -> dict[str, Any]:
        f = version.forecast
        return {
            "forecast_idle_at": None if f is None else rfc3339(f.idle_at),
            "forecast_calls_per_day_trend": None if f is None else round(f.slope_per_day, 3),
            "forecast_kendall_tau": None if f is None else round(f.tau, 3),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "evaluated_at": rfc3339(self.evaluated_at),
            "window_seconds": int(self.window_seconds)
            if float(self.window_seconds).is_integer()
            else self.window_seconds,
            "prometheus": redact_url(self.prometheus),
            "thresholds": {
                "min_calls": self.options.min_calls,
                "max_qps": self.options.max_qps,
                "max_gap_ratio": self.options.max_gap_ratio,
            },
            "selector": self.options.selector,
            "lookback_seconds": int(self.options.lookback),
            "summary": self.counts(),
            "retire_estimated_ram_bytes": self.retire_frees()[0],
            "retire_without_estimate": self.retire_frees()[1],
            "versions": [
                {**v.as_json(), **self._forecast_json(v)} if self.options.forecast else v.as_json()
                for v in self.versions
            ],
            **(
                {
                    "forecast": {
                        "horizon_seconds": int(self.options.forecast_horizon),
                        "idle_within_horizon": [f"{v.model_name}:{v.model_version}" for v in self.idle_soon()],
                    }
                }
                if self.options.forecast
                else {}
            ),
        }
