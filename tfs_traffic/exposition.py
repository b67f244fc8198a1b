"""TF Serving's Prometheus exposition (`util/prometheus_exporter.cc`), rendered from plain data.

The stand-in server (`tfs-traffic sim`) serves its metrics with this, and the patch work compares the
C++ exporter's output of the patched metrics with it, so both follow the same rules:

- metric names are TF monitoring names with every character outside `[a-zA-Z0-9_]` turned into
  `:` (`/tensorflow/serving/model_call_count` -> `:tensorflow:serving:model_call_count`), and a
  leading digit gets a `_` prefix; label names get `_` for such characters;
- one `# TYPE name counter|gauge|histogram|untyped` line per family, no `# HELP`, no `_total`;
- families in the order of their TF names (the collection registry is a sorted map), points in the
  order of their label values (each metric's cells are a sorted map), even a family with no points
  prints its `# TYPE` line;
- counters and gauges print `%d` integer values; label values escape `\\` and `"` only;
- lines are joined with `\\n` and the page ends with one `\\n`.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
UNTYPED = "untyped"


@dataclass(frozen=True)
class Histogram:
    """One histogram cell: per-bucket (not cumulative) counts; the last bucket is +Inf."""

    bucket_limits: Sequence[float]  # upper limits of all buckets but the last
    bucket_counts: Sequence[int]  # len(bucket_limits) + 1
    sum: float


@dataclass(frozen=True)
class Family:
    """A TF monitoring metric: its TF name, kind, label names and cells (label values -> value)."""

    tf_name: str
    kind: str  # counter | gauge | histogram | untyped
    label_names: Sequence[str]
    points: Mapping[Any, int | Histogram] = field(default_factory=dict)  # label values tuple -> value


def metric_name(tf_name: str) -> str:
    """`GetPrometheusMetricName`: `/a/b-c` -> `:a:b:c`."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if re.match(r"[0-9]", name) else name


def label_name(name: str) -> str:
    """`SanatizeLabelName`: anything but letters and digits becomes `_`."""
    out = re.sub(r"[^a-zA-Z0-9]", "_", name)
    return "_" + out if re.match(r"[0-9]", out) else out


def label_value(value: str) -> str:
    """`SanitizeLabelValue`: escape backslash and double quote (newlines are left as they are)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _six_digits(x: float) -> str:
    """absl::StrCat(double): printf `%g` with six significant digits."""
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


def _labels(family: Family, values: tuple[str, ...]) -> list[str]:
    if len(values) != len(family.label_names):
        raise ValueError(f"{family.tf_name}: {len(values)} label values for {len(family.label_names)} labels")
    return [f'{label_name(n)}="{label_value(v)}"' for n, v in zip(family.label_names, values, strict=True)]


def render(families: Iterable[Family]) -> str:
    """The page TF Serving's PrometheusExporter::GeneratePage would produce for these metrics."""
    lines: list[str] = []
    for family in sorted(families, key=lambda f: f.tf_name):
        name = metric_name(family.tf_name)
        points = sorted(family.points.items(), key=lambda kv: [v.encode() for v in kv[0]])
        if family.kind == HISTOGRAM:
            lines.append(f"# TYPE {name} histogram")
            for values, hist in points:
                if not isinstance(hist, Histogram):
                    raise TypeError(f"{family.tf_name}: histogram cell is {type(hist).__name__}")
                labels = _labels(family, values)
                prefix = f"{name}_bucket{{{','.join(labels)}" + ("," if labels else "")
                cumulative = 0
                n = len(hist.bucket_counts)
                for i, count in enumerate(hist.bucket_counts):
                    cumulative += count
                    limit = _six_digits(hist.bucket_limits[i]) if i < n - 1 else "+Inf"
                    lines.append(f'{prefix}le="{limit}"}} {cumulative}')
                lines.append(f"{name}_sum{{{','.join(labels)}}} {_six_digits(hist.sum)}")
                lines.append(f"{name}_count{{{','.join(labels)}}} {cumulative}")
        else:
            kind = family.kind if family.kind in (COUNTER, GAUGE) else UNTYPED
            lines.append(f"# TYPE {name} {kind}")
            for values, value in points:
                if isinstance(value, Histogram):
                    raise TypeError(f"{family.tf_name}: scalar family has a histogram cell")
                lines.append(f"{name}{{{','.join(_labels(family, values))}}} {int(value)}")
    return "\n".join(lines) + "\n"


def parse(page: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Read such a page back: metric name -> {sorted (label, value) pairs -> value}. For tests and tools."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
    pair = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        m = sample.match(line)
        if not m:
            raise ValueError(f"not an exposition line: {line!r}")
        labels = tuple(
            sorted((k, v.replace('\\"', '"').replace("\\\\", "\\")) for k, v in pair.findall(m.group(2) or ""))
        )
        out.setdefault(m.group(1), {})[labels] = float(m.group(3))
    return out
