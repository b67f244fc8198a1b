"""The monitoring mixin: every PromQL expression of the recording rules, alerts and dashboards.

One source, rendered three ways: `tfs-traffic queries render` writes `queries/rules.yml`,
`queries/alerts.yml` and `queries/dashboards/*.json`; the k8s renderer wraps the same groups in a
PrometheusRule and the dashboards in a ConfigMap; the report reads the same recorded series.

Two rules shape every expression here (docs/metrics.md):

- The patched counter and the sidecar counter may both count the same calls (a sidecar in front of
  a patched server), so the two sources are combined with `max`, never `sum`. Each source is first
  summed over its own replicas, then tagged with the report's `tfs_source` label (`promql.by_source`,
  so that `or` keeps both), then `max by` the grouping labels drops the tag again.
- Calls in a window come from the report's exact per-series formula (`promql.calls_per_series`):
  counter resets are handled, and a sidecar series born at its first call (prometheus_client) still
  counts that call, which `increase()` alone would miss.
- Every recording rule reads raw series only, never another recorded series, so that one pass of
  `promtool tsdb create-blocks-from rules` can give all of them their history.

Recording rules come in two groups: `tfs-traffic.rules` (every `interval`, fresh per-version rates,
the inventory and TF Serving's memory estimate) and `tfs-traffic.hourly` (every hour: calls per hour,
the share of the hour a version was observed fleet-wide, and per replica the share it was in a scrape
gap). The hourly series make 7d/30d questions cheap — a sum over 168 or 720 points per version
instead of a range over raw series — and they are the report's own definitions (docs/verdicts.md),
so `ModelVersionIdle` and `ModelVersionTrafficCoverageLow` say what `tfs-traffic report` says. A
third group, `tfs-traffic.memory`, lives beside the alerts: the memory held by the versions the
`ModelVersionIdle` expression selects, per model; it reads the recorded series, so its history is
backfilled in a second pass, after theirs.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfs_traffic import contract
from tfs_traffic.durations import parse_duration
from tfs_traffic.prometheus import promql

# Recorded series (level:metric:operations). The window is part of the name, so it is fixed.
CALLS_RATE5M = "model_version:tfs_model_calls:rate5m"
CALLS_RATE1H = "model_version:tfs_model_calls:rate1h"
AVAILABLE = "model_version:tfs_model_version_available:max"
CALLS_BY_CODE_RATE5M = "model_version_code:tfserving_model_calls:rate5m"
CALLS_1H = "model_version:tfs_model_calls:increase1h"
OBSERVED_1H = "model_version:tfs_model_version_observed:ratio1h"
GAP_1H = "model_version_replica:tfs_scrape_gap:ratio1h"
ESTIMATED_RAM = "model_version:tfs_model_version_estimated_ram_bytes:max"
IDLE_RAM = "model:tfs_idle_versions_estimated_ram_bytes:sum"

RULES_GROUP = "tfs-traffic.rules"
HOURLY_GROUP = "tfs-traffic.hourly"
ALERTS_GROUP = "tfs-traffic.alerts"
MEMORY_GROUP = "tfs-traffic.memory"
IDLE_ALERT = "ModelVersionIdle"


@dataclass(frozen=True)
class MixinConfig:
    """Knobs of the mixin, like a jsonnet mixin's `_config`.

    `group_labels` identify one model version across replicas (add `cluster` for multi-cluster
    Thanos/Mimir); `instance_labels` tell the copies of one target apart (`once_per_target`);
    `selector` adds label matchers to every raw series (e.g. `job=~"tfs.*"`). Replicas are told
    apart as the report tells them (`promql.REPLICA_LABELS`: cluster, namespace, pod, the host of
    `instance`).
    """

    group_labels: tuple[str, ...] = ("namespace", contract.MODEL, contract.VERSION)
    instance_labels: tuple[str, ...] = ("instance",)
    selector: str = ""
    interval: str = "1m"
    # Scrape gaps up to this long do not make the next hour count a counter's whole value as calls;
    # a replica down for longer counts as in a scrape gap for this long, then as no longer serving.
    gap_lookback: str = "1d"
    # ModelVersionIdle and ModelVersionTrafficCoverageLow: the report's --window ...
    idle_window: str = "7d"
    # ... and --max-gap-ratio: a replica in a scrape gap, or the version not observed, for more than
    # this share of the window makes idleness untrusted (docs/verdicts.md).
    max_gap_ratio: float = 0.05
    # Calls for versions that are not loaded: look back this far.
    unavailable_window: str = "15m"
    # ModelVersionTrafficDrop: history window, quantile cap of the band and "serves traffic" floor.
    drop_window: str = "7d"
    drop_quantile: float = 0.05
    drop_margin: float = 0.2
    drop_min_hourly_calls: float = 60.0
    drop_for: str = "30m"
    # ModelVersionTrafficFading: fit over fading_lookback, fire if zero is reached within horizon.
    fading_lookback: str = "7d"
    fading_horizon: str = "14d"
    fading_min_history: str = "1d"
    # Optional link prefix for runbooks (an anchor per alert is appended); empty: text hints only.
    runbook_url: str = ""
    dashboard_uid_prefix: str = "tfs-traffic"
    dashboard_tags: tuple[str, ...] = field(default=("tfs-traffic", "tensorflow-serving"))
    # ModelVersionIdle's description looks up its version's memory estimate with the `query` template
    # function; vmalert's replay mode has none, so a replay renders the alerts without it.
    memory_in_description: bool = True

    def by(self) -> str:
        """The grouping labels as PromQL's `by (...)` list."""
        return ", ".join(self.group_labels)

    def model_by(self) -> str:
        """The grouping labels of a model (without the version), as a `by (...)` list."""
        return ", ".join(x for x in self.group_labels if x != contract.VERSION)

    def replica_by(self) -> str:
        """A replica and a version: the report's replica labels and the grouping labels."""
        return ", ".join(dict.fromkeys((*promql.REPLICA_LABELS, *self.group_labels)))

    def matchers(self, *extra: str) -> str:
        """`{selector,extra...}` or "" when there is nothing to match."""
        parts = [p for p in (self.selector, *extra) if p]
        return "{" + ",".join(parts) + "}" if parts else ""


