"""The retirement report: for every AVAILABLE model version, keep, retire or unknown, and why.

Verdicts follow docs/verdicts.md; the first matching check decides:

    keep     traffic                   calls in the window above the threshold (default: any call)
    keep     only-version              the model's only AVAILABLE version
    keep     latest                    the model's highest AVAILABLE numeric version
    keep     label:<name> / label:keep a version_labels entry points at it / --keep M:V
    unknown  not-observed-long-enough  fleet-wide, no target reported it AVAILABLE (and none was in a
                                       scrape gap) for more than --max-gap-ratio of the window
    unknown  scrape-gaps               a replica serving it was not scraped (up == 0, its last report
                                       said AVAILABLE) for more than --max-gap-ratio of the window
    unknown  no-call-data              Prometheus holds no call counter at all (outside the contract)
    retire   idle                      none of the above

All numbers come from a fixed set of PromQL queries (see `tfs_traffic.prometheus.promql`), whatever the
number of versions or pods; both sources (patched server, sidecar) are combined with max, never sum.
Pods come and go (rollouts, autoscaling): observation is fleet-wide, and calls are summed over every
counter series of the window, those of pods deleted before its end included.
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
LAST_CALL_LOOKBACK = 30 * 86400.0  # --lookback's default
# Points one piece of a subquery may hold (the default --query.max-samples is 50M): the report
# sizes its pieces from the number of series the inventory found, twice that for pods gone since.
PIECE_BUDGET = 20_000_000
LAST_CALL_STEP = 3600.0  # the last call's resolution: an hour, or whole hours in large fleets
LAST_CALL_BUDGET = 20_000_000  # series x steps of the raw last-call query before its step grows


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
    the pod when known (with its namespace and cluster: two clusters may have pods of the same
    name), else the instance's host (the sidecar listens on another port)."""
    if labels.get("pod"):
        return "/".join(x for x in (labels.get("cluster", ""), labels.get("namespace", ""), labels["pod"]) if x)
    if labels.get(promql.HOST_LABEL):
        return labels[promql.HOST_LABEL]
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
    present: float,
    worst_gap: float,
) -> tuple[str, str]:
    """The verdict and reason for one version (docs/verdicts.md, first match wins)."""
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
    if present < 1 - options.max_gap_ratio - 1e-9:
        return UNKNOWN, "not-observed-long-enough"
    if worst_gap > options.max_gap_ratio + 1e-9:
        return UNKNOWN, "scrape-gaps"
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


QUERY_LABEL = "tfs_q"
# What tells one counter apart from another within a version: its source, replica, target and
# the sidecar's api/code; other labels (job, the Prometheus Operator's endpoint, service, ...)
# differ between copies of the same counter scraped by two jobs.
TARGET_LABELS = (
    promql.SOURCE_LABEL,
    contract.MODEL,
    contract.VERSION,
    "cluster",
    "namespace",
    "pod",
    "instance",
    "api",
    "code",
)


@dataclass
class Queries:
    """The report's PromQL for given options: each quantity covers both sources; the coverage
    query also depends on what the inventory found (`coverage_query`)."""

    inventory: str
    calls: str
    qps: str
    hourly: str
    last_call: str


def _series_estimate(inventory_series: int) -> int:
    """Series a window may hold for `inventory_series` now: twice as many (pods replaced since)."""
    return max(1, 2 * inventory_series)


def build_queries(options: Options, recorded: bool = False, inventory_series: int = 1) -> Queries:
    gauges, counters = promql.AVAILABLE_SOURCES, promql.CALL_SOURCES
    w, sel, by = options.window, options.selector, promql.BY_VERSION
    start = promql.max_of_sources(
        {s: f"max by ({by}) ({promql.state_at_window_start(promql.select(m, sel), w)})" for s, m in gauges.items()}
    )
    up = promql.select("up", sel)
    failed = f"min_over_time({up}[{promql.duration(w)}]) == 0"
    inventory = promql.tagged(
        QUERY_LABEL,
        {
            "now": promql.by_source({s: promql.available(promql.select(m, sel)) for s, m in gauges.items()}),
            "start": start,
            "down": f"group by ({promql.BY_REPLICA}, instance) ({promql.keyed(failed)})",
            "up": f"count(present_over_time({up}[{promql.duration(w)}]))",
        },
    )
    lookback = max(options.lookback, w)
    # Each step of the raw last-call query compares every counter with itself a step earlier:
    # in a large fleet the step grows (whole hours) to keep that work bounded.
    hours = math.ceil(_series_estimate(inventory_series) * lookback / LAST_CALL_STEP / LAST_CALL_BUDGET)
    step = LAST_CALL_STEP * max(1, hours)
    per_piece = PIECE_BUDGET // (4 * _series_estimate(inventory_series))
    last = [
        f"max_over_time({promql.last_called(counters, sel, step)}{p.subquery(step)})"
        for p in promql.pieces(options.at, lookback, step, per_piece)
    ]
    queries = Queries(
        inventory=inventory,
        calls=promql.by_source({s: promql.calls_inputs(promql.select(m, sel), w) for s, m in counters.items()}),
        qps=promql.by_source({s: promql.max_hourly_qps(promql.select(m, sel), w) for s, m in counters.items()}),
        hourly=promql.by_source({s: promql.hourly_calls(promql.select(m, sel)) for s, m in counters.items()}),
        last_call=promql.combined("max", last, by),
    )
    if recorded:  # calls and busiest hour from the hourly recording rules (tfs_traffic.queries.mixin)
        queries = dataclasses.replace(queries, **mixin.report_queries(w, options.lookback))
    return queries


