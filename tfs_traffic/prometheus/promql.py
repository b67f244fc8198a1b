"""The PromQL behind the retirement report, one small pure function per quantity.

Each function takes a metric name of the contract (design.md section 4) — the patched server's or
the sidecar's — and returns a PromQL expression string, so recording rules can reuse exactly what
the report asks. Every expression keeps `model_name` and `model_version`; per-series expressions keep
all labels. Durations are seconds and are rendered as Prometheus durations.

Two sources of the same quantity are never summed: `by_source` tags each with `tfs_source` in one
query, and the report takes the max per version (one request seen by the sidecar and the patched
server counts once).
"""

from collections.abc import Mapping

from tfs_traffic import contract
from tfs_traffic.durations import format_duration

BY_VERSION = f"{contract.MODEL}, {contract.VERSION}"
SOURCE_LABEL = "tfs_source"
# How far before the window's start to look for a series' last value there (a counter's baseline,
# a gauge's state). Longer only costs more samples; a series not seen then counts as born inside
# the window, which can only overcount calls (the safe side).
DEFAULT_LOOKBACK = 3600.0


def d(seconds: float) -> str:
    """A Prometheus duration for whole seconds (`604800` -> `7d`)."""
    return format_duration(seconds)


def calls_per_series(counter: str, window: float, lookback: float = DEFAULT_LOOKBACK) -> str:
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
    w, before = d(window), f"last_over_time({counter}[{d(lookback)}] offset {d(window)})"
    window_max, has_reset = f"max_over_time({counter}[{w}])", f"resets({counter}[{w}]) > 0"
    increase = f"increase({counter}[{w}])"
    return (
        f"(({window_max} - {before}) unless ({has_reset}) unless (min_over_time({counter}[{w}]) < {before}))"
        f" or ({window_max} unless ({has_reset}))"
        f" or (({window_max} > {increase}) unless {before})"
        f" or {increase}"
    )


INPUT_LABEL = "tfs_input"


def calls_inputs(counter: str, window: float, lookback: float = DEFAULT_LOOKBACK) -> str:
    """The inputs of `calls_per_series` as one query, each result tagged `tfs_input` = `max`, `min`,
    `resets`, `increase` or `before`, for `combine_calls` to apply the same rules in Python.

    Same answer, but Prometheus reads the window four times instead of eight (PromQL evaluates
    every branch of `or` and shares no subexpression): the report uses this; recording rules,
    which run incrementally, can use `calls`.
    """
    w = d(window)
    parts = {
        "max": f"max_over_time({counter}[{w}])",
        "min": f"min_over_time({counter}[{w}])",
        "resets": f"resets({counter}[{w}])",
        "increase": f"increase({counter}[{w}])",
        "before": f"last_over_time({counter}[{d(lookback)}] offset {w})",
    }
    return " or ".join(f'label_replace({expr}, "{INPUT_LABEL}", "{name}", "", "")' for name, expr in parts.items())


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


def calls(counter: str, window: float, lookback: float = DEFAULT_LOOKBACK) -> str:
    """Calls in the window per version, summed over replicas (and the sidecar's `api`/`code`:
    any call that names a version, even a failed one, shows that a client uses it)."""
    return f"sum by ({BY_VERSION}) ({calls_per_series(counter, window, lookback)})"


def max_hourly_qps(counter: str, window: float) -> str:
    """The busiest hour's calls per second in the window, per version (rates per series first,
    then summed over replicas, sampled hourly)."""
    return f"max_over_time(sum by ({BY_VERSION}) (rate({counter}[1h]))[{d(window)}:1h])"


def hourly_calls(counter: str) -> str:
    """Calls in the hour before each evaluation time, per version (for range queries with step 1h)."""
    return f"sum by ({BY_VERSION}) (increase({counter}[1h]))"


def available(gauge: str) -> str:
    """The series of versions AVAILABLE at the evaluation time, one per serving instance."""
    return f"{gauge} == 1"


def available_steps(gauge: str, window: float, step: float) -> str:
    """Per gauge series, at how many of the window's evaluation steps (every `step` seconds,
    aligned as Prometheus aligns subqueries) the version was AVAILABLE there; missing samples and
    a gauge at 0 both count as not observed."""
    return f"count_over_time(({gauge} == 1)[{d(window)}:{d(step)}])"


def state_at_window_start(gauge: str, window: float, lookback: float = 86400.0, grace: float = 300.0) -> str:
    """Per gauge series, its last value in [start - lookback, start + grace] (1: AVAILABLE when the
    window started). The grace (Prometheus' default lookback, 5 min) keeps a history whose first
    scrape lands just after the window's start from looking "loaded inside the window"."""
    if window <= grace:
        return f"last_over_time({gauge}[{d(lookback)}] offset {d(window)})"
    return f"last_over_time({gauge}[{d(lookback + grace)}] offset {d(window - grace)})"


def with_source(expr: str, source: str) -> str:
    """`expr` with every result tagged `tfs_source=<source>`."""
    return f'label_replace({expr}, "{SOURCE_LABEL}", "{source}", "", "")'


def by_source(exprs: Mapping[str, str]) -> str:
    """One query for several sources of the same quantity, each result tagged with its source."""
    return " or ".join(f"({with_source(expr, source)})" for source, expr in exprs.items())


def max_of_sources(exprs: Mapping[str, str], by: str = BY_VERSION) -> str:
    """The max over sources per `by` group, in PromQL: for range queries, where the report's
    Python-side max is not available (export, forecast)."""
    return f"max by ({by}) ({by_source(exprs)})"


# The metrics of each source, in the order the report lists them.
CALL_SOURCES: Mapping[str, str] = {"patched": contract.PATCHED_CALLS, "sidecar": contract.SIDECAR_CALLS}
AVAILABLE_SOURCES: Mapping[str, str] = {"patched": contract.PATCHED_AVAILABLE, "sidecar": contract.SIDECAR_AVAILABLE}