DEFAULT = MixinConfig()


# ---------------------------------------------------------------------------------------------------
# Building blocks (pure functions of the config; the report may call them too)


def once_per_target(expr: str, config: MixinConfig = DEFAULT) -> str:
    """`expr` per call series with one copy per scrape target: the max over the copies.

    A Prometheus that scrapes a pod through two jobs (an annotation job beside a PodMonitor, say)
    stores each counter twice, under the same `instance` but another `job` (and the Operator's
    labels); summed, every call would count twice. The copies count the same calls, so the max of
    each (version, instance, api, code) keeps one. Labels a source lacks (api, code) group nothing.
    """
    by = ", ".join((*config.group_labels, *config.instance_labels, "api", "code"))
    return f"max by ({by}) ({expr})"


def _max_of_sums(per_series: Mapping[str, str], config: MixinConfig) -> str:
    """Each source's per-series calls counted once per target and summed per group, then the max
    over the sources (`promql.max_of_sources`)."""
    by = config.by()
    return promql.max_of_sources(
        {s: f"sum by ({by}) ({once_per_target(e, config)})" for s, e in per_series.items()}, by
    )


def sidecar_calls_selector(config: MixinConfig = DEFAULT, *extra: str) -> str:
    """The sidecar's calls, every status code: as in the report, a call that names a version shows
    that a client uses it, even when it failed (NOT_FOUND right after an unload, say)."""
    return contract.SIDECAR_CALLS + config.matchers(*extra)


def calls_rate(window: str, config: MixinConfig = DEFAULT, *extra: str) -> str:
    """Calls per second per version over `window`, summed over replicas, max over the two sources."""
    patched = f"rate({contract.PATCHED_CALLS}{config.matchers(*extra)}[{window}])"
    sidecar = f"rate({sidecar_calls_selector(config, *extra)}[{window}])"
    return _max_of_sums({"patched": patched, "sidecar": sidecar}, config)


def calls_in(
    window: str, config: MixinConfig = DEFAULT, *extra: str, lookback: str = promql.duration(promql.BASELINE_LOOKBACK)
) -> str:
    """Calls per version in `window` from raw counters (the report's exact per-series count).

    `lookback`: how far before the window to look for a series' last value; a series not seen
    there counts as born inside the window (its whole value counts).
    """
    seconds, before = parse_duration(window), parse_duration(lookback)
    patched = promql.calls_per_series(f"{contract.PATCHED_CALLS}{config.matchers(*extra)}", seconds, before)
    sidecar = promql.calls_per_series(sidecar_calls_selector(config, *extra), seconds, before)
    return _max_of_sums({"patched": patched, "sidecar": sidecar}, config)


