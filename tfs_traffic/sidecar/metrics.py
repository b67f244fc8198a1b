"""The sidecar's Prometheus metrics (docs/metrics.md), in one process or aggregated over workers.

With `--workers N` every worker counts into prometheus_client's multiprocess files (one mmap file
per process in a private temporary directory) and the supervisor serves one scrape that sums them.
Counters and histograms sum across processes; the gauges are written by the supervisor alone and
use the `max` mode, which over a single writer is simply its value.

The data path never builds label strings per call: `CallMetrics` caches the labelled child of each
(model, version, api, code), a set kept small by the cardinality rules in `view.py`.
"""

import contextlib
import glob
import os
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from tfs_traffic import contract
from tfs_traffic.sidecar.view import View

PARSE_ERRORS = "tfserving_sidecar_parse_errors_total"
PROTOCOLS = ("grpc", "rest")
# The methods the relay may refuse (docs/metrics.md): TF Serving's config reload, without --allow-config-reload.
REFUSED_METHODS = ("tensorflow.serving.ModelService/HandleReloadConfigRequest",)

# Upstream round trips, from a fast local model to slow batch jobs.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def enable_multiprocess(directory: str) -> None:
    """Count into multiprocess files under `directory` (before any metric is created)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import values

    # prometheus_client picks its value class when first imported; pick again now the variable is set.
    values.ValueClass = values.get_value_class()


def _initialised(path: str) -> bool:
    try:
        return os.path.getsize(path) >= 8
    except OSError:
        return False


def scrape_registry(before: Callable[[], None] = lambda: None) -> Any:
    """The registry to serve: all processes' files in multiprocess mode, else the default one.

    `before` runs ahead of reading the files: the supervisor has its workers count their backlogs.
    """
    import prometheus_client

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        class Collector(multiprocess.MultiProcessCollector):
            """Skips a file that a worker is creating at this very moment (still empty)."""

            def collect(self) -> Any:
                before()
                files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _initialised(f)]
                return self.merge(files, accumulate=True)

        registry = prometheus_client.CollectorRegistry()
        Collector(registry)
        return registry
    return prometheus_client.REGISTRY


class StatusMetrics:
    """The poller's gauges: version availability, estimated RAM, upstream health, and what the server
    resolves a request without a version and each version label to."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Gauge

        registry = REGISTRY if registry is None else registry

        def gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Any:
            # Written by the supervisor alone: `max` over one writer is its value.
            return Gauge(name, documentation, list(labels), registry=registry, multiprocess_mode="max")

        version = (contract.MODEL, contract.VERSION)
        self.available = gauge(
            contract.SIDECAR_AVAILABLE,
            "1 while GetModelStatus reports the version AVAILABLE, else 0 (kept at 0 after unload).",
            version,
        )
        self.estimated_ram = gauge(
            contract.SIDECAR_ESTIMATED_RAM,
            "TF Serving's own RAM estimate of an AVAILABLE version: its files' total size x 1.2 "
            "(servables/tensorflow/util.cc); 0 once it is unloaded.",
            version,
        )
        self.up = gauge(contract.SIDECAR_UP, "1 when the sidecar's last status poll of the upstream succeeded.")
        self.latest = gauge(
            contract.SIDECAR_LATEST,
            "1 for the version the server sends a request without a version to (its highest AVAILABLE), "
            "else 0 (kept at 0).",
            version,
        )
        self.label = gauge(
            contract.SIDECAR_LABEL,
            "1 for the version the server resolves version_label to, else 0 (kept at 0).",
            (*version, contract.VERSION_LABEL),
        )
        self._latest: set[tuple[str, str]] = set()  # (model, version) with a latest series
        self._labels: set[tuple[str, str, str]] = set()  # (model, version, label) with a label series

    def resolved(self, view: View) -> None:
        """Export the view's answers: 1 for what "latest" and each label resolve to now, 0 for
        every earlier answer (kept at 0, like availability, docs/metrics.md). A model whose poll
        failed keeps its last answers in the view, a model dropped from the config has none."""
        latest = {(name, str(m.latest)) for name, m in view.models.items() if m.latest is not None}
        labels = {(name, str(v), label) for name, m in view.models.items() for label, v in m.labels.items()}
        for key in self._latest | latest:
            self.latest.labels(*key).set(1 if key in latest else 0)
        for lkey in self._labels | labels:
            self.label.labels(*lkey).set(1 if lkey in labels else 0)
        self._latest |= latest
        self._labels |= labels


