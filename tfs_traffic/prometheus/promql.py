"""The PromQL behind the retirement report, one small pure function per quantity.

Each function takes a metric name of the contract (docs/metrics.md) — the patched server's or
the sidecar's — and returns a PromQL expression string, so recording rules can reuse exactly what
the report asks. Every expression keeps `model_name` and `model_version`; per-series expressions keep
all labels. Durations are seconds and are rendered as Prometheus durations.

Two sources of the same quantity are never summed: `by_source` tags each with `tfs_source` in one
query, and the report takes the max per version (one request seen by the sidecar and the patched
server counts once).
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tfs_traffic import contract
from tfs_traffic.durations import format_duration
from tfs_traffic.errors import UsageError

BY_VERSION = f"{contract.MODEL}, {contract.VERSION}"
SOURCE_LABEL = "tfs_source"
# How far before the window's start to look for a counter's last value there (its baseline).
# Longer only costs more samples; a series not seen then counts as born inside the window, which
# can only overcount calls (the safe side).
BASELINE_LOOKBACK = 3600.0


def duration(seconds: float) -> str:
    """A Prometheus duration (`604800` -> `7d`); milliseconds when `seconds` is not whole."""
    ms = round(seconds * 1000)
    return format_duration(ms / 1000) if ms % 1000 == 0 else f"{ms}ms"


def tag(expr: str, label: str, value: str) -> str:
    """`expr` with every result's `label` set to `value`."""
    return f'label_replace({expr}, "{label}", "{value}", "", "")'


def tagged(label: str, parts: Mapping[str, str], *, parenthesised: bool = False) -> str:
    """Several expressions in one query, each result tagged `label` = its name: `or` alone would
    keep only the first of two results with the same labels. `parenthesised` wraps each part."""
    return " or ".join(f"({tag(e, label, n)})" if parenthesised else tag(e, label, n) for n, e in parts.items())


