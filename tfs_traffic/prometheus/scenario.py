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
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfs_traffic.durations import parse_duration, parse_time
from tfs_traffic.errors import UsageError, yaml_problem

# patched: the patched server's series; sidecar: the sidecar in front of it (calls and its status
# poller); poller: the sidecar without its relay (availability and the server's answers, no calls),
# as the chart runs it beside a patched server.
SOURCES = ("patched", "sidecar", "poller")
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
    size_bytes: int | None = None  # its files' total size: the sidecar exports TF Serving's RAM estimate of it


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

    def mapping(self, value: Any, path: str, allowed: Sequence[str] | None = None) -> Mapping[str, Any]:
        """A mapping of the `allowed` keys (None: any key)."""
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if allowed is not None and key not in allowed:
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


# The fields each mapping of a scenario may hold; an unknown field is refused with its list.
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
REPLICA_FIELDS = ("name", "ip", "scrape_offset", "pod", "cluster", "from", "to", "daily")
MODEL_FIELDS = ("name", "base_path", "version_labels", "versions")
VERSION_FIELDS = ("version", "loaded", "unloaded", "replicas", "size_bytes")
TRAFFIC_FIELDS = ("model", "version", "replicas", "rate", "from", "to", "shape", "calls", "at")
RESTART_FIELDS = ("restart", "at", "down", "sidecar")
GAP_FIELDS = ("gap", "from", "to")


def parse(data: Any, source: str, days: float | None = None, end: float | None = None) -> Scenario:
    """Validate a scenario mapping; `days` and `end` override the scenario's own values.

    Each section has its own reader below, called in the order of the file, so a scenario with
    several mistakes is refused for its first, in one line that names the field.
    """
    r = _Reader(source)
    top = r.mapping(data, "", SCENARIO_FIELDS)
    name = r.text(top.get("name", Path(source).stem), "name")
    seed = int(r.number(top.get("seed", 1), "seed"))
    days = _days(r, top, days)
    end = _end(r, top, end)
    interval = r.duration(top.get("scrape_interval", "60s"), "scrape_interval")
    end = math.floor(end / interval) * interval
    length = days * 86400
    sources = _sources(r, top.get("sources", ["patched"]))
    namespace = r.text(top.get("namespace", "serving"), "namespace")
    default_replicas = ["tfserving-0", "tfserving-1"]
    replicas, pods_of = _replicas(r, top.get("replicas", default_replicas), interval, end - length, length)
    models = _models(r, top.get("models"), pods_of, length)
    traffic = [
        _traffic(r, item, f"traffic[{i}]", models, pods_of, length)
        for i, item in enumerate(r.sequence(top.get("traffic", []), "traffic"))
    ]
    restarts, gaps = _events(r, top.get("events", []), pods_of, length)
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


def _days(r: _Reader, top: Mapping[str, Any], days: float | None) -> float:
    if days is None:
        days = r.number(top.get("days", 7), "days")
    if days <= 0:
        raise r.fail("days", "must be positive")
    return days


def _end(r: _Reader, top: Mapping[str, Any], end: float | None) -> float:
    """The history's end in Unix seconds: the override, else the scenario's `end`, else now."""
    if end is not None:
        return end
    if "end" not in top:
        return parse_time("now")
    try:
        return parse_time(str(top["end"]))
    except UsageError:
        raise r.fail("end", f"invalid time {top['end']!r} (RFC 3339, e.g. 2025-06-30T00:00:00Z)") from None


def _sources(r: _Reader, value: Any) -> tuple[str, ...]:
    sources = tuple(r.text(s, f"sources[{i}]") for i, s in enumerate(r.sequence(value, "sources")))
    for i, s in enumerate(sources):
        if s not in SOURCES:
            raise r.fail(f"sources[{i}]", f"unknown source {s!r} (use patched, sidecar or poller)")
    if not sources:
        raise r.fail("sources", "name at least one of patched, sidecar, poller")
    if "sidecar" in sources and "poller" in sources:
        raise r.fail("sources", "sidecar includes the poller: name one of them")
    return sources