def coverage_query(
    options: Options,
    inventory_series: int,
    down_pods: Sequence[str] | None,
    any_up: bool,
    recorded: bool = False,
    down_models: Sequence[str] | None = None,
) -> str:
    """Fleet-wide observation per version, and scrape gaps per replica and version, in one query.

    `down_pods`: the pods with a failed scrape in the window (None: some such target has no pod
    label), the only ones that can be in a gap while `up` exists; without any `up` (`any_up`
    False) every replica can. Each part is a sum over pieces of the window sized to stay within
    Prometheus' --query.max-samples. `recorded`: the observed steps come from the hourly share of
    AVAILABLE minutes (`mixin.AVAILABLE_1H`, a whole pass over the gauges saved); a version counts
    observed only in hours the rules saw it, so at most the partial hours at its ends differ, and
    in the hours of several namespaces the best one (a lower bound: the safe side). The gap steps
    nobody else covered are checked against the raw gauges of `down_models` only (None: all).
    """
    gauges, step, by = promql.AVAILABLE_SOURCES, options.step, promql.BY_VERSION
    observed = promql.fleet_available(gauges, options.selector)
    narrow = [] if down_pods is None or not any_up else [f"pod=~{promql.any_of(down_pods)}"]
    gap_part = not any_up or down_pods is None or bool(down_pods)
    copies = 1 if narrow or not gap_part else 6  # matrices the gap part holds at once, unnarrowed
    per_piece = PIECE_BUDGET // (copies * _series_estimate(inventory_series))
    parts = promql.pieces(options.at, options.window, step, per_piece)
    out = {"observed": promql.combined("sum", [f"count_over_time(({observed}){p.subquery(step)})" for p in parts], by)}
    if recorded:
        share = f"sum_over_time({mixin.AVAILABLE_1H}[{promql.duration(options.window)}])"
        out["observed"] = f"max by ({by}) ({share}) * {3600 / step:g}"
        if down_models is not None:
            selector = ",".join(
                x for x in (options.selector, f"model_name=~{promql.any_of(down_models or ['^$'])}") if x
            )
            observed = promql.fleet_available(gauges, selector)
    if gap_part:
        gap = promql.in_gap(gauges, options.selector, options.window, any_up, *narrow)
        out["gap"] = promql.combined(
            "sum", [f"count_over_time({gap}{p.subquery(step)})" for p in parts], f"{promql.BY_REPLICA}, {by}"
        )
        uncovered = f"(max by ({by}) ({gap}) unless on ({by}) ({observed}))"
        out["uncovered"] = promql.combined(
            "sum", [f"count_over_time({uncovered}{p.subquery(step)})" for p in parts], by
        )
    return promql.tagged(QUERY_LABEL, out)


def _note(last_call_at: float | None, options: Options) -> str | None:
    if last_call_at is None:
        return None
    return (
        f"last called {ago(options.at, last_call_at)} ({rfc3339(last_call_at)}), within --lookback "
        f"{format_duration(max(options.lookback, options.window))}: a weekly or monthly client may still use it"
    )


def ago(at: float, when: float) -> str:
    """`when` relative to `at`: "<1h ago" (the last call's resolution is an hour), "5h ago", "9d ago"."""
    seconds = max(0.0, at - when)
    if seconds < 3600:
        return "<1h ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"