def calls_recently(window: str, config: MixinConfig = DEFAULT) -> str:
    """Calls per version in the last `window` before the hourly count catches up (`promql.calls_since`:
    the report's count with fewer passes; `window_calls` adds it to the hourly counts)."""
    seconds = parse_duration(window)
    patched = promql.calls_since(f"{contract.PATCHED_CALLS}{config.matchers()}", seconds)
    sidecar = promql.calls_since(sidecar_calls_selector(config), seconds)
    return _max_of_sums({"patched": patched, "sidecar": sidecar}, config)


def available(config: MixinConfig = DEFAULT, *extra: str) -> str:
    """1 while a version is AVAILABLE on at least one instance of either source, else 0."""
    m = config.matchers(*extra)
    return promql.max_of_sources({s: f"{g}{m}" for s, g in promql.AVAILABLE_SOURCES.items()}, config.by())


def calls_per_hour(config: MixinConfig = DEFAULT) -> str:
    """Calls in the last hour, for the hourly group.

    The per-series count is the last value in the hour minus the last value before it, so
    consecutive hourly evaluations tile time exactly: no call between two evaluations is lost or
    counted twice, and the sum over 168 hours is the week's calls. The value before the hour is
    looked up as far back as `gap_lookback`: after a scrape gap the hour that ends it gets the gap's
    calls, where a 1h lookback would count the counter's whole value as that hour's calls.
    """
    return calls_in("1h", config, lookback=config.gap_lookback)


def _steps_per_hour() -> str:
    """The steps of the hourly subqueries `[1h:1m]`: 60, or 61 when the evaluation falls on a whole
    minute (Prometheus 2 counts both ends of a range)."""
    return "scalar(count_over_time(vector(1)[1h:1m]))"


def observed_per_hour(config: MixinConfig = DEFAULT) -> str:
    """Share of the last hour's minutes at which some target, of either source, reported the
    version AVAILABLE: the report's fleet-wide observation (docs/verdicts.md), so a version served
    across a rollout or by autoscaled pods is observed all along. Hours without a report at all
    record nothing (they count as 0 in a window's sum)."""
    return f"count_over_time((\n{_indent(available(config), 4)} == 1\n  )[1h:1m])\n/ {_steps_per_hour()}"


def _per_replica(config: MixinConfig, function: str) -> str:
    """`function` (a format string around `{}`) of every availability gauge, tagged by source, keyed
    by replica (`promql.keyed`), the max per replica and version: the max over a replica's targets."""
    m = config.matchers()
    sources = promql.by_source({s: function.format(f"{g}{m}") for s, g in promql.AVAILABLE_SOURCES.items()})
    return f"max by ({config.replica_by()}) ({promql.keyed(sources)})"


def gap_per_hour(config: MixinConfig = DEFAULT) -> str:
    """Per replica and version, the share of the last hour's minutes the replica was in a scrape gap
    for the version, as the report defines it (docs/verdicts.md): none of its targets reports the
    version, its last report said AVAILABLE, and one of its targets was not scraped (`up == 0`).
    A pod that left service discovery has no `up`: not a gap.

    "Its last report" is looked up at every minute over the last hour (a gap that began within
    the hour); a gap older than that has no report in the hour at all, so its minutes are the
    replica's minutes down without one, counted when its last report before the hour (within
    `gap_lookback`) said AVAILABLE. Looking `gap_lookback` back at every minute would read a day of
    samples sixty times per series; this way the hour reads it once. A replica down for longer than
    `gap_lookback` counts that long as a gap, then as no longer serving the version.
    """
    replica, rv, m = promql.BY_REPLICA, config.replica_by(), config.matchers()
    last_hour = _per_replica(config, "last_over_time({}[1h])")
    before = _per_replica(config, f"last_over_time({{}}[{config.gap_lookback}] offset 1h)")
    reported = _per_replica(config, "{}")
    down = f"group by ({replica}) ({promql.keyed(f'up{m} == 0')})"
    recent = f"({last_hour} == 1)\nunless on ({rv}) {reported}\nand on ({replica}) {down}"
    down_with_report = f"group by ({rv}) ({last_hour})\nand on ({replica}) {down}"
    served = f"({before} == 1)"
    older = (
        f"(\n  {served}\n  * on ({replica}) group_left ()\n  count_over_time({down}[1h:1m])\n)\n"
        f"- on ({rv})\n"
        f"(\n  count_over_time((\n{_indent(down_with_report, 4)}\n  )[1h:1m])\n  or\n  {served} * 0\n)"
    )
    parts = promql.tagged(
        "tfs_part",
        {"recent": f"count_over_time((\n{_indent(recent, 4)}\n  )[1h:1m])", "older": f"(\n{_indent(older, 2)}\n)"},
    )
    return f"sum by ({rv}) (\n{_indent(parts)}\n)\n/ {_steps_per_hour()}\n> 0"


