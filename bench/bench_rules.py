"""The report with and without the recording rules, on one Prometheus holding 2,000 versions x 30 days.

The raw history is bench_report's fleet (same generator, same cache under out/bench/). The rules
get their history from `promtool tsdb create-blocks-from rules` (the hourly group over the whole
history, the per-minute group over its last hour; promtool writes a 2h block per rule and 2h) in a
copy of that TSDB made of hard links, which Prometheus then compacts once; all of it is cached,
keyed by the history and the rules. Both reports then run against the same Prometheus:
`rules=False` asks the raw counters, the default asks the hourly series (after checking that they
cover the window).

Scale for a quick look: BENCH_MODELS=10 BENCH_DAYS=12 .venv/bin/python -m bench rules
"""

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import requests

from bench.bench_report import CHUNK, fleet, plain_read, timed
from tfs_traffic.prometheus import backfill, scenario
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import LocalPrometheus
from tfs_traffic.queries import mixin
from tfs_traffic.queries.history import RuleRange, backfill_rules
from tfs_traffic.queries.render import rule_file_text
from tfs_traffic.report import verdicts as rep

MODELS = int(os.environ.get("BENCH_MODELS", "200"))
VERSIONS = int(os.environ.get("BENCH_VERSIONS", "10"))
DAYS = int(os.environ.get("BENCH_DAYS", "30"))
STAMP = "rules.json"


def blocks_loaded(prom: LocalPrometheus) -> float:
    for line in requests.get(f"{prom.url}/metrics", timeout=30).text.splitlines():
        if line.startswith("prometheus_tsdb_blocks_loaded "):
            return float(line.split()[1])
    return -1.0


def wait_for_compaction(prom: LocalPrometheus, quiet: float = 150.0, limit: float = 3600.0) -> int:
    """Until the number of loaded blocks has not changed for `quiet` seconds (Prometheus looks for
    blocks to compact a minute after it starts, then again after each compaction)."""
    started = last_change = time.monotonic()
    count = blocks_loaded(prom)
    while time.monotonic() - last_change < quiet and time.monotonic() - started < limit:
        time.sleep(10)
        now = blocks_loaded(prom)
        if now != count:
            count, last_change = now, time.monotonic()
    return int(count)


def with_rule_history(raw: Path, sc: scenario.Scenario) -> Path:
    """A TSDB holding `raw`'s blocks (hard links) plus the rules' backfilled and compacted history."""
    groups = mixin.recording_rule_groups()
    key = hashlib.sha256((rule_file_text(groups) + raw.name).encode()).hexdigest()[:12]
    out = raw.parent / f"{raw.name}-rules-{key}"
    if (out / STAMP).exists():
        print(f"rule history: reused {out}")
        return out / "tsdb"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(raw / "tsdb", out / "tsdb", copy_function=os.link)
    fast, hourly = groups
    with LocalPrometheus(out / "tsdb") as prom:
        started = time.perf_counter()
        added = backfill_rules(prom, [RuleRange([hourly], sc.start, sc.end), RuleRange([fast], sc.end - 3600, sc.end)])
        rules_seconds = time.perf_counter() - started
        started = time.perf_counter()
        blocks = wait_for_compaction(prom)
        compact_seconds = time.perf_counter() - started
    print(
        f"rule history: {added} blocks from `promtool tsdb create-blocks-from rules` in {rules_seconds:.0f}s, "
        f"compacted by Prometheus to {blocks} blocks in {compact_seconds:.0f}s"
    )
    (out / STAMP).write_text(json.dumps({"rules_seconds": rules_seconds, "blocks": blocks}) + "\n")
    return out / "tsdb"


def main() -> None:
    sc = scenario.parse(fleet(MODELS, VERSIONS, DAYS), "bench")
    raw = Path("out/bench") / f"{sc.name}-{backfill.fingerprint(sc)}"
    started = time.perf_counter()
    result = backfill.ensure(sc, raw, chunk_seconds=CHUNK)
    print(f"history: {'reused' if result.reused else 'built'} {raw} ({time.perf_counter() - started:.0f}s)")
    tsdb = with_rule_history(raw, sc)
    # No compaction during the measurements (the history was compacted once, above).
    with LocalPrometheus(tsdb, extra_args=["--storage.tsdb.max-block-duration=2h"]) as prom:
        client = PrometheusClient(PrometheusAccess(url=prom.url, timeout=900, retries=0))
        at = sc.end
        rep.run(client, rep.Options(at=at, window=86400.0, rules=False))  # warm the page cache
        rows = []
        for days in sorted({7, DAYS}):
            window = days * 86400.0
            t_plain, _ = timed(lambda w=window: client.query(plain_read(w), at))
            t_raw, raw_report = timed(lambda w=window: rep.run(client, rep.Options(at=at, window=w, rules=False)))
            t_rules, rules_report = timed(lambda w=window: rep.run(client, rep.Options(at=at, window=w)))
            used = {s for v in rules_report.versions for s in v.calls_by_source} == {"rules"}
            same = [(v.model_name, v.model_version, v.verdict, v.reason) for v in raw_report.versions] == [
                (v.model_name, v.model_version, v.verdict, v.reason) for v in rules_report.versions
            ]
            rows.append((days, len(raw_report.versions), t_plain, t_raw, t_rules, used, same))
    for days, n, t_plain, t_raw, t_rules, used, same in rows:
        print(
            f"report over {days}d, {n:,} versions: raw queries {t_raw:.2f}s, recording rules {t_rules:.2f}s "
            f"-> {t_raw / t_rules:.1f}x faster (rules used: {used}; same verdicts: {same}); one plain read "
            f"{t_plain:.2f}s: raw {t_raw / t_plain:.1f}x, rules {t_rules / t_plain:.2f}x"
        )
