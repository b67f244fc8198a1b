"""The retirement report: for every AVAILABLE model version, keep, retire or unknown, and why.

Verdicts follow design.md section 5; the first matching check decides:

    keep     traffic                   calls in the window above the threshold (default: any call)
    keep     only-version              the model's only AVAILABLE version
    keep     latest                    the model's highest AVAILABLE numeric version
    keep     label:<name> / label:keep a version_labels entry points at it / --keep M:V
    unknown  not-observed-long-enough  it (on some instance serving it) became AVAILABLE inside the window
    unknown  scrape-gaps               an instance serving it has missing samples beyond --max-gap-ratio
    unknown  no-call-data              Prometheus holds no call counter at all (outside the contract)
    retire   idle                      none of the above

All numbers come from a fixed set of PromQL queries (see `tfs_traffic.prometheus.promql`), whatever the
number of versions; both sources (patched server, sidecar) are combined with max, never sum.
"""

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tfs_traffic import contract
from tfs_traffic.durations import format_duration, rfc3339
from tfs_traffic.prometheus import promql
from tfs_traffic.prometheus.api import PrometheusClient
from tfs_traffic.queries import mixin
from tfs_traffic.report.forecast import Forecast, daily_totals, forecast_idle

KEEP, RETIRE, UNKNOWN = "keep", "retire", "unknown"
VERDICTS = (KEEP, RETIRE, UNKNOWN)
IGNORED_VERSIONS = {contract.OTHER, contract.UNRESOLVED, ""}
DEFAULT_MAX_GAP_RATIO = 0.05


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

    @property
    def step(self) -> float:
        """Coverage resolution: about 1008 steps per window (10 min over 7 days), never below 60 s.
        Each step costs a vector evaluation; the threshold (5 % = 50 steps) needs no finer grid."""
        return float(max(60, math.ceil(self.window / 1008)))


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
            "summary": self.counts(),
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


def version_key(version: str) -> tuple[int, int, str]:
    """Numeric versions in numeric order, then the rest alphabetically."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def replica_key(labels: Mapping[str, str]) -> str:
    """Which replica a series comes from, the same for its patched and sidecar targets:
    the pod when known, else the instance's host (the sidecar listens on another port)."""
    if labels.get("pod"):
        return f"{labels.get('namespace', '')}/{labels['pod']}".lstrip("/")
    instance = labels.get("instance", "")
    if instance:
        match = re.fullmatch(r"(.*):\d+", instance)
        return match.group(1) if match else instance
    skip = {"__name__", promql.SOURCE_LABEL, contract.MODEL, contract.VERSION, "job", "api", "code"}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip)


def _value(sample: Mapping[str, Any]) -> float:
    return float(sample["value"][1])


def _ident(sample: Mapping[str, Any]) -> tuple[str, str] | None:
    metric = sample["metric"]
    model, version = metric.get(contract.MODEL, ""), metric.get(contract.VERSION, "")
    if not model or model == contract.OTHER or version in IGNORED_VERSIONS:
        return None
    return model, version