def any_of(values: Sequence[str]) -> str:
    """A PromQL string literal holding a regex that matches exactly `values` (for `=~`)."""
    escaped = "|".join(re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", v) for v in sorted(set(values)))
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def calls_per_series(counter: str, window: float, lookback: float = BASELINE_LOOKBACK) -> str:
    """Calls in the window ending at the evaluation time, per counter series, reset-aware and exact
    wherever the data allows (`increase()` alone extrapolates and misses a series' first value).

    In order (`or` keeps the first branch that has the series):
    1. no reset, and the series had a value before the window (its last one within `lookback`):
       max in the window minus that value — exact.
    2. no reset inside the window, but no earlier value (the version became AVAILABLE inside the
       window, so the counter started at 0), or a reset right at the window's start (the window's
       values all sit below the earlier one): the max is the count.
    3. resets inside the window, series born inside it: the larger of increase() and the max, so a
       first value that increase() cannot see is never lost.
    4. otherwise increase(), which handles resets.
    """
    w, before = duration(window), f"last_over_time({counter}[{duration(lookback)}] offset {duration(window)})"
    window_max, has_reset = f"max_over_time({counter}[{w}])", f"resets({counter}[{w}]) > 0"
    increase = f"increase({counter}[{w}])"
    return (
        f"(({window_max} - {before}) unless ({has_reset}) unless (min_over_time({counter}[{w}]) < {before}))"
        f" or ({window_max} unless ({has_reset}))"
        f" or (({window_max} > {increase}) unless {before})"
        f" or {increase}"
    )


def calls_since(counter: str, window: float, lookback: float = BASELINE_LOOKBACK) -> str:
    """`calls_per_series` for the last minutes before the recording rules' next hourly count, with
    fewer passes (a third of the time) and two departures, until the next hourly count (exact):

    1. no reset since `lookback` before the window: max minus the value before the window (exact);
    2. no reset inside the window: the max — exact for a series born in it; after a reset in the
       `lookback` before the window, also the calls between that reset and the window (more, so
       never a busy version called idle);
    3. otherwise increase(). A series born inside the window that also reset inside it counts
       increase() alone, without its first value (`calls_per_series` takes the larger of the two).
    """
    w, before = duration(window), f"last_over_time({counter}[{duration(lookback)}] offset {duration(window)})"
    window_max = f"max_over_time({counter}[{w}])"
    return (
        f"(({window_max} - {before}) unless (resets({counter}[{duration(window + lookback)}]) > 0))"
        f" or ({window_max} unless (resets({counter}[{w}]) > 0))"
        f" or increase({counter}[{w}])"
    )


INPUT_LABEL = "tfs_input"


def calls_inputs(counter: str, window: float, lookback: float = BASELINE_LOOKBACK) -> str:
    """The inputs of `calls_per_series` as one query, each result tagged `tfs_input` = `max`, `min`,
    `resets`, `increase` or `before`, for `combine_calls` to apply the same rules in Python.

    Same answer, but Prometheus reads the window four times instead of eight (PromQL evaluates
    every branch of `or` and shares no subexpression): the report uses this; recording rules,
    which run incrementally, can use `calls`.
    """
    w = duration(window)
    parts = {
        "max": f"max_over_time({counter}[{w}])",
        "min": f"min_over_time({counter}[{w}])",
        "resets": f"resets({counter}[{w}])",
        "increase": f"increase({counter}[{w}])",
        "before": f"last_over_time({counter}[{duration(lookback)}] offset {w})",
    }
    return tagged(INPUT_LABEL, parts)


def combine_calls(inputs: Mapping[str, float]) -> float | None:
    """Calls of one series from its `calls_inputs` values: the rules of `calls_per_series`."""
    if "max" not in inputs:
        return None
    top, before = inputs["max"], inputs.get("before")
    if inputs.get("resets", 0) == 0:
        if before is not None and inputs.get("min", top) >= before:
            return top - before
        return top
    increase = inputs.get("increase", 0.0)
    return max(increase, top) if before is None else increase


def calls(counter: str, window: float, lookback: float = BASELINE_LOOKBACK) -> str:
    """Calls in the window per version, summed over replicas (and the sidecar's `api`/`code`:
    any call that names a version, even a failed one, shows that a client uses it)."""
    return f"sum by ({BY_VERSION}) ({calls_per_series(counter, window, lookback)})"


def max_hourly_qps(counter: str, window: float) -> str:
    """The busiest hour's calls per second in the window, per version (rates per series first,
    then summed over replicas, sampled hourly)."""
    return f"max_over_time(sum by ({BY_VERSION}) (rate({counter}[1h]))[{duration(window)}:1h])"


def hourly_calls(counter: str) -> str:
    """Calls in the hour before each evaluation time, per version (for range queries with step 1h)."""
    return f"sum by ({BY_VERSION}) (increase({counter}[1h]))"


def available(gauge: str) -> str:
    """The series of versions AVAILABLE at the evaluation time, one per serving instance."""
    return f"{gauge} == 1"


def state_at_window_start(gauge: str, window: float, lookback: float = 86400.0, grace: float = 300.0) -> str:
    """Per gauge series, its last value in [start - lookback, start + grace] (1: AVAILABLE when the
    window started). The grace (Prometheus' default lookback, 5 min) keeps a history whose first
    scrape lands just after the window's start from looking "loaded inside the window"."""
    if window <= grace:
        return f"last_over_time({gauge}[{duration(lookback)}] offset {duration(window)})"
    return f"last_over_time({gauge}[{duration(lookback + grace)}] offset {duration(window - grace)})"


# ---------------------------------------------------------------------------------------------------
# Fleet-wide observation, scrape gaps and the last call: pods come and go.
#
# Prometheus evaluates a subquery's inner expression over all its steps at once and counts every
# selector's full matrix (series x steps) against --query.max-samples, *before* any aggregation.
# So these expressions aggregate first and compare after (`max by (...) (G) == 1` holds one copy,
# `max by (...) (G == 1)` two), and the window is cut into `Piece`s whose matrices fit the limit.

HOST_LABEL = "tfs_host"
# Which replica a series comes from: its pod (cluster, namespace, pod) and, for series without a
# pod label, the instance's host (a pod's server and sidecar targets share the pod's IP).
REPLICA_LABELS = ("cluster", "namespace", "pod", HOST_LABEL)
BY_REPLICA = ", ".join(REPLICA_LABELS)


_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'


def check_matchers(text: str) -> str:
    """`text` as PromQL label matchers (`a="1", b=~"x.*"`, braces optional), normalised; a
    UsageError naming the problem otherwise, before any query is sent."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    body = body.strip().rstrip(",")
    if not body:
        return ""
    if not re.fullmatch(f"{_MATCHER}(?:,{_MATCHER})*", body):
        raise UsageError(
            f'--selector expects PromQL label matchers like \'cluster="eu-1",namespace="ml"\', got {text!r}'
        )
    return body


def select(metric: str, matchers: str = "", *extra: str) -> str:
    """`metric{matchers,extra...}`: the report's `--selector` and any narrowing of its own."""
    parts = [p for p in (matchers, *extra) if p]
    return metric + ("{" + ",".join(parts) + "}" if parts else "")


def keyed(expr: str) -> str:
    """`expr` with `tfs_host` = the host part of `instance` (for `BY_REPLICA`)."""
    return f'label_replace({expr}, "{HOST_LABEL}", "$1", "instance", "(.*?)(?::[0-9]+)?")'


@dataclass(frozen=True)
class Piece:
    """One part of a window: a subquery `[span:step] offset offset`."""

    span: float
    offset: float

    def subquery(self, step: float) -> str:
        offset = f" offset {duration(self.offset)}" if self.offset > 0 else ""
        return f"[{duration(self.span)}:{duration(step)}]{offset}"


def pieces(at: float, window: float, step: float, steps_per_piece: int) -> list[Piece]:
    """`[window:step]` at `at` cut into pieces of at most `steps_per_piece` steps that together
    evaluate exactly the steps the whole subquery would (steps are multiples of `step`). Inner
    boundaries lie half a step between two steps, so engines that include a range's start
    (Prometheus 2) and those that do not (VictoriaMetrics, Prometheus 3) count the same steps."""
    step_ms, at_ms = round(step * 1000), round(at * 1000)
    last = at_ms // step_ms * step_ms
    start_ms = round((at - window) * 1000)
    size = max(1, steps_per_piece) * step_ms
    out: list[Piece] = []
    end = at_ms
    while True:
        lower = last - (len(out) + 1) * size + step_ms // 2
        if lower <= start_ms:
            out.append(Piece((end - start_ms) / 1000, (at_ms - end) / 1000))
            return out
        out.append(Piece((end - lower) / 1000, (at_ms - end) / 1000))
        end = lower


def fleet_available(gauges: Mapping[str, str], matchers: str = "") -> str:
    """1 per version while at least one target, of either source, reports it AVAILABLE."""
    return f"{max_of_sources({s: f'max by ({BY_VERSION}) ({select(g, matchers)})' for s, g in gauges.items()})} == 1"


def in_gap(gauges: Mapping[str, str], matchers: str, lookback: float, up: bool, *narrow: str) -> str:
    """1 per replica and version while the replica is in a scrape gap for it: none of its targets
    reports the version, the last report (within `lookback`) said AVAILABLE, and, with `up`, one
    of its targets was not scraped (`up == 0`). A pod that left service discovery has no `up` at
    all, so it is not in a gap. Without `up` (data that has none) every such hole is a gap.
    `narrow`: matchers that keep only the pods that can be in a gap (cost follows them)."""
    by = f"{BY_REPLICA}, {BY_VERSION}"
    since = duration(lookback)
    last = keyed(by_source({s: f"last_over_time({select(g, matchers, *narrow)}[{since}])" for s, g in gauges.items()}))
    reported = keyed(by_source({s: select(g, matchers, *narrow) for s, g in gauges.items()}))
    hole = f"(max by ({by}) ({last}) == 1 unless on ({by}) group by ({by}) ({reported}))"
    if not up:
        return hole
    down = keyed(f"{select('up', matchers, *narrow)} == 0")
    return f"({hole} and on ({BY_REPLICA}) group by ({BY_REPLICA}) ({down}))"


def called(counter: str, matchers: str = "", step: float = 3600.0) -> str:
    """Per counter series, at each evaluation: its value went up within the last `step` (or it
    has calls after a reset, or it was born with calls: no value `step` earlier)."""
    c = select(counter, matchers)
    return f"(({c} > 0) unless ({c} == {c} offset {duration(step)}))"


def last_called(counters: Mapping[str, str], matchers: str = "", step: float = 3600.0) -> str:
    """Per version, at each evaluation: the evaluation time if some series of either source had a
    call in the `step` before it. Each source is aggregated before it is tagged: a subquery runs
    this at every step, and tagging every series there costs more than the comparisons."""
    per_source = {s: f"max by ({BY_VERSION}) ({called(c, matchers, step)})" for s, c in counters.items()}
    return f"({max_of_sources(per_source)} * 0 + time())"


def by_source(exprs: Mapping[str, str]) -> str:
    """One query for several sources of the same quantity, each result tagged with its source."""
    return tagged(SOURCE_LABEL, exprs, parenthesised=True)


def max_of_sources(exprs: Mapping[str, str], by: str = BY_VERSION) -> str:
    """The max over sources per `by` group, in PromQL: for range queries, where the report's
    Python-side max is not available (export, forecast)."""
    return f"max by ({by}) ({by_source(exprs)})"


# The metrics of each source, in the order the report lists them.
CALL_SOURCES: Mapping[str, str] = {"patched": contract.PATCHED_CALLS, "sidecar": contract.SIDECAR_CALLS}
AVAILABLE_SOURCES: Mapping[str, str] = {"patched": contract.PATCHED_AVAILABLE, "sidecar": contract.SIDECAR_AVAILABLE}
