"""Ask Prometheus the report's queries and turn the answers into numbers per version.

The queries are those of `tfs_traffic.report.queries`, asked in a fixed order: whether the recording
rules cover the window, the inventory, coverage, calls, the busiest hour, the hourly calls (HTML
only), the last call and the daily totals (--forecast only). Both sources are combined with max,
never sum (docs/metrics.md); pods come and go, so observation is fleet-wide and calls are summed
over every counter series of the window, those of pods deleted before its end included.
"""

import functools
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfs_traffic import contract
from tfs_traffic.durations import parse_duration
from tfs_traffic.prometheus import promql
from tfs_traffic.prometheus.api import Matrix, Querier, Vector
from tfs_traffic.queries import mixin
from tfs_traffic.report.forecast import daily_totals
from tfs_traffic.report.model import Options
from tfs_traffic.report.progress import SILENT, Progress
from tfs_traffic.report.queries import QUERY_LABEL, build_queries, coverage_query, inventory_query

Ident = tuple[str, str]  # (model_name, model_version)
IGNORED_VERSIONS = {contract.OTHER, contract.UNRESOLVED, ""}
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


class Recorder:
    """`client` remembering every query sent through it (`Report.queries` is their number)."""

    def __init__(self, client: Querier) -> None:
        self.client = client
        self.sent: list[str] = []

    def query(self, promql: str, at: float) -> Vector:
        self.sent.append(promql)
        return self.client.query(promql, at)

    def query_range(self, promql: str, start: float, end: float, step: float) -> Matrix:
        self.sent.append(promql)
        return self.client.query_range(promql, start, end, step)


def version_of(labels: Mapping[str, str]) -> Ident | None:
    """The judged version a series belongs to; None for the sidecar's bounded-cardinality buckets."""
    model, version = labels.get(contract.MODEL, ""), labels.get(contract.VERSION, "")
    if not model or model == contract.OTHER or version in IGNORED_VERSIONS:
        return None
    return model, version


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


def by_query(samples: Vector) -> dict[str, Vector]:
    """The samples of a query that asks several quantities, by their `tfs_q` tag."""
    out: dict[str, Vector] = {}
    for sample in samples:
        out.setdefault(sample["metric"].get(QUERY_LABEL, ""), []).append(sample)
    return out


def max_by_version(samples: Vector) -> dict[Ident, float]:
    """The largest value per judged version (NaN ignored; no value below 0)."""
    out: dict[Ident, float] = {}
    for sample in samples:
        ident = version_of(sample["metric"])
        if ident is not None and not math.isnan(_value(sample)):
            out[ident] = max(out.get(ident, 0.0), _value(sample))
    return out


