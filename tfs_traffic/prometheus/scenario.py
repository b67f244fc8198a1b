"""Fleet scenarios: a small, exact description of what a TF Serving fleet did over some days.

A scenario names replicas, models, their versions (when each was loaded and unloaded, on which
replicas), the traffic each version received, and events (replica restarts, scrape gaps). It is
small enough that a test can state one precise situation ("version 3 loaded on day 2, one call six
days ago on replica a only, a restart of replica b at hour 50"), and `tfs_traffic.prometheus.backfill` turns it
into the series the metric contract (docs/metrics.md) would have produced.

Times in a scenario are offsets from the start of the history (`0`, `36h`, `2d6h`, `start`) or from
its end (`end`, `end-6d`). Rates are `N/s`, `N/min`, `N/h` or a plain number of calls per second.
"""

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfs_traffic.durations import parse_duration, parse_time
from tfs_traffic.errors import UsageError

SOURCES = ("patched", "sidecar")
SHAPES = ("flat", "diurnal")


@dataclass(frozen=True)
class Replica:
    """One TF Serving pod: its name in the scenario, where Prometheus scrapes it, and when it lives.

    `pod` is the `pod` label (default: the name; two clusters may hold pods of the same name),
    `cluster` an optional `cluster` label. A pod exists over [start, stop) (seconds from the
    history's start): outside it there is no sample and no `up`, as after Kubernetes deleted it.
    """

    name: str
    ip: str
    scrape_offset: float = 0.0  # seconds after each scrape-interval tick (Prometheus spreads targets)
    pod: str = ""
    cluster: str = ""
    start: float = 0.0
    stop: float = math.inf

    @property
    def pod_name(self) -> str:
        return self.pod or self.name


@dataclass(frozen=True)
class Version:
    """One version of a model: loaded at `loaded` (seconds from start), unloaded at `unloaded`."""

    version: str
    loaded: float
    unloaded: float | None
    replicas: tuple[str, ...]


@dataclass(frozen=True)
class Traffic:
    """Calls to one version: a steady `rate` (calls/s) over [start, stop), or `calls` at time `at`."""

    model: str
    version: str
    replicas: tuple[str, ...]
    rate: float = 0.0
    start: float = 0.0
    stop: float = math.inf
    shape: str = "flat"
    calls: int = 0
    at: float = 0.0


@dataclass(frozen=True)
class Restart:
    """A restart of a replica's TF Serving process at `at`; it serves again `down` seconds later."""

    replica: str
    at: float
    down: float
    sidecar: bool = False  # the sidecar container restarts too (its counters reset)


@dataclass(frozen=True)
class Gap:
    """Scrapes of a replica fail over [start, stop): Prometheus records `up 0` and no other sample."""

    replica: str
    start: float
    stop: float


@dataclass(frozen=True)
class Model:
    name: str
    base_path: str
    version_labels: Mapping[str, str]
    versions: tuple[Version, ...]