def estimated_ram(config: MixinConfig = DEFAULT) -> str:
    """TF Serving's own RAM estimate per version (the sidecar's gauge, docs/metrics.md "Estimated
    memory"): the max over replicas, i.e. what one server that loads the version holds for it."""
    return f"max by ({config.by()}) ({contract.SIDECAR_ESTIMATED_RAM}{config.matchers()})"


def calls_by_code_rate(config: MixinConfig = DEFAULT) -> str:
    """The sidecar's calls per second by gRPC status code (the only source that sees failures)."""
    m = config.matchers()
    return f"sum by ({config.by()}, code) ({once_per_target(f'rate({contract.SIDECAR_CALLS}{m}[5m])', config)})"


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


# ---------------------------------------------------------------------------------------------------
# Long-window questions, answered from the hourly series (cheap) or raw counters (always right)


def window_calls(window: str, config: MixinConfig = DEFAULT, *, recorded: bool = True, recent: str = "1h") -> str:
    """Calls per version over `window`.

    Recorded: the hourly counts summed over the window, plus the raw calls of the `recent` past
    (`calls_recently`: the hourly group lags by up to an hour; a version called only in the last
    minutes must not look idle). Parts are added with a tag-and-sum, so a version in one part only keeps its value.
    Never fewer calls than the raw count; at most the hour before the window more, which the first
    hourly sample may reach, and whatever of `recent` the last hourly sample already counted: with
    `recent` exactly the time since it (the report asks for it) nothing is counted twice; the
    alerts, whose text is fixed, take the last hour. (Undercounting would be the unsafe side for a
    retirement decision.) An empty `recent`: no raw part.
    """
    if not recorded:
        return calls_in(window, config)
    hours = promql.tag(f"sum_over_time({CALLS_1H}[{window}])", "part", "hours")
    if not recent:
        return f"sum by ({config.by()}) ({hours})"
    return (
        f"sum by ({config.by()}) (\n"
        f"  {hours}\n"
        "  or\n"
        f"  {promql.tag(_indent(calls_recently(recent, config)).lstrip(), 'part', 'recent')}\n"
        ")"
    )


def window_max_hourly_qps(window: str, config: MixinConfig = DEFAULT, *, recorded: bool = True) -> str:
    """The busiest hour's calls per second per version within `window`."""
    if recorded:
        return f"max_over_time({CALLS_1H}[{window}]) / 3600"
    return f"max_over_time(\n{_indent(calls_rate('1h', config))}[{window}:1h]\n)"


def window_observed(window: str, config: MixinConfig = DEFAULT, *, recorded: bool = True) -> str:
    """Share (0..1) of `window` at which some target reported the version AVAILABLE.

    Recorded: the hourly shares summed over the window's hours; an hour without any report counts
    as 0, so an hour-long gap is not averaged away. Raw: the share of the window's minutes."""
    if recorded:
        return f"clamp_max(sum_over_time({OBSERVED_1H}[{window}]) / {_hours(window)}, 1)"
    steps = f"scalar(count_over_time(vector(1)[{window}:1m]))"
    return f"count_over_time((\n{_indent(available(config), 4)} == 1\n  )[{window}:1m])\n/ {steps}"


def window_worst_gap(window: str, config: MixinConfig = DEFAULT) -> str:
    """Share of `window` the replica with the most scrape gaps was in one, per version."""
    return f"max by ({config.by()}) (sum_over_time({GAP_1H}[{window}])) / {_hours(window)}"