def expected_steps(at: float, window: float, step: float) -> int:
    """How many subquery steps Prometheus evaluates in [at - window, at] (aligned to the step)."""
    at_ms, lo_ms, step_ms = round(at * 1000), round((at - window) * 1000), round(step * 1000)
    first = -(-lo_ms // step_ms) * step_ms
    return max(1, (at_ms - first) // step_ms + 1)


@dataclass
class Inventory:
    """Versions AVAILABLE now and who serves them, and the targets with a failed scrape."""

    now: list[Mapping[str, str]]  # the labels of every gauge series that says AVAILABLE now
    serving: dict[Ident, set[str]]  # version -> replicas (`replica_key`)
    instances: dict[Ident, set[str]]  # version -> `instance` labels
    started: set[Ident]  # AVAILABLE at the window's start
    labels: dict[Ident, list[str]]  # version -> the version labels a server resolves to it
    down: list[str]  # the pods of targets with a failed scrape in the window ("": one without a pod label)
    any_up: bool  # whether Prometheus holds `up` at all (not asked with recorded gaps: False)
    ram: dict[Ident, float] = field(default_factory=dict)  # TF Serving's RAM estimate now, max over targets

    @property
    def down_pods(self) -> list[str] | None:
        """The pods that can be in a scrape gap; None when a failed target has no pod label."""
        return None if "" in self.down else self.down

    @property
    def latest(self) -> set[Ident]:
        """The versions some replica sends a request without a version to: per replica and model its
        highest AVAILABLE numeric version (TF Serving's "latest", `core/basic_manager.cc`)."""
        per_replica: dict[tuple[str, str], int] = {}
        for (model, version), replicas in self.serving.items():
            if version.isdigit():
                for replica in replicas:
                    key = (replica, model)
                    per_replica[key] = max(per_replica.get(key, int(version)), int(version))
        return {(model, str(version)) for (_, model), version in per_replica.items()}


def read_inventory(client: Querier, options: Options, raw_gaps: bool = True) -> Inventory:
    parts = by_query(client.query(inventory_query(options, raw_gaps), options.at))
    now = [s["metric"] for s in parts.get("now", [])]
    serving: dict[Ident, set[str]] = {}
    instances: dict[Ident, set[str]] = {}
    for labels in now:
        ident = version_of(labels)
        if ident is None:
            continue
        serving.setdefault(ident, set()).add(replica_key(labels))
        if labels.get("instance"):
            instances.setdefault(ident, set()).add(labels["instance"])
    names: dict[Ident, set[str]] = {}
    for sample in parts.get("labels", []):
        if (ident := version_of(sample["metric"])) is not None and sample["metric"].get(contract.VERSION_LABEL):
            names.setdefault(ident, set()).add(sample["metric"][contract.VERSION_LABEL])
    targets = parts.get("up", [])
    return Inventory(
        now=now,
        serving=serving,
        instances=instances,
        started={ident for s in parts.get("start", []) if (ident := version_of(s["metric"])) is not None},
        labels={ident: sorted(n) for ident, n in names.items()},
        down=[s["metric"].get("pod", "") for s in targets if _value(s) == 0],
        any_up=bool(targets),
        ram=max_by_version(parts.get("ram", [])),
    )


@dataclass
class Coverage:
    """Steps of the window per version: observed fleet-wide, and the worst replica's share of gap steps."""

    steps: int
    observed: dict[Ident, float]
    worst_gap: dict[Ident, float]

    def share(self, ident: Ident) -> float:
        """The share of the window some target reported the version AVAILABLE."""
        return min(1.0, self.observed.get(ident, 0.0) / self.steps)


def added(answers: Sequence[Vector]) -> Vector:
    """The answers of a query's pieces added up per label set (steps counted in each piece)."""
    totals: dict[tuple[tuple[str, str], ...], float] = {}
    for answer in answers:
        for sample in answer:
            key = tuple(sorted(sample["metric"].items()))
            totals[key] = totals.get(key, 0.0) + _value(sample)
    return [{"metric": dict(key), "value": [0, str(value)]} for key, value in totals.items()]


def read_coverage(
    client: Querier, options: Options, inventory: Inventory, recorded: bool, progress: Progress = SILENT
) -> Coverage:
    queries = coverage_query(options, len(inventory.now), inventory.down_pods, inventory.any_up, recorded)
    parts = by_query(added(pieces(client, queries, options.at, "observation and scrape gaps", progress)))
    steps = expected_steps(options.at, options.window, options.step)
    return Coverage(
        steps=steps,
        observed=max_by_version(parts.get("observed", [])),
        worst_gap={ident: gap / steps for ident, gap in max_by_version(parts.get("gap", [])).items()},
    )


def calls_inputs_by_series(samples: Vector) -> dict[tuple[tuple[str, str], ...], dict[str, float]]:
    """The `calls_inputs` answer per counter series (its labels, sorted): {input name: value}."""
    per_series: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for sample in samples:
        labels = dict(sample["metric"])
        name = labels.pop(promql.INPUT_LABEL, "")
        labels.pop("__name__", None)  # last_over_time() keeps it, the other functions drop it
        if not math.isnan(_value(sample)):
            per_series.setdefault(tuple(sorted(labels.items())), {})[name] = _value(sample)
    return per_series


def calls_by_source(samples: Vector) -> tuple[dict[Ident, dict[str, float]], bool]:
    """Calls per version and source from the `calls_inputs` answer, and whether any counter exists.

    A target scraped by two jobs (an annotation job beside a PodMonitor) stores each counter twice,
    under another `job` (and the Operator's labels): one count per target, the max.
    """
    per_series = calls_inputs_by_series(samples)
    copies: dict[Ident, dict[str, dict[tuple[Any, ...], float]]] = {}  # version -> source -> target -> calls
    for series, inputs in per_series.items():
        labels = dict(series)
        ident, calls = version_of(labels), promql.combine_calls(inputs)
        if ident is None or calls is None:
            continue
        # Without a pod or instance label nothing says two series are one target: keep both.
        known = labels.get("pod") or labels.get("instance")
        target = tuple(labels.get(k, "") for k in TARGET_LABELS) if known else series
        targets = copies.setdefault(ident, {}).setdefault(labels.get(promql.SOURCE_LABEL) or "?", {})
        targets[target] = max(targets.get(target, 0.0), max(0.0, calls))
    # Added in order: sum() compensates float rounding from Python 3.12 on, so an extrapolated count
    # could differ in its last digit between Python versions.
    totals = {i: {s: functools.reduce(operator.add, t.values(), 0.0) for s, t in c.items()} for i, c in copies.items()}
    return totals, bool(per_series)


def hourly_calls(matrix: Matrix, options: Options, serving: Mapping[Ident, object]) -> dict[Ident, list[float]]:
    """Calls per hour of the window for every version served now (the HTML sparklines)."""
    start = options.at - (options.hours - 1) * 3600
    out: dict[Ident, list[float]] = {}
    for series in matrix:
        ident = version_of(series["metric"])
        if ident is None or ident not in serving:
            continue
        row = out.setdefault(ident, [0.0] * options.hours)
        for ts, value in series["values"]:
            index = round((float(ts) - start) / 3600)
            if 0 <= index < options.hours and not math.isnan(float(value)):
                row[index] = max(row[index], float(value))
    return out


@dataclass
class Measurements:
    """Everything the verdicts need, per version."""

    inventory: Inventory
    coverage: Coverage
    calls: dict[Ident, dict[str, float]]  # per source
    any_counter: bool  # Prometheus holds some call counter (else calls are unknown, not 0)
    qps: dict[Ident, float]
    hourly: dict[Ident, list[float]]  # with options.hourly
    last_call: dict[Ident, float]
    trends: dict[Ident, list[tuple[float, float]]]  # daily totals, with options.forecast


def pieces(client: Querier, queries: Sequence[str], at: float, name: str, progress: Progress) -> list[Vector]:
    """The answers of one question asked in pieces, one request each, shown as they come."""
    progress.query(name, len(queries))
    answers = []
    for query in queries:
        answers.append(client.query(query, at))
        progress.advance()
    return answers


def rules_last_run(client: Querier, options: Options) -> float | None:
    """When the hourly recording rules last ran, if they cover the window and still run; else None."""
    parts = by_query(client.query(mixin.rules_reach(promql.duration(options.window)), options.at))
    if not any(_value(s) > 0 for s in parts.get("start", [])):
        return None
    last = [_value(s) for s in parts.get("last", []) if not math.isnan(_value(s))]
    return min(options.at, max(last)) if last else None


def measure(client: Querier, options: Options, progress: Progress = SILENT) -> Measurements:
    """Ask the report's queries (a fixed number, two of them in pieces in very large fleets) in
    their fixed order, each shown on `progress`."""
    at = options.at
    # Recorded series have no pod or cluster label: a --selector always asks the raw series.
    use_rules = options.rules and not options.selector
    queries_asked = int(use_rules) + 5 + int(options.hourly) + int(options.forecast)
    progress.total(queries_asked)

    def ask(name: str, query: str) -> Vector:
        return pieces(client, [query], at, name, progress)[0]

    last_rules = None
    if use_rules:
        progress.query("whether the recording rules cover the window")
        last_rules = rules_last_run(client, options)
        progress.advance()
    recorded = last_rules is not None
    # The recorded gaps count a replica down for longer than the rules' gap lookback as that long:
    # the same verdicts as long as the tolerated gap is shorter (docs/verdicts.md).
    recorded_gaps = recorded and options.max_gap_ratio * options.window < parse_duration(mixin.DEFAULT.gap_lookback)
    progress.query("versions AVAILABLE now")
    inventory = read_inventory(client, options, raw_gaps=not recorded_gaps)
    progress.advance()
    queries = build_queries(options, last_rules, len(inventory.now))
    if queries.recent:
        progress.total(queries_asked + 1)
    coverage = read_coverage(client, options, inventory, recorded_gaps, progress)
    counted = [ask("calls", queries.calls)]
    if queries.recent:
        counted.append(ask("calls since the recording rules' last run", queries.recent))
    calls, any_counter = calls_by_source(added(counted) if queries.recent else counted[0])
    qps = max_by_version(ask("busiest hour", queries.qps))
    hourly: dict[Ident, list[float]] = {}
    if options.hourly:
        progress.query("hourly calls")
        matrix = client.query_range(queries.hourly, at - (options.hours - 1) * 3600, at, 3600)
        progress.advance()
        hourly = hourly_calls(matrix, options, inventory.serving)
    last_call = max_by_version([s for a in pieces(client, queries.last_call, at, "last call", progress) for s in a])
    trends: dict[Ident, list[tuple[float, float]]] = {}
    if options.forecast:
        progress.query("daily totals")
        trends = daily_totals(client, at, options.window, options.selector)
        progress.advance()
    return Measurements(inventory, coverage, calls, any_counter, qps, hourly, last_call, trends)