@dataclass(frozen=True)
class Scenario:
    """A whole fleet's history; times are seconds from `start` (= end - days)."""

    name: str
    seed: int
    end: float
    days: float
    scrape_interval: float
    sources: tuple[str, ...]
    namespace: str
    replicas: tuple[Replica, ...]
    models: tuple[Model, ...]
    traffic: tuple[Traffic, ...] = ()
    restarts: tuple[Restart, ...] = ()
    gaps: tuple[Gap, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def start(self) -> float:
        return self.end - self.days * 86400

    @property
    def length(self) -> float:
        return self.days * 86400


class _Reader:
    """Reads one YAML mapping with paths in errors, so every message names the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> UsageError:
        return UsageError(f"scenario {self.source}: {path}: {message}")

    def mapping(self, value: Any, path: str, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail(f"{path}.{key}" if path else str(key), f"unknown field (allowed: {', '.join(allowed)})")
        return value

    def sequence(self, value: Any, path: str) -> Sequence[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {type(value).__name__}")
        return value

    def text(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(path, f"expected a string, got {value!r}")
        text = str(value).strip()
        if not text:
            raise self.fail(path, "must not be empty")
        return text

    def number(self, value: Any, path: str, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number, got {value!r}")
        if value < minimum:
            raise self.fail(path, f"must be at least {minimum:g}")
        return float(value)

    def duration(self, value: Any, path: str) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        try:
            return parse_duration(str(value))
        except UsageError:
            raise self.fail(path, f"invalid duration {value!r} (e.g. 60s, 5m, 2h)") from None

    def time(self, value: Any, path: str, length: float) -> float:
        """Seconds from the start for `0`, `36h`, `start`, `end`, `end-6d`, `start+2d`."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            text = str(value).replace(" ", "")
            match = re.fullmatch(r"(start|end)?([+-])?(.*)", text)
            assert match is not None
            anchor, sign, rest = match.groups()
            try:
                offset = parse_duration(rest) if rest not in ("", "0") else 0.0
            except UsageError:
                offset = None
            if offset is None or (anchor is None and sign) or (anchor and rest and not sign):
                raise self.fail(path, f"invalid time {value!r} (a duration from the start like 2d6h, or end-6d)")
            if anchor == "end":
                seconds = length - offset if sign == "-" else length + offset
            else:
                seconds = -offset if sign == "-" else offset
        if not 0 <= seconds <= length:
            raise self.fail(path, f"time {value!r} is outside the history (0 .. {length / 86400:g}d)")
        return seconds

    def rate(self, value: Any, path: str) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            per_second = float(value)
        else:
            match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|m|min|h|hour|d|day)\s*", str(value))
            if not match:
                raise self.fail(path, f"invalid rate {value!r} (e.g. 2/min, 0.5/s, 30/h, or calls per second)")
            unit = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
            per_second = float(match.group(1)) / unit[match.group(2)]
        if per_second < 0:
            raise self.fail(path, "must not be negative")
        return per_second

    def names(self, value: Any, path: str, known: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
        """Replica names; the name of an autoscaled (`daily`) replica stands for all its pods."""
        items = [self.text(v, f"{path}[{i}]") for i, v in enumerate(self.sequence(value, path))]
        out: list[str] = []
        for i, item in enumerate(items):
            if item not in known:
                raise self.fail(f"{path}[{i}]", f"unknown replica {item!r} (known: {', '.join(known)})")
            out.extend(x for x in known[item] if x not in out)
        return tuple(out)


def _one_pod(r: _Reader, names: Sequence[str], path: str) -> str:
    if len(names) != 1:
        raise r.fail(path, f"names {len(names)} pods (an autoscaled replica): name one of {', '.join(names)}")
    return names[0]


REPLICA_FIELDS = ("name", "ip", "scrape_offset", "pod", "cluster", "from", "to", "daily")


def _daily(r: _Reader, value: Any, path: str, base: Replica, start: float, length: float) -> list[Replica]:
    """An autoscaled replica: a new pod every day (UTC) over [FROM, TO) of that day, named
    `<pod>-<n>` (scenario name `<name>-<n>`) for the n-th day of the history."""
    span = r.sequence(value, path)
    if len(span) != 2:
        raise r.fail(path, "expected [FROM, TO] as times of day, e.g. [10h, 14h]")
    lo, hi = (r.duration(x, f"{path}[{k}]") if x not in (0, "0") else 0.0 for k, x in enumerate(span))
    if not 0 <= lo < hi <= 86400:
        raise r.fail(path, "expected 0 <= FROM < TO <= 24h")
    out = []
    day = math.floor(start / 86400) * 86400
    n = 0
    while day < start + length:
        a, b = max(day + lo, start) - start, min(day + hi, start + length) - start
        if a < b:
            out.append(dataclasses.replace(base, name=f"{base.name}-{n}", pod=f"{base.pod_name}-{n}", start=a, stop=b))
        day += 86400
        n += 1
    return out


SCENARIO_FIELDS = (
    "name",
    "seed",
    "days",
    "end",
    "scrape_interval",
    "sources",
    "namespace",
    "replicas",
    "models",
    "traffic",
    "events",
)


def parse(data: Any, source: str, days: float | None = None, end: float | None = None) -> Scenario:
    """Validate a scenario mapping; `days` and `end` override the scenario's own values."""
    r = _Reader(source)
    top = r.mapping(data, "", SCENARIO_FIELDS)
    name = r.text(top.get("name", Path(source).stem), "name")
    seed = int(r.number(top.get("seed", 1), "seed"))
    if days is None:
        days = r.number(top.get("days", 7), "days")
    if days <= 0:
        raise r.fail("days", "must be positive")
    if end is None:
        if "end" in top:
            try:
                end = parse_time(str(top["end"]))
            except UsageError:
                raise r.fail("end", f"invalid time {top['end']!r} (RFC 3339, e.g. 2025-06-30T00:00:00Z)") from None
        else:
            end = parse_time("now")
    interval = r.duration(top.get("scrape_interval", "60s"), "scrape_interval")
    end = math.floor(end / interval) * interval
    length = days * 86400
    sources = tuple(
        r.text(s, f"sources[{i}]") for i, s in enumerate(r.sequence(top.get("sources", ["patched"]), "sources"))
    )
    for i, s in enumerate(sources):
        if s not in SOURCES:
            raise r.fail(f"sources[{i}]", f"unknown source {s!r} (use patched and/or sidecar)")
    if not sources:
        raise r.fail("sources", "name at least one of patched, sidecar")
    namespace = r.text(top.get("namespace", "serving"), "namespace")

    replicas: list[Replica] = []
    replica_names: dict[str, list[str]] = {}  # a name in the scenario -> the replicas it stands for
    for i, item in enumerate(r.sequence(top.get("replicas", ["tfserving-0", "tfserving-1"]), "replicas")):
        path = f"replicas[{i}]"
        if isinstance(item, Mapping):
            rm = r.mapping(item, path, REPLICA_FIELDS)
            rname = r.text(rm.get("name"), f"{path}.name")
            ip = r.text(rm.get("ip", f"10.0.0.{i + 1}"), f"{path}.ip")
            offset = r.number(rm.get("scrape_offset", 0), f"{path}.scrape_offset")
            if offset >= interval:
                raise r.fail(f"{path}.scrape_offset", "must be less than scrape_interval")
        else:
            rm, rname, ip, offset = {}, r.text(item, path), f"10.0.0.{i + 1}", 0.0
        if rname in replica_names:
            raise r.fail(path, f"replica {rname!r} is listed twice")
        pod = r.text(rm["pod"], f"{path}.pod") if "pod" in rm else rname
        cluster = r.text(rm["cluster"], f"{path}.cluster") if "cluster" in rm else ""
        base = Replica(rname, ip, offset, pod, cluster)
        if "daily" in rm:
            if "from" in rm or "to" in rm:
                raise r.fail(f"{path}.daily", "give either daily or from/to")
            expanded = _daily(r, rm["daily"], f"{path}.daily", base, end - length, length)
        else:
            lo = r.time(rm.get("from", 0), f"{path}.from", length)
            hi = r.time(rm["to"], f"{path}.to", length) if "to" in rm else math.inf
            if hi <= lo:
                raise r.fail(f"{path}.to", "must be after from")
            expanded = [dataclasses.replace(base, start=lo, stop=hi)]
        replicas.extend(expanded)
        replica_names[rname] = [x.name for x in expanded]
    if not replicas:
        raise r.fail("replicas", "name at least one replica")
    for j, x in enumerate(replicas):
        for y in replicas[:j]:
            if (x.cluster, x.pod_name) == (y.cluster, y.pod_name) and x.start < y.stop and y.start < x.stop:
                raise r.fail("replicas", f"pod {x.pod_name!r} lives twice at once in one cluster ({y.name}, {x.name})")

    models: list[Model] = []
    for i, item in enumerate(r.sequence(top.get("models"), "models")):
        path = f"models[{i}]"
        mm = r.mapping(item, path, ("name", "base_path", "version_labels", "versions"))
        mname = r.text(mm.get("name"), f"{path}.name")
        if any(m.name == mname for m in models):
            raise r.fail(f"{path}.name", f"model {mname!r} is listed twice")
        versions: list[Version] = []
        for j, vitem in enumerate(r.sequence(mm.get("versions"), f"{path}.versions")):
            vpath = f"{path}.versions[{j}]"
            if not isinstance(vitem, Mapping):
                vitem = {"version": vitem}
            vm = r.mapping(vitem, vpath, ("version", "loaded", "unloaded", "replicas"))
            vname = r.text(vm.get("version"), f"{vpath}.version")
            if any(v.version == vname for v in versions):
                raise r.fail(f"{vpath}.version", f"version {vname} is listed twice")
            loaded = r.time(vm.get("loaded", 0), f"{vpath}.loaded", length)
            unloaded = r.time(vm["unloaded"], f"{vpath}.unloaded", length) if vm.get("unloaded") is not None else None
            if unloaded is not None and unloaded <= loaded:
                raise r.fail(f"{vpath}.unloaded", "must be after loaded")
            vreplicas = (
                r.names(vm["replicas"], f"{vpath}.replicas", replica_names)
                if "replicas" in vm
                else tuple(x.name for x in replicas)
            )
            versions.append(Version(vname, loaded, unloaded, vreplicas))
        if not versions:
            raise r.fail(f"{path}.versions", "name at least one version")
        labels_raw = r.mapping(
            mm.get("version_labels", {}), f"{path}.version_labels", list(mm.get("version_labels", {}))
        )
        labels: dict[str, str] = {}
        for label, target in labels_raw.items():
            target_text = r.text(target, f"{path}.version_labels.{label}")
            if not any(v.version == target_text for v in versions):
                raise r.fail(f"{path}.version_labels.{label}", f"points at version {target_text}, which is not listed")
            if not target_text.isdigit():
                raise r.fail(f"{path}.version_labels.{label}", "labels can only point at numeric versions")
            labels[str(label)] = target_text
        base_path = r.text(mm.get("base_path", f"/models/{mname}"), f"{path}.base_path")
        models.append(Model(mname, base_path, labels, tuple(versions)))
    if not models:
        raise r.fail("models", "name at least one model")

    traffic: list[Traffic] = []
    for i, item in enumerate(r.sequence(top.get("traffic", []), "traffic")):
        path = f"traffic[{i}]"
        tm = r.mapping(item, path, ("model", "version", "replicas", "rate", "from", "to", "shape", "calls", "at"))
        mname = r.text(tm.get("model"), f"{path}.model")
        model = next((m for m in models if m.name == mname), None)
        if model is None:
            raise r.fail(f"{path}.model", f"unknown model {mname!r}")
        vname = r.text(tm.get("version"), f"{path}.version")
        version = next((v for v in model.versions if v.version == vname), None)
        if version is None:
            raise r.fail(f"{path}.version", f"model {mname} has no version {vname}")
        treplicas = r.names(tm["replicas"], f"{path}.replicas", replica_names) if "replicas" in tm else version.replicas
        if ("rate" in tm) == ("calls" in tm):
            raise r.fail(path, "give either rate (with optional from/to) or calls (with at)")
        if "rate" in tm:
            if "at" in tm:
                raise r.fail(f"{path}.at", "only with calls")
            shape = r.text(tm.get("shape", "flat"), f"{path}.shape")
            if shape not in SHAPES:
                raise r.fail(f"{path}.shape", f"unknown shape {shape!r} (use flat or diurnal)")
            tstart = r.time(tm.get("from", 0), f"{path}.from", length)
            tstop = r.time(tm.get("to", "end"), f"{path}.to", length)
            if tstop <= tstart:
                raise r.fail(f"{path}.to", "must be after from")
            traffic.append(
                Traffic(
                    mname,
                    vname,
                    treplicas,
                    rate=r.rate(tm["rate"], f"{path}.rate"),
                    start=tstart,
                    stop=tstop,
                    shape=shape,
                )
            )
        else:
            for key in ("from", "to", "shape"):
                if key in tm:
                    raise r.fail(f"{path}.{key}", "only with rate")
            calls = r.number(tm["calls"], f"{path}.calls", minimum=1)
            if not float(calls).is_integer():
                raise r.fail(f"{path}.calls", "must be a whole number")
            traffic.append(
                Traffic(mname, vname, treplicas, calls=int(calls), at=r.time(tm.get("at"), f"{path}.at", length))
            )

    restarts: list[Restart] = []
    gaps: list[Gap] = []
    for i, item in enumerate(r.sequence(top.get("events", []), "events")):
        path = f"events[{i}]"
        if isinstance(item, Mapping) and "restart" in item:
            em = r.mapping(item, path, ("restart", "at", "down", "sidecar"))
            rep = _one_pod(r, r.names([em["restart"]], f"{path}.restart", replica_names), f"{path}.restart")
            at = r.time(em.get("at"), f"{path}.at", length)
            down = r.duration(em.get("down", "2m"), f"{path}.down")
            sidecar = em.get("sidecar", False)
            if not isinstance(sidecar, bool):
                raise r.fail(f"{path}.sidecar", "expected true or false")
            restarts.append(Restart(rep, at, down, sidecar))
        elif isinstance(item, Mapping) and "gap" in item:
            em = r.mapping(item, path, ("gap", "from", "to"))
            rep = _one_pod(r, r.names([em["gap"]], f"{path}.gap", replica_names), f"{path}.gap")
            gstart = r.time(em.get("from"), f"{path}.from", length)
            gstop = r.time(em.get("to"), f"{path}.to", length)
            if gstop <= gstart:
                raise r.fail(f"{path}.to", "must be after from")
            gaps.append(Gap(rep, gstart, gstop))
        else:
            raise r.fail(path, "expected {restart: REPLICA, at: TIME} or {gap: REPLICA, from: TIME, to: TIME}")
    return Scenario(
        name=name,
        seed=seed,
        end=end,
        days=days,
        scrape_interval=interval,
        sources=sources,
        namespace=namespace,
        replicas=tuple(replicas),
        models=tuple(models),
        traffic=tuple(traffic),
        restarts=tuple(sorted(restarts, key=lambda x: (x.replica, x.at))),
        gaps=tuple(gaps),
        raw=dict(top),
    )


# The demo fleet: five models, nineteen versions, three long-lived replicas (tfserving-2 is a shard
# of its own for `ranker`), a Deployment rolled twice and autoscaled pods for `search`, and one of
# each situation the report must tell apart. The history ends at a fixed time so the demo's TSDB is
# reused from one run to the next.
SEARCH_PODS: list[dict[str, Any]] = [
    {"name": "search-0a", "pod": "search-7c9f4-2xkqm", "ip": "10.0.1.1", "to": "end-4d23h55m"},
    {"name": "search-0b", "pod": "search-7c9f4-8wz5n", "ip": "10.0.1.2", "scrape_offset": 23, "to": "end-4d23h55m"},
    {"name": "search-1a", "pod": "search-5d8b6-qj7rt", "ip": "10.0.2.1", "from": "end-5d", "to": "end-1d23h55m"},
    {
        "name": "search-1b",
        "pod": "search-5d8b6-lm4vc",
        "ip": "10.0.2.2",
        "scrape_offset": 23,
        "from": "end-5d",
        "to": "end-1d23h55m",
    },
    {"name": "search-2a", "pod": "search-6b4d7-hz9sw", "ip": "10.0.3.1", "from": "end-2d"},
    {"name": "search-2b", "pod": "search-6b4d7-c3pfd", "ip": "10.0.3.2", "scrape_offset": 23, "from": "end-2d"},
    {"name": "search-hpa", "pod": "search-hpa", "ip": "10.0.4.1", "scrape_offset": 53, "daily": ["9h", "17h"]},
]
SEARCH = [p["name"] for p in SEARCH_PODS]
DEMO: dict[str, Any] = {
    "name": "demo",
    "seed": 7,
    "days": 8,
    "end": "2025-06-30T00:00:00Z",
    "scrape_interval": "60s",
    "sources": ["patched", "sidecar"],
    "namespace": "serving",
    "replicas": [
        {"name": "tfserving-0", "ip": "10.0.0.1"},
        {"name": "tfserving-1", "ip": "10.0.0.2", "scrape_offset": 17},
        {"name": "tfserving-2", "ip": "10.0.0.3", "scrape_offset": 41},
        # `search`: a Deployment rolled at end-5d and end-2d (each new pod starts five minutes
        # before the old one is deleted), plus the pods an autoscaler adds from 09:00 to 17:00.
        *SEARCH_PODS,
    ],
    "models": [
        {
            "name": "resnet",
            "version_labels": {"stable": 4},
            "versions": [{"version": v, "replicas": ["tfserving-0", "tfserving-1"]} for v in (1, 2, 3, 4)]
            + [{"version": 5, "loaded": "end-3d12h", "replicas": ["tfserving-0", "tfserving-1"]}],
        },
        {
            "name": "bert",
            "version_labels": {"rollback": 11},
            "versions": [
                {"version": 8, "loaded": "end-2d12h", "replicas": ["tfserving-0", "tfserving-1"]},
                {"version": 9, "unloaded": "end-2d", "replicas": ["tfserving-0", "tfserving-1"]},
            ]
            + [{"version": v, "replicas": ["tfserving-0", "tfserving-1"]} for v in (10, 11, 12, 13)],
        },
        {
            "name": "ranker",
            "versions": [
                {"version": 100, "replicas": ["tfserving-2"]},
                {"version": 101, "replicas": ["tfserving-2"]},
                {"version": 102, "replicas": ["tfserving-2"]},
                {"version": 103, "loaded": "end-20h", "replicas": ["tfserving-2"]},
            ],
        },
        {"name": "fraud", "versions": [{"version": 7, "replicas": ["tfserving-0", "tfserving-1"]}]},
        {
            "name": "search",
            "versions": [{"version": v, "replicas": SEARCH} for v in (30, 31, 32)]
            + [{"version": 33, "loaded": "end-2d", "replicas": SEARCH}],
        },
    ],
    "traffic": [
        {"model": "resnet", "version": 1, "rate": "1/min", "to": "end-7d2h"},
        {"model": "resnet", "version": 2, "calls": 3, "at": "end-6d", "replicas": ["tfserving-0"]},
        {"model": "resnet", "version": 4, "rate": "20/s", "shape": "diurnal"},
        {"model": "resnet", "version": 5, "rate": "2/s", "from": "end-3d12h", "shape": "diurnal"},
        {"model": "bert", "version": 9, "rate": "1/s", "to": "end-2d"},
        {"model": "bert", "version": 12, "rate": "10/h", "replicas": ["tfserving-1"]},
        {"model": "bert", "version": 13, "rate": "8/s", "shape": "diurnal"},
        {"model": "ranker", "version": 102, "rate": "5/s", "shape": "diurnal"},
        {"model": "fraud", "version": 7, "rate": "0.5/s", "to": "end-7d6h"},
        {"model": "search", "version": 31, "calls": 2, "at": "end-7d12h", "replicas": ["search-0a"]},
        {"model": "search", "version": 32, "rate": "3/s", "shape": "diurnal"},
        {"model": "search", "version": 33, "rate": "1/min", "from": "end-2d"},
    ],
    "events": [
        {"restart": "tfserving-1", "at": "end-4d3h"},
        {"gap": "tfserving-2", "from": "end-5d", "to": "end-4d12h"},
    ],
}

BUILTIN: dict[str, dict[str, Any]] = {"demo": DEMO}


def load(name_or_file: str, days: float | None = None, end: float | None = None) -> Scenario:
    """A built-in scenario by name, or a YAML file."""
    if name_or_file in BUILTIN:
        return parse(BUILTIN[name_or_file], name_or_file, days=days, end=end)
    path = Path(name_or_file)
    try:
        text = path.read_text()
    except OSError as e:
        known = ", ".join(BUILTIN)
        raise UsageError(
            f"scenario {name_or_file!r} is neither a built-in scenario ({known}) nor a readable file: {e.strerror or e}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"scenario {name_or_file}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse(data, str(path), days=days, end=end)
