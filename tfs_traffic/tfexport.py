"""TF Serving's Prometheus exposition format, for scalar metrics (counters and gauges).

TF Serving's `PrometheusExporter` (tensorflow_serving/util/prometheus_exporter.cc) does not use a
Prometheus client library. It turns every character of a TF metric name outside `[a-zA-Z0-9_]`
into `:` (so `/tensorflow/serving/model_call_count` is `:tensorflow:serving:model_call_count`),
label names' characters outside `[a-zA-Z0-9]` into `_`, escapes `\\` and `"` in label values,
writes one `# TYPE name counter|gauge` line per metric and no `# HELP`, adds no `_total` suffix,
prints integer values with `%d`, and ends the page with a newline. A metric with no points still
gets its `# TYPE` line. This module reproduces that, so tests can compare what the patched server
would serve with what the simulator serves and the report queries.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9]")


@dataclass(frozen=True)
class Metric:
    """One TF monitoring metric with its collected points: `points` are (label values, int value)."""

    name: str
    kind: str  # "cumulative" (a counter) or "gauge", as TF's MetricKind
    label_names: tuple[str, ...]
    points: tuple[tuple[tuple[str, ...], int], ...]


def prometheus_name(tf_name: str) -> str:
    """The exporter's metric name: `/a/b-c` becomes `:a:b:c`; a leading digit gets a `_` prefix."""
    name = _NAME_CHARS.sub(":", tf_name)
    return f"_{name}" if name[:1].isdigit() else name


def _label_name(name: str) -> str:
    name = _LABEL_CHARS.sub("_", name)
    return f"_{name}" if name[:1].isdigit() else name


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def render(metrics: Iterable[Metric]) -> str:
    """The page TF Serving serves at /monitoring/prometheus/metrics for these scalar metrics.

    Metrics come out in name order (the exporter walks a std::map of descriptors), points in the
    order given (the registry's order).
    """
    lines: list[str] = []
    for metric in sorted(metrics, key=lambda m: m.name):
        name = prometheus_name(metric.name)
        kind = {"cumulative": "counter", "gauge": "gauge"}.get(metric.kind, "untyped")
        lines.append(f"# TYPE {name} {kind}")
        for values, value in metric.points:
            labels = ",".join(
                f'{_label_name(label)}="{_label_value(v)}"' for label, v in zip(metric.label_names, values, strict=True)
            )
            lines.append(f"{name}{{{labels}}} {int(value)}")
    return "\n".join(lines) + "\n"


def parse_driver_output(text: str) -> list[Metric]:
    """Read the `collect` output of tests/cpp/traffic_metrics_driver.cc into metrics."""
    descriptors: dict[str, tuple[str, tuple[str, ...]]] = {}
    points: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == "metric":
            _, name, kind, _value_type, label_names, _description = fields
            descriptors[name] = (kind, tuple(label_names.split(",")) if label_names else ())
            points.setdefault(name, [])
        elif fields[0] == "point":
            points.setdefault(fields[1], []).append((tuple(fields[2:-1]), int(fields[-1])))
    return [Metric(name, kind, labels, tuple(points[name])) for name, (kind, labels) in descriptors.items()]


def samples(metrics: Sequence[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    """{(prometheus name, sorted label pairs): value} for comparing expositions independent of order."""
    return {
        (prometheus_name(m.name), tuple(sorted(zip(m.label_names, values, strict=True)))): value
        for m in metrics
        for values, value in m.points
    }
