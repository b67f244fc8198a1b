"""Simulated history: the series a fleet would have exported under the metric contract.

`iter_series` plays a `Scenario` scrape by scrape, the way Prometheus would have recorded it:

- patched TF Serving (`job="tfserving"`, instance `IP:8501`): `:tensorflow:serving:model_call_count`
  and `:tensorflow:serving:model_version_available` per version. A version's cells are created when
  it becomes AVAILABLE in a process (counter at 0); after an unload the gauge is 0 and the counter
  frozen until the process ends; a restart starts every loaded version's counter at 0 again.
- the sidecar (`job="tfs-traffic-sidecar"`, instance `IP:9102`): `tfserving_model_calls_total`
  (`api="predict"`, `code="OK"`; a series appears at its first call, as prometheus_client does),
  `tfserving_model_version_available` (kept at 0 after an unload), `tfserving_sidecar_upstream_up`,
  and its poller's answers: `tfserving_model_version_latest` (the replica's highest AVAILABLE
  version, kept while none is) and `tfserving_model_version_label` (the models config's labels,
  once the replica served the model). Source `poller` is the same without the calls: the sidecar
  without its relay, beside a patched server.
- `up` for each target: 0 while a scrape fails (a gap, or the process is down), else 1.
- a pod exists over its replica's [from, to) (rollouts, autoscaled pods): its first scrape is the
  first one at or after `from` (counters start at 0 when it starts, so that scrape may already
  hold calls), its last the last one before `to`; after that it has no sample and no `up`, as a
  pod Kubernetes deleted (the calls between its last scrape and `to` are never seen).

Calls are deterministic: a rate's cumulative integral, floored, so tests can state exact counts.
History is written as OpenMetrics and turned into TSDB blocks with promtool, in chunks aligned to
the block duration so large histories never need one huge file and blocks never overlap.
"""

import bisect
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tfs_traffic import contract, modelconfig
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.files import write_atomic
from tfs_traffic.prometheus import local
from tfs_traffic.prometheus.local import Series
from tfs_traffic.prometheus.scenario import Model, Replica, Scenario, Traffic
from tfs_traffic.sidecar.estimate import ram_estimate

PATCHED_JOB = "tfserving"
SIDECAR_JOB = "tfs-traffic-sidecar"
PATCHED_PORT = 8501
DAY = 86400.0
# The sidecar's round-trip histogram: a fixed latency profile (share of calls at or under each
# bound; mean 11 ms) applied to its call counter, so latency panels have data over the history.
LATENCY_PROFILE = (("0.005", 0.25), ("0.01", 0.5), ("0.025", 0.9), ("0.1", 0.99), ("+Inf", 1.0))
LATENCY_MEAN_SECONDS = 0.011
STAMP = "backfill.json"


def _diurnal_integral(a: float, b: float) -> float:
    """Integral over [a, b] of 1 + 0.6 sin(2π (t - 8h) / day): busiest at 14:00 UTC."""
    k = 2 * math.pi / DAY
    return (b - a) - 0.6 / k * (math.cos(k * (b - 28800)) - math.cos(k * (a - 28800)))