def run(client: PrometheusClient, options: Options) -> Report:
    """Query Prometheus (a fixed number of queries) and judge every AVAILABLE version."""
    at, window = options.at, options.window
    sent = 0
    # Recorded series have no pod or cluster label: a --selector always asks the raw series.
    use_rules = options.rules and not options.selector
    recorded = use_rules and bool(client.query(mixin.rules_cover_window(promql.duration(window)), at))
    sent += int(use_rules)

    def query(expr: str) -> list[dict[str, Any]]:
        nonlocal sent
        sent += 1
        return client.query(expr, at)

    def split(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for sample in results:
            out.setdefault(sample["metric"].get(QUERY_LABEL, ""), []).append(sample)
        return out

    # Inventory: versions AVAILABLE now with the replicas serving them, the state at the window's
    # start, the targets with a failed scrape in the window, and whether `up` exists at all.
    inventory = split(query(build_queries(options).inventory))
    serving: dict[tuple[str, str], set[str]] = {}
    instances: dict[tuple[str, str], set[str]] = {}
    for sample in inventory.get("now", []):
        ident = _ident(sample)
        if ident is None:
            continue
        serving.setdefault(ident, set()).add(replica_key(sample["metric"]))
        if sample["metric"].get("instance"):
            instances.setdefault(ident, set()).add(sample["metric"]["instance"])
    started = {ident for s in inventory.get("start", []) if (ident := _ident(s)) is not None}
    down = [s["metric"].get("pod", "") for s in inventory.get("down", [])]
    any_up = any(_value(s) > 0 for s in inventory.get("up", []))
    inventory_series = len(inventory.get("now", []))
    q = build_queries(options, recorded, inventory_series)

    # Coverage: fleet-wide observed steps, gap steps per replica, gap steps nobody else covered.
    steps = expected_steps(at, window, options.step)
    down_pods = None if "" in down else down
    # The models the down pods serve now; a down pod that serves nothing now (deleted since): all.
    now = [s["metric"] for s in inventory.get("now", [])]
    down_models: list[str] | None = sorted({m.get(contract.MODEL, "") for m in now if m.get("pod") in down})
    if set(down) - {m.get("pod") for m in now}:
        down_models = None
    shares = split(query(coverage_query(options, inventory_series, down_pods, any_up, recorded, down_models)))
    observed = {ident: _value(s) for s in shares.get("observed", []) if (ident := _ident(s)) is not None}
    uncovered = {ident: _value(s) for s in shares.get("uncovered", []) if (ident := _ident(s)) is not None}
    worst_gap: dict[tuple[str, str], float] = {}
    for sample in shares.get("gap", []):
        ident = _ident(sample)
        if ident is not None:
            worst_gap[ident] = max(worst_gap.get(ident, 0.0), _value(sample) / steps)

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
    # A target scraped by two jobs (an annotation job beside a PodMonitor) stores each counter
    # twice, under another `job` (and the Operator's labels): one count per target, the max.
    per_target: dict[tuple[str, ...], float] = {}
    for series_labels, inputs in per_series.items():
        metric = dict(series_labels)
        series_calls = promql.combine_calls(inputs)
        if series_calls is not None:
            # Without a pod or instance label nothing says two series are one target: keep both.
            known = metric.get("pod") or metric.get("instance")
            key = tuple(metric.get(k, "") for k in TARGET_LABELS) + (() if known else series_labels)
            per_target[key] = max(per_target.get(key, 0.0), max(0.0, series_calls))
    for key, series_calls in per_target.items():
        metric = dict(zip(TARGET_LABELS, key[: len(TARGET_LABELS)], strict=True))
        ident = _ident({"metric": metric})
        if ident is not None:
            source = metric[promql.SOURCE_LABEL] or "?"
            totals = by_source.setdefault(ident, {})
            totals[source] = totals.get(source, 0.0) + series_calls
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

    last_call: dict[tuple[str, str], float] = {}
    for sample in query(q.last_call):
        ident = _ident(sample)
        if ident is not None and not math.isnan(_value(sample)):
            last_call[ident] = max(last_call.get(ident, 0.0), _value(sample))

    trends: dict[tuple[str, str], list[tuple[float, float]]] = {}
    if options.forecast:
        sent += 1
        trends = daily_totals(client, at, window, options.selector)

    available_by_model: dict[str, list[str]] = {}
    for model, version in serving:
        available_by_model.setdefault(model, []).append(version)

    versions = []
    for ident in sorted(serving, key=lambda k: (k[0], version_key(k[1]))):
        model, version = ident
        sources = by_source.get(ident, {})
        calls = max(sources.values()) if sources else (0.0 if any_counter else None)
        replicas = serving[ident]
        coverage = min(1.0, observed.get(ident, 0.0) / steps)
        present = min(1.0, (observed.get(ident, 0.0) + uncovered.get(ident, 0.0)) / steps)
        labels = list(options.labels.get(ident, ()))
        verdict, reason = judge(
            calls=calls,
            max_qps=qps.get(ident, 0.0 if calls is not None else None),
            options=options,
            available_versions=available_by_model[model],
            version=version,
            labels=labels,
            keep=ident in options.keep,
            present=present,
            worst_gap=worst_gap.get(ident, 0.0),
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
                available_at_window_start=ident in started,
                hourly_calls=hourly.get(ident, [0.0] * max(1, int(window // 3600))) if options.hourly else None,
                forecast=forecast_idle(trends.get(ident, [])) if options.forecast else None,
                last_call_at=last_call.get(ident),
                note=_note(last_call.get(ident), options) if verdict == RETIRE else None,
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