def report_coverage(window: float, step: float) -> str:
    """The report's coverage query over the hourly series (`tfs_traffic.report.queries.coverage_query`'s
    shape): per version the steps (of `step` seconds) it was observed and the steps its worst
    replica was in a scrape gap, tagged `tfs_q`. In the hours of several namespaces the best and the
    worst one count."""
    w, by, per_step = promql.duration(window), promql.BY_VERSION, f"{3600 / step:g}"
    return promql.tagged(
        "tfs_q",
        {
            "observed": f"max by ({by}) (sum_over_time({OBSERVED_1H}[{w}])) * {per_step}",
            "gap": f"max by ({by}) (sum_over_time({GAP_1H}[{w}])) * {per_step}",
        },
    )


def report_queries(window: float, lookback: float = 0.0, recent: float = 3600.0) -> dict[str, str]:
    """The report's costly long-window queries (`tfs_traffic.report.queries.Queries` fields) over the hourly series.

    Same shapes as the raw ones: results per (model_name, model_version) tagged `tfs_source`
    ("rules"). The calls are already counted, so they are handed to the report's
    `promql.combine_calls` as a lone `max` input (no earlier value, no reset: the count is the
    max). `recent` is the time since the hourly group's last evaluation: its calls come from the raw
    counters (`calls_recently`), in a query of their own (`recent`, added to `calls`), because one
    query that reads recorded series over the window and raw ones over minutes has every raw
    selector look through the window's blocks. The last call is the end of the last hour with
    recorded calls within `lookback` (as far back as the rules were recorded or backfilled).
    """
    w, by, source = promql.duration(window), promql.BY_VERSION, promql.SOURCE_LABEL

    def counted(expr: str) -> str:
        return promql.tag(promql.tag(f"sum by ({by}) ({expr})", source, "rules"), promql.INPUT_LABEL, "max")

    since = promql.duration(max(window, lookback))
    # The end of each hour with recorded calls (evaluation times are not aligned to the hour, so
    # each 1h step looks back an hour for the sample that covers it).
    last_call = f"(max by ({by}) (last_over_time({CALLS_1H}[1h]) > 0) * 0 + time())"
    return {
        "last_call": f"max_over_time({last_call}[{since}:1h])",
        "calls": counted(window_calls(w, recent="")),
        "recent": counted(calls_recently(promql.duration(recent))) if recent > 0 else "",
        "qps": promql.tag(f"max by ({by}) ({window_max_hourly_qps(w)})", source, "rules"),
        "hourly": promql.tag(f"sum by ({by}) (last_over_time({CALLS_1H}[1h]))", source, "rules"),
    }


def rules_reach(window: str) -> str:
    """Where the hourly rules' history starts and ends, in one query tagged `tfs_q`: `start`, non-empty
    when they ran at the window's start (recorded or backfilled: a sample within an hour of it, each
    sample covering the hour before it); `last`, the time of their last evaluation when it is at most
    an hour old (they still run).

    Using recorded series for a window they do not cover, or that they stopped recording, would
    undercount calls and call a busy version idle, so the report asks this first and falls back to
    raw queries otherwise; the time since the last evaluation is what it counts from raw counters.
    """
    offset = parse_duration(window) - 3600
    at_start = f"{OBSERVED_1H}[2h]" + (f" offset {promql.duration(offset)}" if offset > 0 else "")
    # A subquery of timestamp() gives the samples' own times (a range function would give the query's).
    last = f"max(last_over_time(timestamp({OBSERVED_1H})[1h5m:1m]))"
    return promql.tagged("tfs_q", {"start": f"count(present_over_time({at_start}))", "last": last})


# ---------------------------------------------------------------------------------------------------
# Recording rules


def recording_rule_groups(config: MixinConfig = DEFAULT) -> list[dict[str, Any]]:
    """The `groups` entries of a Prometheus rule file holding the recording rules."""
    return [
        {
            "name": RULES_GROUP,
            "interval": config.interval,
            "rules": [
                {"record": CALLS_RATE5M, "expr": calls_rate("5m", config)},
                {"record": CALLS_RATE1H, "expr": calls_rate("1h", config)},
                {"record": AVAILABLE, "expr": available(config)},
                {"record": CALLS_BY_CODE_RATE5M, "expr": calls_by_code_rate(config)},
                {"record": ESTIMATED_RAM, "expr": estimated_ram(config)},
            ],
        },
        {
            "name": HOURLY_GROUP,
            "interval": "1h",
            "rules": [
                {"record": CALLS_1H, "expr": calls_per_hour(config)},
                {"record": OBSERVED_1H, "expr": observed_per_hour(config)},
                {"record": GAP_1H, "expr": gap_per_hour(config)},
            ],
        },
    ]


