"""The report's PromQL: a fixed set of queries whatever the number of versions or pods.

Every quantity covers both sources (patched server, sidecar), tagged `tfs_source` so the report can
take the max per version; several quantities share one query, each result tagged `tfs_q`. Raw
series are read through the builders of `tfs_traffic.prometheus.promql`; with the recording rules
(`tfs_traffic.queries.mixin`) covering the window, the costly long-window queries read the hourly
series instead.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tfs_traffic import contract
from tfs_traffic.prometheus import promql
from tfs_traffic.queries import mixin
from tfs_traffic.report.model import Options

QUERY_LABEL = "tfs_q"
# Points one piece of a subquery may hold (the default --query.max-samples is 50M): the report
# sizes its pieces from the number of series the inventory found, twice that for pods gone since.
PIECE_BUDGET = 20_000_000
LAST_CALL_STEP = 3600.0  # the last call's resolution: an hour, or whole hours in large fleets
LAST_CALL_BUDGET = 20_000_000  # series x steps of the raw last-call query before its step grows


@dataclass(frozen=True)
class Queries:
    """The queries that follow the inventory; the coverage query also depends on what it found
    (`coverage_query`). The last call is asked in pieces of the lookback (one request each; the
    answer is the max over them)."""

    calls: str
    qps: str
    hourly: str
    last_call: list[str]
    recent: str = ""  # with the recording rules: the raw calls since their last run, added to `calls`


def _series_estimate(inventory_series: int) -> int:
    """Series a window may hold for `inventory_series` now: twice as many (pods replaced since)."""
    return max(1, 2 * inventory_series)


def inventory_query(options: Options, raw_gaps: bool = True) -> str:
    """Versions AVAILABLE now (one result per serving target), each gauge series' state at the
    window's start, the labels the servers resolve to each version (the status poller's answers),
    TF Serving's RAM estimate per version now (the sidecar's gauge, max over targets:
    docs/metrics.md), and with `raw_gaps` every target's lowest `up` in the window (0: a failed
    scrape; none at all: data without `up`), for the raw scrape gaps."""
    gauges, w, sel, by = promql.AVAILABLE_SOURCES, options.window, options.selector, promql.BY_VERSION
    start = {s: f"max by ({by}) ({promql.state_at_window_start(promql.select(m, sel), w)})" for s, m in gauges.items()}
    parts = {
        "now": promql.by_source({s: promql.available(promql.select(m, sel)) for s, m in gauges.items()}),
        "start": promql.max_of_sources(start),
        "labels": f"max by ({by}, {contract.VERSION_LABEL}) ({promql.select(contract.SIDECAR_LABEL, sel)}) == 1",
        "ram": f"max by ({by}) ({promql.select(contract.SIDECAR_ESTIMATED_RAM, sel)})",
    }
    if raw_gaps:
        lowest = f"min_over_time({promql.select('up', sel)}[{promql.duration(w)}])"
        parts["up"] = f"min by ({promql.BY_REPLICA}, instance) ({promql.keyed(lowest)})"
    return promql.tagged(QUERY_LABEL, parts)


def build_queries(options: Options, recorded: float | None = None, inventory_series: int = 1) -> Queries:
    """Calls, busiest hour, hourly calls and last call; with `recorded` (the time of the hourly rules'
    last evaluation), from the hourly recording rules."""
    counters, w, sel = promql.CALL_SOURCES, options.window, options.selector
    if recorded is not None:
        q = mixin.report_queries(w, options.lookback, recent=options.at - recorded)
        return Queries(
            calls=q["calls"], qps=q["qps"], hourly=q["hourly"], last_call=[q["last_call"]], recent=q["recent"]
        )
    span = options.last_call_span
    # Each step of the raw last-call query compares every counter with itself a step earlier:
    # in a large fleet the step grows (whole hours) to keep that work bounded.
    hours = math.ceil(_series_estimate(inventory_series) * span / LAST_CALL_STEP / LAST_CALL_BUDGET)
    step = LAST_CALL_STEP * max(1, hours)
    per_piece = PIECE_BUDGET // (4 * _series_estimate(inventory_series))
    last = [
        f"max_over_time({promql.last_called(counters, sel, step)}{p.subquery(step)})"
        for p in promql.pieces(options.at, span, step, per_piece)
    ]
    return Queries(
        calls=promql.by_source({s: promql.calls_inputs(promql.select(m, sel), w) for s, m in counters.items()}),
        qps=promql.by_source({s: promql.max_hourly_qps(promql.select(m, sel), w) for s, m in counters.items()}),
        hourly=promql.by_source({s: promql.hourly_calls(promql.select(m, sel)) for s, m in counters.items()}),
        last_call=last,
    )


def coverage_query(
    options: Options, inventory_series: int, down_pods: Sequence[str] | None, any_up: bool, recorded: bool = False
) -> list[str]:
    """Fleet-wide observation per version, and scrape gaps per replica and version: one query per
    piece of the window (their answers add up).

    `recorded`: both from the hourly recording rules (`mixin.report_coverage`), the same
    definitions at one-minute steps, in one query. Raw: `down_pods` are the pods with a failed
    scrape in the window (None: some such target has no pod label), the only ones that can be in
    a gap while `up` exists; without any `up` (`any_up` False) every replica can. The pieces are
    sized to stay within Prometheus' --query.max-samples.
    """
    if recorded:
        return [mixin.report_coverage(options.window, options.step)]
    gauges, step = promql.AVAILABLE_SOURCES, options.step
    observed = promql.fleet_available(gauges, options.selector)
    narrow = [] if down_pods is None or not any_up else [f"pod=~{promql.any_of(down_pods)}"]
    gap_part = not any_up or down_pods is None or bool(down_pods)
    copies = 1 if narrow or not gap_part else 6  # matrices the gap part holds at once, unnarrowed
    parts = promql.pieces(
        options.at, options.window, step, PIECE_BUDGET // (copies * _series_estimate(inventory_series))
    )
    gap = promql.in_gap(gauges, options.selector, options.window, any_up, *narrow) if gap_part else ""
    out = []
    for piece in parts:
        steps = {"observed": f"count_over_time(({observed}){piece.subquery(step)})"}
        if gap:
            steps["gap"] = f"count_over_time({gap}{piece.subquery(step)})"
        out.append(promql.tagged(QUERY_LABEL, steps))
    return out