def _replicas(
    r: _Reader, value: Any, interval: float, start: float, length: float
) -> tuple[list[Replica], dict[str, tuple[str, ...]]]:
    """The pods, and the pods each replica name of the scenario stands for (its own, or a `daily` one's)."""
    replicas: list[Replica] = []
    pods_of: dict[str, tuple[str, ...]] = {}
    for i, item in enumerate(r.sequence(value, "replicas")):
        path = f"replicas[{i}]"
        fields, base = _replica(r, item, path, f"10.0.0.{i + 1}", interval, taken=pods_of)
        pods = _pods(r, fields, path, base, start, length)
        replicas.extend(pods)
        pods_of[base.name] = tuple(pod.name for pod in pods)
    if not replicas:
        raise r.fail("replicas", "name at least one replica")
    for j, x in enumerate(replicas):
        for y in replicas[:j]:
            if (x.cluster, x.pod_name) == (y.cluster, y.pod_name) and x.start < y.stop and y.start < x.stop:
                raise r.fail("replicas", f"pod {x.pod_name!r} lives twice at once in one cluster ({y.name}, {x.name})")
    return replicas, pods_of


def _replica(
    r: _Reader, item: Any, path: str, default_ip: str, interval: float, taken: Container[str]
) -> tuple[Mapping[str, Any], Replica]:
    """One entry of `replicas`, a name or a mapping of REPLICA_FIELDS: its fields and the replica they
    describe, for `_pods` to place in time."""
    if isinstance(item, Mapping):
        fields = r.mapping(item, path, REPLICA_FIELDS)
        name = r.text(fields.get("name"), f"{path}.name")
        ip = r.text(fields.get("ip", default_ip), f"{path}.ip")
        offset = r.number(fields.get("scrape_offset", 0), f"{path}.scrape_offset")
        if offset >= interval:
            raise r.fail(f"{path}.scrape_offset", "must be less than scrape_interval")
    else:
        fields, name, ip, offset = {}, r.text(item, path), default_ip, 0.0
    if name in taken:
        raise r.fail(path, f"replica {name!r} is listed twice")
    pod = r.text(fields["pod"], f"{path}.pod") if "pod" in fields else name
    cluster = r.text(fields["cluster"], f"{path}.cluster") if "cluster" in fields else ""
    return fields, Replica(name, ip, offset, pod, cluster)


def _pods(
    r: _Reader, fields: Mapping[str, Any], path: str, base: Replica, start: float, length: float
) -> list[Replica]:
    """A replica over [from, to), or an autoscaled (`daily`) replica's pod of each day."""
    if "daily" in fields:
        if "from" in fields or "to" in fields:
            raise r.fail(f"{path}.daily", "give either daily or from/to")
        return _daily(r, fields["daily"], f"{path}.daily", base, start, length)
    lo = r.time(fields.get("from", 0), f"{path}.from", length)
    hi = r.time(fields["to"], f"{path}.to", length) if "to" in fields else math.inf
    if hi <= lo:
        raise r.fail(f"{path}.to", "must be after from")
    return [dataclasses.replace(base, start=lo, stop=hi)]


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


def _models(r: _Reader, value: Any, pods_of: Mapping[str, Sequence[str]], length: float) -> list[Model]:
    models: list[Model] = []
    for i, item in enumerate(r.sequence(value, "models")):
        models.append(_model(r, item, f"models[{i}]", {m.name for m in models}, pods_of, length))
    if not models:
        raise r.fail("models", "name at least one model")
    return models


def _model(
    r: _Reader, item: Any, path: str, taken: Container[str], pods_of: Mapping[str, Sequence[str]], length: float
) -> Model:
    fields = r.mapping(item, path, MODEL_FIELDS)
    name = r.text(fields.get("name"), f"{path}.name")
    if name in taken:
        raise r.fail(f"{path}.name", f"model {name!r} is listed twice")
    versions: list[Version] = []
    for j, vitem in enumerate(r.sequence(fields.get("versions"), f"{path}.versions")):
        vpath = f"{path}.versions[{j}]"
        versions.append(_version(r, vitem, vpath, {v.version for v in versions}, pods_of, length))
    if not versions:
        raise r.fail(f"{path}.versions", "name at least one version")
    labels = _version_labels(r, fields.get("version_labels", {}), f"{path}.version_labels", versions)
    base_path = r.text(fields.get("base_path", f"/models/{name}"), f"{path}.base_path")
    return Model(name, base_path, labels, tuple(versions))