def expected_steps(at: float, window: float, step: float) -> int:
    """How many subquery steps Prometheus evaluates in [at - window, at] (aligned to the step)."""
    at_ms, lo_ms, step_ms = round(at * 1000), round((at - window) * 1000), round(step * 1000)
    first = -(-lo_ms // step_ms) * step_ms
    return max(1, (at_ms - first) // step_ms + 1)


def judge(
    *,
    calls: float | None,
    max_qps: float | None,
    options: Options,
    available_versions: Sequence[str],
    version: str,
    labels: Sequence[str],
    keep: bool,
    coverage: float,
    joined_inside_window: bool,
) -> tuple[str, str]:
    """The verdict and reason for one version (design.md section 5, first match wins)."""
    if _has_traffic(calls, max_qps, options):
        return KEEP, "traffic"
    if len(available_versions) == 1:
        return KEEP, "only-version"
    numeric = [int(v) for v in available_versions if v.isdigit()]
    if version.isdigit() and numeric and int(version) == max(numeric):
        return KEEP, "latest"
    if labels:
        return KEEP, f"label:{labels[0]}"
    if keep:
        return KEEP, "label:keep"
    if coverage < 1 - options.max_gap_ratio - 1e-9:
        return UNKNOWN, "not-observed-long-enough" if joined_inside_window else "scrape-gaps"
    if calls is None:
        return UNKNOWN, "no-call-data"
    return RETIRE, "idle"


def _has_traffic(calls: float | None, max_qps: float | None, options: Options) -> bool:
    if calls is None:
        return False
    if options.max_qps is not None:
        # A busiest hour above the threshold; with 0 any call counts (hourly rates can miss a
        # lone call that straddles two hours, the window's count cannot).
        return (max_qps is not None and max_qps > options.max_qps) or (options.max_qps <= 0 and calls > 0)
    if options.min_calls is not None:
        return calls >= options.min_calls
    return calls > 0


@dataclass
class Queries:
    """The report's PromQL for given options: one query per quantity, both sources in each."""

    inventory: str
    coverage: str
    start_state: str
    calls: str
    qps: str
    hourly: str


def build_queries(options: Options, recorded: bool = False) -> Queries:
    gauges, counters = promql.AVAILABLE_SOURCES, promql.CALL_SOURCES
    w = options.window
    queries = Queries(
        inventory=promql.by_source({s: promql.available(m) for s, m in gauges.items()}),
        coverage=promql.by_source({s: promql.available_steps(m, w, options.step) for s, m in gauges.items()}),
        start_state=promql.by_source({s: promql.state_at_window_start(m, w) for s, m in gauges.items()}),
        calls=promql.by_source({s: promql.calls_inputs(m, w) for s, m in counters.items()}),
        qps=promql.by_source({s: promql.max_hourly_qps(m, w) for s, m in counters.items()}),
        hourly=promql.by_source({s: promql.hourly_calls(m) for s, m in counters.items()}),
    )
    if recorded:  # calls, busiest hour and coverage from the hourly recording rules (tfs_traffic.queries.mixin)
        queries = dataclasses.replace(queries, **mixin.report_queries(w, options.step))
    return queries


def run(client: PrometheusClient, options: Options) -> Report:
    """Query Prometheus (a fixed number of queries) and judge every AVAILABLE version."""
    at, window = options.at, options.window
    sent = 0
    recorded = options.rules and bool(client.query(mixin.rules_cover_window(format_duration(window)), at))
    sent += int(options.rules)
    q = build_queries(options, recorded)

    def query(expr: str) -> list[dict[str, Any]]:
        nonlocal sent
        sent += 1
        return client.query(expr, at)

    # Inventory: versions AVAILABLE now, with the replicas that serve them.
    serving: dict[tuple[str, str], set[str]] = {}
    instances: dict[tuple[str, str], set[str]] = {}
    for sample in query(q.inventory):
        ident = _ident(sample)
        if ident is None:
            continue
        serving.setdefault(ident, set()).add(replica_key(sample["metric"]))
        if sample["metric"].get("instance"):
            instances.setdefault(ident, set()).add(sample["metric"]["instance"])

    # Coverage per (version, replica): max over sources and series, as a share of the steps.
    steps = expected_steps(at, window, options.step)
    covered: dict[tuple[str, str], dict[str, float]] = {}
    for sample in query(q.coverage):
        ident = _ident(sample)
        if ident in serving:
            assert ident is not None
            share = min(1.0, _value(sample) / steps)
            per_replica = covered.setdefault(ident, {})
            key = replica_key(sample["metric"])
            per_replica[key] = max(per_replica.get(key, 0.0), share)
    at_start: dict[tuple[str, str], set[str]] = {}
    for sample in query(q.start_state):
        ident = _ident(sample)
        if ident in serving and _value(sample) == 1:
            assert ident is not None
            at_start.setdefault(ident, set()).add(replica_key(sample["metric"]))

    # Calls and the busiest hour per version and source; max over sources.
    per_series: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for sample in query(q.calls):
        metric = dict(sample["metric"])
        name = metric.pop(promql.INPUT_LABEL, "")
        metric.pop("__name__", None)  # last_over_time() keeps it, the other functions drop it
        value = _value(sample)
        if not math.isnan(value):
            per_series.setdefault(tuple(sorted(metric.items())), {})[name] = value
    any_counter = bool(per_series)
    by_source: dict[tuple[str, str], dict[str, float]] = {}
    for series_labels, inputs in per_series.items():
        metric = dict(series_labels)
        ident = _ident({"metric": metric})
        series_calls = promql.combine_calls(inputs)
        if ident is not None and series_calls is not None:
            source = metric.get(promql.SOURCE_LABEL, "?")
            totals = by_source.setdefault(ident, {})
            totals[source] = totals.get(source, 0.0) + max(0.0, series_calls)
    qps: dict[tuple[str, str], float] = {}
    for sample in query(q.qps):
        ident = _ident(sample)
        if ident is not None and not math.isnan(_value(sample)):
            qps[ident] = max(qps.get(ident, 0.0), _value(sample))
    hourly: dict[tuple[str, str], list[float]] = {}
    if options.hourly:
        sent += 1
        hours = max(1, int(window // 3600))
        start = at - (hours - 1) * 3600
        for series in client.query_range(q.hourly, start, at, 3600):
            ident = _ident({"metric": series["metric"], "value": [0, 0]})
            if ident not in serving:
                continue
            assert ident is not None
            row = hourly.setdefault(ident, [0.0] * hours)
            for ts, value in series["values"]:
                index = round((float(ts) - start) / 3600)
                if 0 <= index < hours and not math.isnan(float(value)):
                    row[index] = max(row[index], float(value))

    trends: dict[tuple[str, str], list[tuple[float, float]]] = {}
    if options.forecast:
        sent += 1
        trends = daily_totals(client, at, window)

    available_by_model: dict[str, list[str]] = {}
    for model, version in serving:
        available_by_model.setdefault(model, []).append(version)

    versions = []
    for ident in sorted(serving, key=lambda k: (k[0], version_key(k[1]))):
        model, version = ident
        sources = by_source.get(ident, {})
        calls = max(sources.values()) if sources else (0.0 if any_counter else None)
        replicas = serving[ident]
        shares = covered.get(ident, {})
        coverage = min((shares.get(r, 0.0) for r in replicas), default=0.0)
        tolerated = 1 - options.max_gap_ratio - 1e-9
        low = [r for r in replicas if shares.get(r, 0.0) < tolerated]
        started = at_start.get(ident, set())
        labels = list(options.labels.get(ident, ()))
        verdict, reason = judge(
            calls=calls,
            max_qps=qps.get(ident, 0.0 if calls is not None else None),
            options=options,
            available_versions=available_by_model[model],
            version=version,
            labels=labels,
            keep=ident in options.keep,
            coverage=coverage,
            joined_inside_window=any(r not in started for r in low),
        )
        versions.append(
            VersionReport(
                model_name=model,
                model_version=version,
                verdict=verdict,
                reason=reason,
                calls=calls,
                max_hourly_qps=qps.get(ident, 0.0 if calls is not None else None),
                coverage=coverage,
                labels=labels,
                instances=sorted(instances.get(ident, set()) or replicas),
                calls_by_source=dict(sources),
                available_at_window_start=bool(started),
                hourly_calls=hourly.get(ident, [0.0] * max(1, int(window // 3600))) if options.hourly else None,
                forecast=forecast_idle(trends.get(ident, [])) if options.forecast else None,
            )
        )
    return Report(at, window, client.access.url, options, versions, queries=sent)


def config_versions(report: Report, configured: Sequence[str]) -> dict[str, list[int]]:
    """For each configured model with judged versions: every judged version that is not `retire`
    (the `specific` list of the emitted config). Non-numeric versions cannot be listed there."""
    out: dict[str, list[int]] = {}
    for v in report.versions:
        if v.model_name in configured and v.verdict != RETIRE and v.model_version.isdigit():
            out.setdefault(v.model_name, []).append(int(v.model_version))
    return {m: sorted(vs) for m, vs in out.items()}
