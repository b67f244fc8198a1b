"""The report on a fleet of 20,000 gauge series — 10 clusters x 200 pods x 10 versions, and the
matching counters — over 7 days, on a real Prometheus with its default limits, raw and with the
recording rules, each as a ratio to one plain read of the same series in the same run on the same
Prometheus (`count_over_time` over the window of every gauge, counter and `up` series), and the
same at 2,000 gauge series (1 cluster x 200 pods x 10 versions) generated the same way. The goals:
raw at most 5x the plain read, with the rules at most 1.2x. Each report also runs once in a
process of its own, as `tfs-traffic report` does, for its peak RSS.

The history has one sample every 10 minutes, aligned to the report's 10-minute steps over a week
(so Prometheus' 5-minute lookback sees every one): 20k x 2 x 1,015 + 2k `up` x 1,015 = 43M samples.
bench_report's per-sample scenario player would take hours for that, so this writer emits each
series of a chunk with one string join, 18-hour chunks, each its own promtool run and block, and
caches the TSDB under out/bench/ keyed by its parameters. `promtool tsdb create-blocks-from rules`
cannot give 20k gauges their hourly rules in a benchmark's time (its range queries hold the rules'
`[1h:1m]` subqueries over every gauge), so the two hourly series the report reads for this fleet
(`model_version:tfs_model_calls:increase1h`, `model_version:tfs_model_version_observed:ratio1h`;
no pod is ever down, so no scrape gap is recorded) are written by the same writer with the values
those rules record, 20 minutes past each hour as a rule group's slot would put them: the report
then counts the last 40 minutes from the raw counters.

Per pod: version 10 (the latest) 1 call/s, version 9 1 call/min, versions 1-8 idle (retire).
Scale: BENCH_FLEET_CLUSTERS=50 .venv/bin/python -m bench fleet (100,000 gauge series).
"""

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.bench_report import plain_read, timed
from tfs_traffic import contract
from tfs_traffic.durations import parse_time
from tfs_traffic.prometheus import local
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.queries import mixin
from tfs_traffic.report import verdicts as rep

CLUSTERS = int(os.environ.get("BENCH_FLEET_CLUSTERS", "10"))
PODS, VERSIONS, DAYS, INTERVAL = 200, 10, 7, 600
CHUNK = 18 * 3600  # a promtool block range: one block per chunk, none overlapping
END = parse_time("2025-06-30T00:00:00Z")
START = END - DAYS * 86400 - 3600  # an hour before the window: each counter's value before it
RATES = {VERSIONS: 1.0, VERSIONS - 1: 1 / 60}  # calls per second per pod; the rest idle
STAMP = "fleet.json"
RULES_SLOT = 1200  # the hourly rules' samples, seconds past each hour
GOALS = {"raw": 5.0, "rules": 1.2}  # report time over one plain read


def _series(clusters: int, lo: float, hi: float) -> Iterator[str]:
    """OpenMetrics text of every series in [lo, hi), one string per series."""
    times = [t for t in range(int(START), int(END) + 1, INTERVAL) if lo <= t < hi]
    if not times:
        return
    stamps = [str(t) for t in times]
    for c in range(clusters):
        for p in range(PODS):
            target = (
                f'cluster="c{c:02d}",instance="10.{c}.{p // 250}.{p % 250 + 1}:8501",job="tfserving",'
                f'namespace="ml",pod="tfserving-{p:03d}"'
            )
            yield "".join(f"up{{{target}}} 1 {ts}\n" for ts in stamps)
            for v in range(1, VERSIONS + 1):
                labels = f'{{{target},model_name="resnet",model_version="{v}"}}'
                yield "".join(f"{contract.PATCHED_AVAILABLE}{labels} 1 {ts}\n" for ts in stamps)
                rate = RATES.get(v, 0.0)
                yield "".join(
                    f"{contract.PATCHED_CALLS}{labels} {math.floor(rate * (t - START))} {ts}\n"
                    for t, ts in zip(times, stamps, strict=True)
                )
    # The hourly recording rules, as the mixin records them for this fleet (one series per
    # version: calls in the hour summed over pods, availability share 1).
    hours = [t for t in range(int(START) + RULES_SLOT, int(END) + 1, 3600) if lo <= t < hi]
    for v in range(1, VERSIONS + 1):
        labels = f'{{model_name="resnet",model_version="{v}",namespace="ml"}}'
        per_hour = RATES.get(v, 0.0) * 3600 * clusters * PODS
        yield "".join(f"{mixin.CALLS_1H}{labels} {per_hour:g} {t}\n" for t in hours)
        yield "".join(f"{mixin.OBSERVED_1H}{labels} 1 {t}\n" for t in hours)