# ---------------------------------------------------------------------------------------------------
# Alerts


def _hours(window: str) -> int:
    return int(parse_duration(window) // 3600)


def _on(config: MixinConfig) -> str:
    return f"on ({config.by()})"


def judged_expr(config: MixinConfig = DEFAULT) -> str:
    """The versions `tfs-traffic report --window idle_window` judges on coverage (docs/verdicts.md,
    rules 1-5 do not keep them): AVAILABLE now, not one call in the window (the report's recorded
    count), not the model's only version, and neither the version the server sends requests without a
    version to nor one a version label points at (the status poller's answers, docs/metrics.md).

    PromQL cannot compare versions (label strings) or read a models config: without the poller's
    series for a model nothing is known to be its latest, so none of its versions is judged.
    """
    w, on, model_on = config.idle_window, _on(config), f"on ({config.model_by()})"
    m = config.matchers()
    latest = f"max by ({config.by()}) ({contract.SIDECAR_LATEST}{m}) == 1"
    labelled = f"max by ({config.by()}) ({contract.SIDECAR_LABEL}{m}) == 1"
    return (
        f"({AVAILABLE} == 1)\n"
        f"unless {on} (\n{_indent(window_calls(w, config))}\n  > 0\n)\n"
        f"unless {model_on} (count by ({config.model_by()}) ({AVAILABLE} == 1) == 1)\n"
        f"unless {on} ({latest})\n"
        f"unless {on} ({labelled})\n"
        f"and {model_on} group by ({config.model_by()}) ({latest})"
    )


def idle_expr(config: MixinConfig = DEFAULT) -> str:
    """The report's `retire: idle`: judged (`judged_expr`), no replica in a scrape gap for more than
    `max_gap_ratio` of the window, observed for at least the rest of it, and call counters exist
    (else the report says `no-call-data`). A sidecar-only version nobody ever called has no call
    series at all: `unless ... > 0`, never `== 0`, keeps it."""
    w, on, r = config.idle_window, _on(config), config.max_gap_ratio
    return (
        f"{judged_expr(config)}\n"
        f"unless {on} ({window_worst_gap(w, config)} > {r:g})\n"
        f"and {on} ({window_observed(w)} >= {1 - r:g})\n"
        f"and on () group(last_over_time({CALLS_1H}[{w}]))"
    )


def idle_ram(config: MixinConfig = DEFAULT) -> str:
    """The memory held by idle versions per model (and namespace): the recorded estimate of each
    version the idle alert's expression selects (the versions the alert fires for), summed."""
    model_by = config.model_by()
    return (
        f"sum by ({model_by}) (\n  {ESTIMATED_RAM}\n  and {_on(config)}\n  (\n{_indent(idle_expr(config), 4)}\n  )\n)"
    )


def not_found_expr(config: MixinConfig = DEFAULT) -> str:
    """The sidecar answered NOT_FOUND: a client asked for a version that is not loaded."""
    m = config.matchers('code="NOT_FOUND"')
    calls = once_per_target(f"increase({contract.SIDECAR_CALLS}{m}[{config.unavailable_window}])", config)
    return f"sum by ({config.by()}) ({calls}) > 0"


def unloaded_in_use_expr(config: MixinConfig = DEFAULT) -> str:
    """The version went unavailable within the window while it still had calls: its clients now fail.

    This is the signal for patched-only set-ups, where nobody counts the failed calls per version.
    """
    w, on = config.unavailable_window, _on(config)
    return (
        f"(max_over_time({CALLS_RATE5M}[{w}]) > 0)\n"
        f"and {on} ({AVAILABLE} == 0)\n"
        f"and {on} (max_over_time({AVAILABLE}[{w}]) == 1)"
    )


def coverage_low_expr(config: MixinConfig = DEFAULT) -> str:
    """The report's `unknown: scrape-gaps`: judged (`judged_expr`), and a replica serving it was in a
    scrape gap (`up == 0`) for more than `max_gap_ratio` of the window."""
    w, on = config.idle_window, _on(config)
    return f"{judged_expr(config)}\nand {on} ({window_worst_gap(w, config)} > {config.max_gap_ratio:g})"


def drop_band_lower(config: MixinConfig = DEFAULT) -> str:
    """The lower edge of the traffic band, in calls per hour, learned from the version's own history.

    The seed's band is avg - min(max - avg, avg - min) over the window. It uses the narrower side,
    so for traffic that is high most of the day and routinely low at night (avg close to max), the
    lower edge lands far above the nightly level and fires every night. The edge used here is the
    smaller of the seed's edge and a low quantile (`drop_quantile`) of the same hourly history: no
    level the version sits at for several hours a week can count as a drop, and one outlier hour
    (a deploy, a scrape gap) moves a quantile much less than the min it would become. The edge is
    then lowered by `drop_margin`, because hourly counts are noisy (Poisson: at 600 calls an hour
    one standard deviation is 4%), so a normal quiet hour just under the quantile does not page.
    """
    w = config.drop_window
    avg, mx, mn = (f"{fn}_over_time({CALLS_1H}[{w}])" for fn in ("avg", "max", "min"))
    quantile = f"quantile_over_time({config.drop_quantile:g}, {CALLS_1H}[{w}])"
    # min(a, b) for vectors with identical label sets is `(a < b) or b`; `-` binds tighter than `<`.
    return (
        f"{1 - config.drop_margin:g} * (\n"
        "  (\n"
        f"    {avg}\n"
        "    - (\n"
        f"      ({mx} - {avg} < {avg} - {mn})\n"
        "      or\n"
        f"      ({avg} - {mn})\n"
        "    )\n"
        f"    < {quantile}\n"
        "  )\n"
        "  or\n"
        f"  {quantile}\n"
        ")"
    )


def drop_expr(config: MixinConfig = DEFAULT) -> str:
    """Calls in the last hour fell below the band, for a loaded version that serves traffic."""
    w, on = config.drop_window, _on(config)
    return (
        f"(3600 * {CALLS_RATE1H})\n"
        f"< {on}\n"
        f"(\n{_indent(drop_band_lower(config))}\n)\n"
        f"and {on} (avg_over_time({CALLS_1H}[{w}]) >= {config.drop_min_hourly_calls:g})\n"
        f"and {on} ({AVAILABLE} == 1)"
    )


def fading_expr(config: MixinConfig = DEFAULT) -> str:
    """A linear fit of the hourly calls reaches zero within the horizon, while calls still come in."""
    lookback, horizon, on = config.fading_lookback, config.fading_horizon, _on(config)
    seconds = int(parse_duration(horizon))
    return (
        f"(predict_linear({CALLS_1H}[{lookback}], {seconds}) <= 0)\n"
        f"and {on} ({CALLS_RATE1H} > 0)\n"
        f"and {on} (count_over_time({CALLS_1H}[{lookback}]) >= {_hours(config.fading_min_history)})\n"
        f"and {on} ({AVAILABLE} == 1)"
    )


def _alert(
    config: MixinConfig,
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    runbook: str,
    for_: str = "",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    annotations = {"summary": summary, "description": description, "runbook": runbook}
    if config.runbook_url:
        annotations["runbook_url"] = f"{config.runbook_url}#{name.lower()}"
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **(labels or {})}
    rule["annotations"] = annotations
    return rule


_VERSION = "{{ $labels.model_name }} version {{ $labels.model_version }}"


def _held(config: MixinConfig) -> str:
    """The idle alert's sentence on memory, from the recorded estimate of its version (Prometheus'
    `query` template function); nothing when no estimate exists (a remote base path, no poller), or
    without `memory_in_description`."""
    if not config.memory_in_description:
        return ""
    matchers = ",".join(f"{label}=%q" for label in config.group_labels)
    args = " ".join(f"$labels.{label}" for label in config.group_labels)
    return (
        f"{{{{ with printf `{ESTIMATED_RAM}{{{matchers}}}` {args} | query }}}}{{{{ with first . }}}}"
        " It holds about {{ . | value | humanize1024 }}B per server by TF Serving's own estimate (its files x 1.2)."
        "{{ end }}{{ end }}"
    )


_WHERE = "{{ with $labels.namespace }} in namespace {{ . }}{{ end }}"


def alert_rule_groups(config: MixinConfig = DEFAULT) -> list[dict[str, Any]]:
    """The `groups` entries of a Prometheus rule file holding the alerts, and the recording rule that
    reads their firing set (the memory held by idle versions).

    ModelVersionIdle and ModelVersionTrafficCoverageLow have no `for`: their expressions already
    span the whole window (and change at most once an hour), so a `for` would only make them lag
    the report by that long."""
    idle_w, drop_w = config.idle_window, config.drop_window
    rules = [
        _alert(
            config,
            IDLE_ALERT,
            idle_expr(config),
            "info",
            f"Model {_VERSION} is loaded but was not called for {idle_w}: `tfs-traffic report` retires it.",
            f"{_VERSION}{_WHERE} has been AVAILABLE, observed and scraped for the last {idle_w} without a "
            "single call (patched TF Serving and sidecar counters), and it is neither the model's only or "
            f"latest version nor the target of a version label. It holds memory for nothing.{_held(config)}",
            f"Run `tfs-traffic report --window {idle_w}` for the whole picture (its last call, a note when a "
            "monthly client may still use it), then remove the version from the model config.",
        ),
        _alert(
            config,
            "ModelVersionCalledWhileUnavailable",
            not_found_expr(config),
            "warning",
            f"Clients call {_VERSION}, which is not loaded.",
            f"The sidecar answered NOT_FOUND for {_VERSION}{_WHERE} "
            f"{{{{ $value | humanize }}}} times in the last {config.unavailable_window}.",
            "Find the clients (sidecar access logs, client metrics) and move them to a loaded version, "
            "or load the version again.",
            labels={"reason": "not-found"},
        ),
        _alert(
            config,
            "ModelVersionCalledWhileUnavailable",
            unloaded_in_use_expr(config),
            "warning",
            f"{_VERSION} was unloaded while clients still called it.",
            f"{_VERSION}{_WHERE} stopped being AVAILABLE within the last {config.unavailable_window}, "
            "and it was still receiving calls; those clients now get errors.",
            "Load the version again (restore it in the model config) or move its clients first.",
            labels={"reason": "unloaded-in-use"},
        ),
        _alert(
            config,
            "ModelVersionTrafficCoverageLow",
            coverage_low_expr(config),
            "warning",
            f"A pod serving {_VERSION} was not scraped for too long to trust its idleness.",
            f"Over the last {idle_w}, a pod serving {_VERSION}{_WHERE} was down (`up == 0`) for more than "
            f"{config.max_gap_ratio:.0%} of the time; calls in the gaps may be missing. The version had no "
            "call otherwise and is not kept for another reason: `tfs-traffic report` answers "
            "`unknown: scrape-gaps`.",
            "Check the scrape targets (`up`), scrape timeouts and pod restarts; the version can be judged "
            "once the gaps are out of the window.",
        ),
        _alert(
            config,
            "ModelVersionTrafficDrop",
            drop_expr(config),
            "warning",
            f"Traffic of {_VERSION} dropped below its usual band.",
            f"{_VERSION}{_WHERE} got fewer calls in the last hour than the lower edge of the band learned "
            f"from its own hourly calls over the last {drop_w}.",
            "Check the clients and the path to this version (deploys, routing, errors by status code on "
            "the dashboard); if the drop is a planned migration, silence the alert.",
            for_=config.drop_for,
        ),
        _alert(
            config,
            "ModelVersionTrafficFading",
            fading_expr(config),
            "info",
            f"Traffic of {_VERSION} is fading out.",
            f"A linear fit of the hourly calls of {_VERSION}{_WHERE} over the last {config.fading_lookback} "
            f"reaches zero within {config.fading_horizon}.",
            "Plan its retirement: confirm with the clients, then watch for ModelVersionIdle and run "
            "`tfs-traffic report --forecast`.",
            for_="1h",
        ),
    ]
    # The memory the idle versions hold reads recorded series (the idle alert's expression): it lives
    # beside the alerts, so that `recording_rule_groups` stays one backfill pass over raw series.
    memory = [{"record": IDLE_RAM, "expr": idle_ram(config)}]
    return [
        {"name": ALERTS_GROUP, "interval": config.interval, "rules": rules},
        {"name": MEMORY_GROUP, "interval": config.interval, "rules": memory},
    ]
