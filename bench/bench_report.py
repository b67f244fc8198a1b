"""Report time for 2,000 versions over 30 days of 60 s samples, on a real Prometheus.

The history (~161M samples: a counter and a gauge per version) is generated and backfilled in
18-hour chunks, each its own promtool run and its own TSDB block, and cached under out/bench/
keyed by the scenario, so a second run goes straight to the measurements.
"""

import statistics
import time
from pathlib import Path
from typing import Any

from tfs_traffic.prometheus import backfill, promql, scenario
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import LocalPrometheus
from tfs_traffic.report import verdicts as rep

MODELS, VERSIONS, DAYS = 200, 10, 30
CHUNK = 18 * 3600  # a promtool block range: one block per chunk, none overlapping
END = "2025-06-30T00:00:00Z"


def fleet(models: int = MODELS, versions: int = VERSIONS, days: int = DAYS) -> dict[str, Any]:
    """One replica; per model the latest version busy, the one before it at 1 call/min, the rest idle,
    one version per model loaded ten days before the end, and a restart halfway."""
    return {
        "name": f"bench-{models}x{versions}-{days}d",
        "end": END,
        "days": days,
        "scrape_interval": "60s",
        "replicas": ["tfserving-0"],
        "models": [
            {
                "name": f"model-{m:03d}",
                "versions": [
                    {"version": v, "loaded": "end-10d" if v == versions - 2 else 0} for v in range(1, versions + 1)
                ],
            }
            for m in range(models)
        ],
        "traffic": [
            item
            for m in range(models)
            for item in (
                {"model": f"model-{m:03d}", "version": versions, "rate": "2/s"},
                {"model": f"model-{m:03d}", "version": versions - 1, "rate": "1/min"},
            )
        ],
        "events": [{"restart": "tfserving-0", "at": f"{days // 2}d"}],
    }


def plain_read(window: float) -> str:
    """One plain read of every sample the report needs over `window`: each availability gauge, call
    counter and `up` series (the yardstick the report's time is given as a ratio to)."""
    metrics = (*promql.AVAILABLE_SOURCES.values(), *promql.CALL_SOURCES.values(), "up")
    return " + ".join(f"(sum(count_over_time({m}[{promql.duration(window)}])) or vector(0))" for m in metrics)


def timed(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    sc = scenario.parse(fleet(), "bench")
    out = Path("out/bench") / f"{sc.name}-{backfill.fingerprint(sc)}"
    started = time.perf_counter()
    result = backfill.ensure(sc, out, chunk_seconds=CHUNK)
    if result.reused:
        print(f"history: reused {result.tsdb} ({time.perf_counter() - started:.1f}s)")
    else:
        print(
            f"history: {result.samples:,} samples in {result.series:,} series; generated in "
            f"{result.generate_seconds:.0f}s, backfilled (promtool) in {result.blocks_seconds:.0f}s"
        )
    # No compaction during the measurements: the blocks stay as backfilled.
    with LocalPrometheus(result.tsdb, extra_args=["--storage.tsdb.max-block-duration=18h"]) as prom:
        client = PrometheusClient(PrometheusAccess(url=prom.url, timeout=600, retries=0))
        at = sc.end
        # Warm the page cache once, then measure.
        rep.run(client, rep.Options(at=at, window=86400.0))
        t_month, month = timed(lambda: rep.run(client, rep.Options(at=at, window=30 * 86400.0)))
        t_week, _ = timed(lambda: rep.run(client, rep.Options(at=at, window=7 * 86400.0)))
        t_html, _ = timed(lambda: rep.run(client, rep.Options(at=at, window=30 * 86400.0, hourly=True)), repeat=1)
        t_one, _ = timed(lambda: client.query("count(up)", at))
        t_plain, _ = timed(lambda: client.query(plain_read(30 * 86400.0), at))
    counts = month.counts()
    print(
        f"report over 30d: {len(month.versions):,} versions in {t_month:.2f}s with {month.queries} queries "
        f"({counts['retire']} retire, {counts['keep']} keep, {counts['unknown']} unknown)"
    )
    print(f"report over 7d: {t_week:.2f}s; 30d/7d = {t_month / t_week:.1f}x for {30 / 7:.1f}x the samples")
    print(f"report over 30d with the HTML sparklines' query: {t_html:.2f}s ({t_html / t_month:.2f}x)")
    print(f"a trivial query for scale: {t_one * 1000:.1f} ms; the 30d report is {t_month / t_one:,.0f}x that")
    print(f"one plain read of the 30 days' samples: {t_plain:.2f}s; the 30d report is {t_month / t_plain:.1f}x that")
