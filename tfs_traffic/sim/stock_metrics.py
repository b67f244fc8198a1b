"""The metric families stock TF Serving 2.20 exports, kept beside the patched ones.

A real metrics page carries every metric registered in the binary: a family with no cells still
prints its `# TYPE` line (`util/prometheus_exporter.cc:PrometheusExporter::GeneratePage`). These are
TF Serving's own, with the kinds, label names and buckets of their definitions:

- `servables/tensorflow/util.cc`: `request_count` counter {model_name, status} (gRPC Predict,
  Classify, Regress; every REST `/v1/` request); `request_latency` histogram {model_name, API,
  entrypoint}, Exponential(10, 1.8, 33) microseconds, for the same calls when OK (`http_server.cc`,
  `prediction_service_impl.cc`); `runtime_latency` histogram {model_name, API, runtime}, same
  buckets, around the model run of an OK Predict/Classify/Regress (`predict_util.cc`,
  `classifier.cc`, `regressor.cc`: runtime `TF1`); `request_example_counts` histogram {model},
  Exponential(1, 2, 15), and `request_example_count_total` counter {model}, the examples of a
  MultiInference (`multi_inference.cc`);
- never recorded here, so only their `# TYPE` line: `batching_session/queuing_latency` histogram
  {thread_pool_name} and `batching_session/wrapped_run_count` counter (`batching/batching_session.cc`,
  batching off); `mlmd_map` gauge {model_name, version} (`machine_learning_metadata.cc`, no
  mlmd_uuid file); `model_warmup_latency` histogram and `model_warmup_records_read` counter
  {model_path, status} (`saved_model_warmup_util.cc`, no warm-up records); `request_log_count`
  counter {model_name, status_code} (`core/request_logger.cc`, no logging config).

Judged harmless: TensorFlow core's own families (`/tensorflow/core/...`, `/tensorflow/cc/...`,
hundreds of them, from the TF runtime linked into the binary) are not reproduced: nothing in this
project selects them, and scrapers and parsers already meet unselected families of every kind above.
The per-task batching families (`batching/batching_util.h`) exist only once batching runs.
"""

import bisect
import threading
from collections.abc import Sequence

from tfs_traffic.exposition import COUNTER, GAUGE, HISTOGRAM, Family, Histogram

PREFIX = "/tensorflow/serving/"


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """`monitoring::Buckets::Exponential`: `count` limits, each the last times `growth` (then DBL_MAX)."""
    limits = []
    bound = scale
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return tuple(limits)


LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)
EXAMPLE_BUCKETS = exponential_buckets(1, 2, 15)


class _Sampler:
    """A `monitoring::Sampler` cell set: TF's histogram puts a value in the first bucket whose limit
    is above it (`upper_bound`), so a value equal to a limit lands in the next bucket."""

    def __init__(self, limits: Sequence[float]) -> None:
        self.limits = tuple(limits)
        self.cells: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def add(self, labels: tuple[str, ...], value: float) -> None:
        counts, total = self.cells.setdefault(labels, ([0] * (len(self.limits) + 1), [0.0]))
        counts[bisect.bisect_right(self.limits, value)] += 1
        total[0] += value

    def points(self) -> dict[tuple[str, ...], Histogram]:
        return {k: Histogram(self.limits, tuple(c), s[0]) for k, (c, s) in self.cells.items()}


class StockMetrics:
    """TF Serving's own metrics (request_count and the rest of the table above); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self._request_latency = _Sampler(LATENCY_BUCKETS)
        self._runtime_latency = _Sampler(LATENCY_BUCKETS)
        self._examples = _Sampler(EXAMPLE_BUCKETS)
        self._example_total: dict[tuple[str], int] = {}

    def count_request(self, model_name: str, status_name: str) -> None:
        """`RecordModelRequestCount(model_name, status)`."""
        with self._lock:
            key = (model_name, status_name)
            self.requests[key] = self.requests.get(key, 0) + 1

    def request_latency(self, model_name: str, api: str, entrypoint: str, micros: float) -> None:
        """`RecordRequestLatency` (an OK request, wall time in microseconds)."""
        with self._lock:
            self._request_latency.add((model_name, api, entrypoint), float(int(micros)))

    def runtime_latency(self, model_name: str, api: str, micros: float) -> None:
        """`RecordRuntimeLatency(..., runtime="TF1", ...)` around the model run."""
        with self._lock:
            self._runtime_latency.add((model_name, api, "TF1"), float(int(micros)))

    def example_count(self, model_name: str, count: int) -> None:
        """`RecordRequestExampleCount`."""
        with self._lock:
            self._examples.add((model_name,), float(count))
            self._example_total[(model_name,)] = self._example_total.get((model_name,), 0) + count

    def families(self) -> list[Family]:
        with self._lock:
            return [
                Family(PREFIX + "request_count", COUNTER, ("model_name", "status"), dict(self.requests)),
                Family(
                    PREFIX + "request_latency",
                    HISTOGRAM,
                    ("model_name", "API", "entrypoint"),
                    self._request_latency.points(),
                ),
                Family(
                    PREFIX + "runtime_latency",
                    HISTOGRAM,
                    ("model_name", "API", "runtime"),
                    self._runtime_latency.points(),
                ),
                Family(PREFIX + "request_example_counts", HISTOGRAM, ("model",), self._examples.points()),
                Family(PREFIX + "request_example_count_total", COUNTER, ("model",), dict(self._example_total)),
                Family(PREFIX + "batching_session/queuing_latency", HISTOGRAM, ("thread_pool_name",)),
                Family(PREFIX + "batching_session/wrapped_run_count", COUNTER, ()),
                Family(PREFIX + "mlmd_map", GAUGE, ("model_name", "version")),
                Family(PREFIX + "model_warmup_latency", HISTOGRAM, ("model_path", "status")),
                Family(PREFIX + "model_warmup_records_read", COUNTER, ("model_path", "status")),
                Family(PREFIX + "request_log_count", COUNTER, ("model_name", "status_code")),
            ]