def _version(
    r: _Reader, item: Any, path: str, taken: Container[str], pods_of: Mapping[str, Sequence[str]], length: float
) -> Version:
    """One entry of a model's `versions`: a version, or a mapping with its times and replicas (default: all)."""
    fields = r.mapping(item if isinstance(item, Mapping) else {"version": item}, path, VERSION_FIELDS)
    name = r.text(fields.get("version"), f"{path}.version")
    if name in taken:
        raise r.fail(f"{path}.version", f"version {name} is listed twice")
    loaded = r.time(fields.get("loaded", 0), f"{path}.loaded", length)
    unloaded = r.time(fields["unloaded"], f"{path}.unloaded", length) if fields.get("unloaded") is not None else None
    if unloaded is not None and unloaded <= loaded:
        raise r.fail(f"{path}.unloaded", "must be after loaded")
    size = fields.get("size_bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise r.fail(f"{path}.size_bytes", f"expected a whole number of bytes, got {size!r}")
    if "replicas" in fields:
        return Version(name, loaded, unloaded, r.names(fields["replicas"], f"{path}.replicas", pods_of), size)
    return Version(name, loaded, unloaded, tuple(pod for pods in pods_of.values() for pod in pods), size)


def _version_labels(r: _Reader, value: Any, path: str, versions: Sequence[Version]) -> dict[str, str]:
    """A model's `version_labels`; as in TF Serving, a label points at a numeric version the model has."""
    labels: dict[str, str] = {}
    for label, target in r.mapping(value, path).items():
        version = r.text(target, f"{path}.{label}")
        if not any(v.version == version for v in versions):
            raise r.fail(f"{path}.{label}", f"points at version {version}, which is not listed")
        if not version.isdigit():
            raise r.fail(f"{path}.{label}", "labels can only point at numeric versions")
        labels[str(label)] = version
    return labels


def _traffic(
    r: _Reader, item: Any, path: str, models: Sequence[Model], pods_of: Mapping[str, Sequence[str]], length: float
) -> Traffic:
    """One entry of `traffic`: a steady `rate` over [from, to), or `calls` at one time `at`."""
    fields = r.mapping(item, path, TRAFFIC_FIELDS)
    model_name = r.text(fields.get("model"), f"{path}.model")
    model = next((m for m in models if m.name == model_name), None)
    if model is None:
        raise r.fail(f"{path}.model", f"unknown model {model_name!r}")
    version_name = r.text(fields.get("version"), f"{path}.version")
    version = next((v for v in model.versions if v.version == version_name), None)
    if version is None:
        raise r.fail(f"{path}.version", f"model {model_name} has no version {version_name}")
    if "replicas" in fields:
        called = Traffic(model_name, version_name, r.names(fields["replicas"], f"{path}.replicas", pods_of))
    else:
        called = Traffic(model_name, version_name, version.replicas)
    if ("rate" in fields) == ("calls" in fields):
        raise r.fail(path, "give either rate (with optional from/to) or calls (with at)")
    if "rate" in fields:
        return _steady(r, fields, path, called, length)
    return _burst(r, fields, path, called, length)


def _steady(r: _Reader, fields: Mapping[str, Any], path: str, called: Traffic, length: float) -> Traffic:
    if "at" in fields:
        raise r.fail(f"{path}.at", "only with calls")
    shape = r.text(fields.get("shape", "flat"), f"{path}.shape")
    if shape not in SHAPES:
        raise r.fail(f"{path}.shape", f"unknown shape {shape!r} (use flat or diurnal)")
    start = r.time(fields.get("from", 0), f"{path}.from", length)
    stop = r.time(fields.get("to", "end"), f"{path}.to", length)
    if stop <= start:
        raise r.fail(f"{path}.to", "must be after from")
    rate = r.rate(fields["rate"], f"{path}.rate")
    return dataclasses.replace(called, rate=rate, start=start, stop=stop, shape=shape)


def _burst(r: _Reader, fields: Mapping[str, Any], path: str, called: Traffic, length: float) -> Traffic:
    for key in ("from", "to", "shape"):
        if key in fields:
            raise r.fail(f"{path}.{key}", "only with rate")
    calls = r.number(fields["calls"], f"{path}.calls", minimum=1)
    if not float(calls).is_integer():
        raise r.fail(f"{path}.calls", "must be a whole number")
    return dataclasses.replace(called, calls=int(calls), at=r.time(fields.get("at"), f"{path}.at", length))


def _events(
    r: _Reader, value: Any, pods_of: Mapping[str, Sequence[str]], length: float
) -> tuple[list[Restart], list[Gap]]:
    restarts: list[Restart] = []
    gaps: list[Gap] = []
    for i, item in enumerate(r.sequence(value, "events")):
        path = f"events[{i}]"
        if isinstance(item, Mapping) and "restart" in item:
            restarts.append(_restart(r, item, path, pods_of, length))
        elif isinstance(item, Mapping) and "gap" in item:
            gaps.append(_gap(r, item, path, pods_of, length))
        else:
            raise r.fail(path, "expected {restart: REPLICA, at: TIME} or {gap: REPLICA, from: TIME, to: TIME}")
    return restarts, gaps


def _restart(r: _Reader, item: Any, path: str, pods_of: Mapping[str, Sequence[str]], length: float) -> Restart:
    fields = r.mapping(item, path, RESTART_FIELDS)
    pod = _one_pod(r, fields["restart"], f"{path}.restart", pods_of)
    at = r.time(fields.get("at"), f"{path}.at", length)
    down = r.duration(fields.get("down", "2m"), f"{path}.down")
    sidecar = fields.get("sidecar", False)
    if not isinstance(sidecar, bool):
        raise r.fail(f"{path}.sidecar", "expected true or false")
    return Restart(pod, at, down, sidecar)


def _gap(r: _Reader, item: Any, path: str, pods_of: Mapping[str, Sequence[str]], length: float) -> Gap:
    fields = r.mapping(item, path, GAP_FIELDS)
    pod = _one_pod(r, fields["gap"], f"{path}.gap", pods_of)
    start = r.time(fields.get("from"), f"{path}.from", length)
    stop = r.time(fields.get("to"), f"{path}.to", length)
    if stop <= start:
        raise r.fail(f"{path}.to", "must be after from")
    return Gap(pod, start, stop)


def _one_pod(r: _Reader, value: Any, path: str, pods_of: Mapping[str, Sequence[str]]) -> str:
    """The one pod an event happens to: a replica's name, not an autoscaled replica's (it names several)."""
    pods = r.names([value], path, pods_of)
    if len(pods) != 1:
        raise r.fail(path, f"names {len(pods)} pods (an autoscaled replica): name one of {', '.join(pods)}")
    return pods[0]


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

# What each demo model's version directory holds on disk (bytes; TF Serving's estimate is 1.2 times
# that): a small fraud model, image and text models, a ranker with its embedding tables.
DEMO_SIZES = {
    "resnet": 102_760_448,
    "bert": 438_007_808,
    "ranker": 12_884_901_888,
    "fraud": 41_943_041,
    "search": 2_147_483_648,
}
for demo_model in DEMO["models"]:
    for demo_version in demo_model["versions"]:
        demo_version["size_bytes"] = DEMO_SIZES[demo_model["name"]]

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
        line, problem = yaml_problem(e)
        where = f" at line {line}" if line is not None else ""
        raise UsageError(f"scenario {name_or_file}: not valid YAML{where}: {problem}") from None
    return parse(data, str(path), days=days, end=end)