class CallMetrics:
    """Call counter, duration histogram (children cached: the relay's hot path) and parse errors."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = REGISTRY if registry is None else registry
        self._calls = Counter(
            contract.SIDECAR_CALLS.removesuffix("_total"),
            "Relayed Predict/Classify/Regress/MultiInference calls by resolved version, api and status code.",
            [contract.MODEL, contract.VERSION, "api", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            contract.SIDECAR_DURATION,
            "Time from the request's headers to the end of the response, of relayed inference calls.",
            [contract.MODEL, contract.VERSION, "api"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        parse_errors = Counter(
            PARSE_ERRORS.removesuffix("_total"),
            "Relayed connections whose bytes the sidecar could not parse (still forwarded, no longer counted).",
            ["protocol"],
            registry=registry,
        )
        self._parse_errors = {protocol: parse_errors.labels(protocol) for protocol in PROTOCOLS}
        refused = Counter(
            contract.SIDECAR_REFUSED.removesuffix("_total"),
            "gRPC calls the relay answered PERMISSION_DENIED itself instead of forwarding them, by method.",
            ["method"],
            registry=registry,
        )
        self._refused = {method: refused.labels(method) for method in REFUSED_METHODS}
        self._call_children: dict[tuple[str, str, str, str], Any] = {}
        self._duration_children: dict[tuple[str, str, str], Any] = {}
        self._held: list[tuple[str, str, str, str, float]] | None = None

    def record(self, model: str, version: str, api: str, code: str, seconds: float) -> None:
        """Count one call and observe its duration; labels must already be bounded."""
        held = self._held
        if held is not None:
            held.append((model, version, api, code, seconds))
            return
        self._write([(model, version, api, code, seconds)])

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Calls recorded inside are written together when it ends.

        In multiprocess mode every write of a value is a locked mmap update (~3 us, three per call);
        a batch writes each label set's count, sum and buckets once.
        """
        if self._held is not None:
            yield
            return
        held: list[tuple[str, str, str, str, float]] = []
        self._held = held
        try:
            yield
        finally:
            self._held = None
            self._write(held)

    def _write(self, calls: list[tuple[str, str, str, str, float]]) -> None:
        counts: dict[tuple[str, str, str, str], int] = {}
        durations: dict[tuple[str, str, str], list[float]] = {}
        for model, version, api, code, seconds in calls:
            key = (model, version, api, code)
            counts[key] = counts.get(key, 0) + 1
            durations.setdefault((model, version, api), []).append(seconds)
        for key, n in counts.items():
            child = self._call_children.get(key)
            if child is None:
                child = self._call_children[key] = self._calls.labels(*key)
            child.inc(n)
        for dkey, values in durations.items():
            timer = self._duration_children.get(dkey)
            if timer is None:
                timer = self._duration_children[dkey] = self._duration.labels(*dkey)
            # prometheus_client's Histogram child keeps a sum and per-bucket (not cumulative) values, and
            # `observe(v)` adds v to the sum and 1 to the first bucket whose bound is >= v: that, per batch.
            bounds = timer._upper_bounds
            per_bucket = [0] * len(bounds)
            for value in values:
                per_bucket[bisect_left(bounds, value)] += 1
            timer._sum.inc(sum(values))
            for bucket, n in zip(timer._buckets, per_bucket, strict=True):
                if n:
                    bucket.inc(n)

    def parse_error(self, protocol: str) -> None:
        self._parse_errors[protocol].inc()

    def refused_call(self, method: str) -> None:
        self._refused[method].inc()