class _Calls:
    """Cumulative calls to one version on one replica as a function of absolute time."""

    def __init__(self, items: Sequence[Traffic], start: float, seed: int) -> None:
        self.rates = [(start + t.start, start + t.stop, t.rate, t.shape, t) for t in items if t.rate > 0]
        self.bursts = sorted((start + t.at, t.calls) for t in items if t.calls)
        self.seed = seed
        self.idle = not self.rates and not self.bursts
        self._day_factor: dict[tuple[int, int], float] = {}

    def _factor(self, index: int, day: int) -> float:
        key = (index, day)
        if key not in self._day_factor:
            t = self.rates[index][4]
            self._day_factor[key] = random.Random(f"{self.seed}:{t.model}:{t.version}:{day}").uniform(0.8, 1.2)
        return self._day_factor[key]

    def cumulative(self, t: float) -> float:
        total = 0.0
        for i, (a, b, rate, shape, _) in enumerate(self.rates):
            hi = min(t, b)
            if hi <= a:
                continue
            if shape == "flat":
                total += rate * (hi - a)
            else:
                x = a
                while x < hi:
                    day = int(x // DAY)
                    y = min(hi, (day + 1) * DAY)
                    total += rate * self._factor(i, day) * _diurnal_integral(x, y)
                    x = y
        for at, calls in self.bursts:
            if at < t:
                total += calls
        return total

    def count(self, t: float) -> int:
        # A tiny epsilon keeps exact rates (60/min at whole minutes) from flooring one short.
        return math.floor(self.cumulative(t) + 1e-9)


@dataclass(frozen=True)
class _Cell:
    """A version's metric cells in one TF Serving process: [created, process end); gauge 1 until unloaded."""

    created: float
    unloaded: float
    process_end: float


def _lifetimes(start: float, stop: float, cuts: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Process lifetimes [begin, end) within a pod's life [start, stop), between restarts given as
    (at, down) absolute times."""
    out = []
    begin = start
    for at, down in sorted(cuts):
        if begin < at < stop:
            out.append((begin, at))
        begin = max(begin, at + down)
    if begin < stop:
        out.append((begin, stop))
    return out


def _in(t: float, intervals: Sequence[tuple[float, float]]) -> bool:
    return any(a <= t < b for a, b in intervals)


class Fleet:
    """A scenario resolved into absolute times, per replica and version."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        start = scenario.start
        self.start = start
        self.end = scenario.end
        self.gaps = {
            r.name: [(start + g.start, start + g.stop) for g in scenario.gaps if g.replica == r.name]
            for r in scenario.replicas
        }
        self.server_life = {
            r.name: _lifetimes(
                start + r.start,
                start + r.stop,
                [(start + x.at, x.down) for x in scenario.restarts if x.replica == r.name],
            )
            for r in scenario.replicas
        }
        self.sidecar_life = {
            r.name: _lifetimes(
                start + r.start,
                start + r.stop,
                [(start + x.at, x.down) for x in scenario.restarts if x.replica == r.name and x.sidecar],
            )
            for r in scenario.replicas
        }

    def scheduled(self, replica: Replica, lo: float, hi: float) -> list[tuple[float, bool]]:
        """Scrape times in [lo, hi) ∩ [start, end] within the pod's life, each with whether it fell
        into a gap (failed). A deleted pod leaves service discovery: no scrape, no `up` after it."""
        interval = self.s.scrape_interval
        first = self.start + replica.scrape_offset
        k = max(0, math.ceil((max(lo, self.start + replica.start) - first) / interval))
        hi = min(hi, self.start + replica.stop)
        out = []
        gaps = self.gaps[replica.name]
        t = first + k * interval
        while t < hi and t <= self.end:
            out.append((t, _in(t, gaps)))
            k += 1
            t = first + k * interval
        return out

    def cells(self, replica: str, loaded: float, unloaded: float) -> list[_Cell]:
        """The cells a version has on a replica: one per process lifetime that saw it AVAILABLE."""
        out = []
        for begin, end in self.server_life[replica]:
            created = max(begin, loaded)
            if created < min(end, unloaded):
                out.append(_Cell(created, unloaded, end))
        return out

    def server_up(self, replica: str, t: float) -> bool:
        return _in(t, self.server_life[replica])


def iter_series(scenario: Scenario, lo: float = -math.inf, hi: float = math.inf) -> Iterator[Series]:
    """Every series of the scenario with its samples in [lo, hi) (absolute Unix seconds)."""
    fleet = Fleet(scenario)
    s = scenario
    patched = "patched" in s.sources
    relay = "sidecar" in s.sources
    sidecar = relay or "poller" in s.sources
    for replica in s.replicas:
        scheduled = fleet.scheduled(replica, lo, hi)
        if not scheduled:
            continue
        times = [t for t, failed in scheduled if not failed]
        base = {"namespace": s.namespace, "pod": replica.pod_name}
        if replica.cluster:
            base["cluster"] = replica.cluster
        p_labels = {**base, "job": PATCHED_JOB, "instance": f"{replica.ip}:{PATCHED_PORT}"}
        s_labels = {**base, "job": SIDECAR_JOB, "instance": f"{replica.ip}:{contract.SIDECAR_PORT}"}
        server_up = [fleet.server_up(replica.name, t) for t in times]
        sidecar_lives = fleet.sidecar_life[replica.name]
        sidecar_up = [_in(t, sidecar_lives) for t in times]
        if patched:
            yield (
                "up",
                p_labels,
                [(t, float(not failed and fleet.server_up(replica.name, t))) for t, failed in scheduled],
            )
        if sidecar:
            yield "up", s_labels, [(t, float(not failed and _in(t, sidecar_lives))) for t, failed in scheduled]
            yield (
                contract.SIDECAR_UP,
                s_labels,
                [(t, 1.0 if su else 0.0) for t, su, up in zip(times, server_up, sidecar_up, strict=True) if up],
            )
        for model in s.models:
            served: dict[str, list[tuple[float, float]]] = {}  # version -> when this replica served it
            for version in model.versions:
                if replica.name not in version.replicas:
                    continue
                loaded = s.start + version.loaded
                unloaded = s.start + version.unloaded if version.unloaded is not None else math.inf
                items = [
                    t
                    for t in s.traffic
                    if t.model == model.name and t.version == version.version and replica.name in t.replicas
                ]
                calls = _Calls(items, s.start, s.seed)
                cells = fleet.cells(replica.name, loaded, unloaded)
                labels = {contract.MODEL: model.name, contract.VERSION: version.version}
                if patched:
                    counter: list[tuple[float, float]] = []
                    gauge: list[tuple[float, float]] = []
                    for cell in cells:
                        base_count = calls.count(cell.created)
                        in_cell = times[
                            bisect.bisect_left(times, cell.created) : bisect.bisect_left(times, cell.process_end)
                        ]
                        if calls.idle:
                            counter.extend((t, 0.0) for t in in_cell)
                        else:
                            counter.extend((t, float(calls.count(min(t, cell.unloaded)) - base_count)) for t in in_cell)
                        gauge.extend((t, 1.0 if t < cell.unloaded else 0.0) for t in in_cell)
                    # Series are identified by labels: cells of successive processes are one series.
                    yield contract.PATCHED_CALLS, {**p_labels, **labels}, counter
                    yield contract.PATCHED_AVAILABLE, {**p_labels, **labels}, gauge
                if sidecar:
                    serving = served[version.version] = [(c.created, min(c.unloaded, c.process_end)) for c in cells]
                    counter = []
                    gauge = []
                    for life_begin, life_end in sidecar_lives:
                        seen = False
                        for t, up in zip(times, sidecar_up, strict=True):
                            if not (up and life_begin <= t < life_end):
                                continue
                            available = _in(t, serving)
                            seen = seen or available
                            if seen:
                                gauge.append((t, 1.0 if available else 0.0))
                            value = sum(
                                calls.count(min(t, b)) - calls.count(max(a, life_begin))
                                for a, b in serving
                                if max(a, life_begin) < min(t, b)
                            )
                            if relay and (value > 0 or (counter and counter[-1][0] >= life_begin)):
                                counter.append((t, float(value)))
                    if counter:
                        yield (
                            contract.SIDECAR_CALLS,
                            {**s_labels, **labels, "api": "predict", "code": "OK"},
                            counter,
                        )
                        yield from _latency_histogram({**s_labels, **labels, "api": "predict"}, counter)
                    if gauge:
                        yield contract.SIDECAR_AVAILABLE, {**s_labels, **labels}, gauge
                    if gauge and version.size_bytes is not None:
                        # The poller's estimate: set while AVAILABLE, 0 after (docs/metrics.md "Estimated memory").
                        ram = float(ram_estimate(version.size_bytes))
                        yield contract.SIDECAR_ESTIMATED_RAM, {**s_labels, **labels}, [(t, ram * v) for t, v in gauge]
            if sidecar and served:
                # The answers are kept from one poll to the next: their state needs the scrapes before `lo`.
                polls = [t for t, failed in fleet.scheduled(replica, -math.inf, hi) if not failed]
                yield from _resolved(model, served, polls, sidecar_lives, s_labels, lo)


def _resolved(
    model: Model,
    served: dict[str, list[tuple[float, float]]],
    polls: Sequence[float],
    lives: Sequence[tuple[float, float]],
    labels: dict[str, str],
    lo: float,
) -> Iterator[Series]:
    """The poller's answers for one model on one replica (docs/metrics.md): its highest AVAILABLE
    version (the last answer while none is), and the models config's labels from the first poll at
    which the replica served the model; earlier answers at 0; all gone when the sidecar restarts."""
    latest_samples: dict[str, list[tuple[float, float]]] = {}
    label_samples: list[tuple[float, float]] = []
    for begin, end in lives:
        latest: str | None = None
        ever: list[str] = []
        for t in polls:
            if not begin <= t < end:
                continue
            available = [v for v, spans in served.items() if v.isdigit() and _in(t, spans)]
            if available:
                latest = max(available, key=int)
                if latest not in ever:
                    ever.append(latest)
            if latest is None or t < lo:
                continue
            for v in ever:
                latest_samples.setdefault(v, []).append((t, 1.0 if v == latest else 0.0))
            label_samples.append((t, 1.0))
    for v, samples in latest_samples.items():
        yield contract.SIDECAR_LATEST, {**labels, contract.MODEL: model.name, contract.VERSION: v}, samples
    for label, v in sorted(model.version_labels.items()):
        if v in served and label_samples:
            series = {**labels, contract.MODEL: model.name, contract.VERSION: v, contract.VERSION_LABEL: label}
            yield contract.SIDECAR_LABEL, series, label_samples


def _latency_histogram(labels: dict[str, str], calls: list[tuple[float, float]]) -> Iterator[Series]:
    """`tfserving_model_call_duration_seconds` for the calls of one sidecar counter series."""
    name = contract.SIDECAR_DURATION
    for bound, share in LATENCY_PROFILE:
        yield f"{name}_bucket", {**labels, "le": bound}, [(t, float(math.floor(v * share))) for t, v in calls]
    yield f"{name}_count", labels, calls
    yield f"{name}_sum", labels, [(t, v * LATENCY_MEAN_SECONDS) for t, v in calls]


def available_at_end(scenario: Scenario) -> dict[str, list[str]]:
    """Model -> versions AVAILABLE at the end of the history on at least one replica."""
    fleet = Fleet(scenario)
    out: dict[str, list[str]] = {}
    for model in scenario.models:
        for version in model.versions:
            if version.unloaded is not None:
                continue
            if any(fleet.server_up(r, scenario.end) for r in version.replicas):
                out.setdefault(model.name, []).append(version.version)
    return out


def models_config_text(scenario: Scenario) -> str:
    """The models.config that would have served the fleet at the end of the history."""
    pb2 = modelconfig._config_pb2()
    message = pb2.ModelServerConfig()
    live = available_at_end(scenario)
    for model in scenario.models:
        entry = message.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = model.base_path
        entry.model_platform = "tensorflow"
        numeric = sorted(int(v) for v in live.get(model.name, []) if v.isdigit())
        if numeric:
            entry.model_version_policy.specific.versions.extend(numeric)
        for label, version in sorted(model.version_labels.items()):
            entry.version_labels[label] = int(version)
    return modelconfig.to_text(message)


def fingerprint(scenario: Scenario) -> str:
    """A hash of everything that shapes the history, to reuse a TSDB built from the same scenario."""
    data = {
        "raw": scenario.raw,
        "end": scenario.end,
        "days": scenario.days,
        "generator": 4,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class BackfillResult:
    out: Path
    tsdb: Path
    models_config: Path
    openmetrics: list[Path]
    series: int
    samples: int
    generate_seconds: float
    blocks_seconds: float
    reused: bool = False


def is_current(out: Path, scenario: Scenario) -> bool:
    """Whether `out` already holds the TSDB of exactly this scenario."""
    try:
        stamp = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return bool(stamp.get("fingerprint") == fingerprint(scenario) and (out / "tsdb").is_dir())


OWNED = ".tfs-traffic-backfill"  # marks a TSDB directory this module created (and may replace)


def _prepare_tsdb(out: Path) -> Path:
    """An empty `out/tsdb`; an earlier one is replaced only if this module made it."""
    tsdb = out / "tsdb"
    (out / STAMP).unlink(missing_ok=True)
    if tsdb.exists() and any(tsdb.iterdir()):
        if not (tsdb / OWNED).exists():
            raise UsageError(f"{tsdb} exists and was not written by tfs-traffic backfill: choose another --out")
        shutil.rmtree(tsdb)
    tsdb.mkdir(parents=True, exist_ok=True)
    (tsdb / OWNED).write_text("written by tfs-traffic backfill; replaced by the next backfill into this directory\n")
    return tsdb


def backfill(
    scenario: Scenario, out: Path, chunk_seconds: float | None = None, keep_openmetrics: bool = True
) -> BackfillResult:
    """Write OpenMetrics, models.config and TSDB blocks for `scenario` under `out`.

    With `chunk_seconds`, history is written and backfilled one chunk at a time (each chunk aligned
    to a block range, so each becomes its own non-overlapping block) and chunk files are removed
    unless `keep_openmetrics`.
    """
    out.mkdir(parents=True, exist_ok=True)
    tsdb = _prepare_tsdb(out)
    config_path = out / "models.config"
    write_atomic(config_path, models_config_text(scenario))
    lo, hi = scenario.start, scenario.end + 1
    if chunk_seconds is None:
        size = local.block_duration_for(hi - lo)
        chunks = [(lo, hi)]
    else:
        size = local.block_duration_for(chunk_seconds)
        first = math.floor(lo / size) * size
        chunks = [(max(lo, a), min(hi, a + size)) for a in range(int(first), int(hi), size)]
    files: list[Path] = []
    series = samples = 0
    gen = blocks = 0.0
    for i, (a, b) in enumerate(chunks):
        path = out / ("history.om" if len(chunks) == 1 else f"history-{i:03d}.om")
        started = time.perf_counter()
        with path.open("w") as handle:
            counted = _Counted(iter_series(scenario, a, b))
            samples += local.write_openmetrics(handle, counted)
            series = max(series, counted.n)
        gen += time.perf_counter() - started
        started = time.perf_counter()
        local.create_blocks(path, tsdb, max_block_duration=size)
        blocks += time.perf_counter() - started
        if keep_openmetrics:
            files.append(path)
        else:
            path.unlink()
    write_atomic(
        out / STAMP,
        json.dumps(
            {
                "scenario": scenario.name,
                "fingerprint": fingerprint(scenario),
                "start": scenario.start,
                "end": scenario.end,
            },
            indent=2,
        )
        + "\n",
    )
    return BackfillResult(out, tsdb, config_path, files, series, samples, gen, blocks)


class _Counted:
    """Counts the non-empty series passing through to the writer."""

    def __init__(self, source: Iterator[Series]) -> None:
        self.source = source
        self.n = 0

    def __iter__(self) -> Iterator[Series]:
        for item in self.source:
            if item[2]:
                self.n += 1
                yield item


def ensure(scenario: Scenario, out: Path, chunk_seconds: float | None = None) -> BackfillResult:
    """Backfill unless `out` already holds this scenario's TSDB."""
    if is_current(out, scenario):
        return BackfillResult(out, out / "tsdb", out / "models.config", [], 0, 0, 0.0, 0.0, reused=True)
    try:
        return backfill(scenario, out, chunk_seconds=chunk_seconds, keep_openmetrics=chunk_seconds is None)
    except ToolError:
        (out / STAMP).unlink(missing_ok=True)
        raise