def history(clusters: int) -> Path:
    """The TSDB of `clusters` x 200 pods x 10 versions, built once and cached."""
    out = Path("out/bench") / f"fleet-{clusters}x{PODS}x{VERSIONS}-{DAYS}d-{INTERVAL}s-v2"
    stamp = out / STAMP
    if stamp.exists():
        print(f"history: reused {out} ({json.loads(stamp.read_text())['samples']:,} samples)")
        return out / "tsdb"
    tsdb = out / "tsdb"
    if tsdb.exists():
        import shutil

        shutil.rmtree(tsdb)
    tsdb.mkdir(parents=True)
    generate = blocks = 0.0
    samples = 0
    first = math.floor(START / CHUNK) * CHUNK
    for a in range(first, int(END) + 1, CHUNK):
        path = out / "chunk.om"
        started = time.perf_counter()
        with path.open("w") as handle:
            for text in _series(clusters, max(a, START), min(a + CHUNK, END + 1)):
                handle.write(text)
                samples += text.count("\n")
            handle.write("# EOF\n")
        generate += time.perf_counter() - started
        started = time.perf_counter()
        local.create_blocks(path, tsdb, max_block_duration=CHUNK)
        blocks += time.perf_counter() - started
        path.unlink()
    stamp.write_text(json.dumps({"samples": samples, "generate": generate, "promtool": blocks}) + "\n")
    print(f"history: {samples:,} samples; written in {generate:.0f}s, backfilled (promtool) in {blocks:.0f}s")
    return tsdb


def report_process(url: str, rules: bool) -> tuple[float, float]:
    """The report in a Python process of its own, as `tfs-traffic report` runs it: wall time (with the
    interpreter's start) and peak RSS in MiB."""
    code = (
        "from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient\n"
        "from tfs_traffic.report import render, verdicts as rep\n"
        f"client = PrometheusClient(PrometheusAccess(url={url!r}, timeout=1800, retries=0))\n"
        f"render.render(rep.run(client, rep.Options(at={END}, window={DAYS * 86400.0}, rules={rules})), 'json')\n"
    )
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"the report process failed ({proc.returncode})"
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def measure(clusters: int, repeat: int) -> dict[str, float | int]:
    tsdb = history(clusters)
    with local.LocalPrometheus(tsdb, extra_args=["--storage.tsdb.max-block-duration=18h"]) as prom:
        client = PrometheusClient(PrometheusAccess(url=prom.url, timeout=1800, retries=0))
        window = DAYS * 86400.0
        if repeat > 1:  # warm the page cache (the large case runs once, cold-ish: say so)
            rep.run(client, rep.Options(at=END, window=86400.0, rules=False))
        t_plain, read = timed(lambda: client.query(plain_read(window), END), repeat)
        t_raw, raw = timed(lambda: rep.run(client, rep.Options(at=END, window=window, rules=False)), repeat)
        t_rules, rules = timed(lambda: rep.run(client, rep.Options(at=END, window=window)), repeat)
        _, rss_raw = report_process(prom.url, rules=False)
        _, rss_rules = report_process(prom.url, rules=True)
    verdicts = [(v.model_version, v.verdict, v.reason) for v in raw.versions]
    assert verdicts == [(v.model_version, v.verdict, v.reason) for v in rules.versions], "raw != rules"
    assert {s for v in rules.versions for s in v.calls_by_source} == {"rules"}, "the rules were not used"
    counts = raw.counts()
    return {
        "series": clusters * PODS * VERSIONS,
        "samples": int(float(read[0]["value"][1])),
        "plain": t_plain,
        "raw": t_raw,
        "rules": t_rules,
        "rss_raw": rss_raw,
        "rss_rules": rss_rules,
        "queries": raw.queries,
        "retire": counts["retire"],
        "keep": counts["keep"],
    }


def main() -> None:
    small = measure(1, repeat=3)
    big = measure(CLUSTERS, repeat=1)
    for row in (small, big):
        ratios = {k: float(row[k]) / float(row["plain"]) for k in GOALS}
        met = {k: "met" if ratios[k] <= GOALS[k] else "missed" for k in GOALS}
        print(
            f"report over 7d, {row['series']:,} gauge series (and as many counters): one plain read of "
            f"{row['samples']:,} samples {row['plain']:.2f}s; raw {row['raw']:.2f}s = {ratios['raw']:.1f}x "
            f"(goal <= {GOALS['raw']:g}x: {met['raw']}), recording rules {row['rules']:.2f}s = "
            f"{ratios['rules']:.2f}x (goal <= {GOALS['rules']:g}x: {met['rules']}); report process peak RSS "
            f"raw {row['rss_raw']:.0f} MiB, rules {row['rss_rules']:.0f} MiB; {row['queries']} queries "
            f"({row['retire']} retire, {row['keep']} keep)"
        )
    scale = big["series"] / small["series"]
    print(
        f"{big['series']:,} vs {small['series']:,} gauge series ({scale:.0f}x): raw {big['raw'] / small['raw']:.1f}x "
        f"the time, with the recording rules {big['rules'] / small['rules']:.1f}x, the plain read "
        f"{big['plain'] / small['plain']:.1f}x"
    )
