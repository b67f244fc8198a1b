"""Per-version traffic history as a dataset: one row per (timestamp, model, version).

Both call sources are combined the way the report combines them (per-source sums across replicas,
then max, never sum), so the dataset and the report never disagree about a version's traffic.
Range queries are split into chunks under Prometheus' 11,000-points-per-series limit; chunk
boundaries sit on the step grid, so the result is identical whatever the chunking.
"""

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tfs_traffic import contract
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.prometheus import promql
from tfs_traffic.prometheus.api import PrometheusClient
from tfs_traffic.report.display import version_key

MAX_POINTS_PER_SERIES = 11_000
GROUP_LABELS = ("namespace", contract.MODEL, contract.VERSION)
COLUMNS = ("timestamp", "namespace", "model_name", "model_version", "qps", "available")


@dataclass(frozen=True)
class Row:
    timestamp: float
    namespace: str
    model_name: str
    model_version: str
    qps: float | None
    available: int | None


def _model_matcher(models: Sequence[str]) -> str:
    return f"{contract.MODEL}=~{promql.any_of(models)}" if models else ""


def qps_query(rate_window: float, models: Sequence[str] = ()) -> str:
    """Calls per second per version: each source summed across replicas, then the max of the sources."""
    by, rate = ", ".join(GROUP_LABELS), promql.duration(rate_window)
    counters = {s: promql.select(m, _model_matcher(models)) for s, m in promql.CALL_SOURCES.items()}
    return promql.max_of_sources({s: f"sum by ({by}) (rate({c}[{rate}]))" for s, c in counters.items()}, by)


def available_query(models: Sequence[str] = ()) -> str:
    """1 while any replica reports the version AVAILABLE through either source."""
    names = f"__name__=~{promql.any_of(list(promql.AVAILABLE_SOURCES.values()))}"
    return f"max by ({', '.join(GROUP_LABELS)}) ({promql.select('', names, _model_matcher(models))})"


def step_grid(at: float, window: float, step: float) -> tuple[float, float]:
    """(start, end) on the step grid, so repeated and chunked exports see the same timestamps."""
    end = math.floor(at / step) * step
    return end - math.floor(window / step) * step, end


def chunks(start: float, end: float, step: float, max_points: int) -> list[tuple[float, float]]:
    """Split [start, end] into ranges of at most `max_points` steps each, on the same grid."""
    if max_points < 1:
        raise UsageError("max points per chunk must be at least 1")
    total = round((end - start) / step) + 1
    return [(start + i * step, start + (min(i + max_points, total) - 1) * step) for i in range(0, total, max_points)]


def _fetch(
    client: PrometheusClient,
    query: str,
    ranges: list[tuple[float, float]],
    step: float,
    concurrency: int,
    progress: Callable[[], None],
) -> dict[tuple[str, ...], dict[float, float]]:
    def one(r: tuple[float, float]) -> list[dict[str, Any]]:
        result = client.query_range(query, r[0], r[1], step)
        progress()
        return result

    out: dict[tuple[str, ...], dict[float, float]] = {}
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for result in pool.map(one, ranges):
            for series in result:
                key = tuple(series["metric"].get(label, "") for label in GROUP_LABELS)
                points = out.setdefault(key, {})
                for ts, value in series["values"]:
                    points[float(ts)] = float(value)
    return out


def fetch_rows(
    client: PrometheusClient,
    at: float,
    window: float,
    step: float,
    models: Sequence[str] = (),
    rate_window: float | None = None,
    max_points: int = MAX_POINTS_PER_SERIES,
    concurrency: int = 4,
    show_progress: bool = False,
) -> list[Row]:
    """The history as rows sorted by (timestamp, namespace, model, version); raises if it is empty."""
    start, end = step_grid(at, window, step)
    ranges = chunks(start, end, step, max_points)
    rate_window = rate_window or max(step, 300.0)
    queries = (qps_query(rate_window, models), available_query(models))
    with _progress(show_progress, total=len(ranges) * len(queries)) as advance:
        qps, available = (_fetch(client, q, ranges, step, concurrency, advance) for q in queries)
    keys = sorted(set(qps) | set(available))
    if not keys:
        what = f"model {', '.join(models)}" if models else "any model"
        raise ToolError(f"no traffic or inventory series for {what} between {start:.0f} and {end:.0f} in Prometheus")
    missing = sorted(set(models) - {k[1] for k in keys})
    if missing:
        raise UsageError(f"no series for model {', '.join(repr(m) for m in missing)} in the window")
    rows = []
    for key in keys:
        q, a = qps.get(key, {}), available.get(key, {})
        for ts in sorted(set(q) | set(a)):
            av = a.get(ts)
            rows.append(Row(ts, key[0], key[1], key[2], q.get(ts), None if av is None else int(av)))
    rows.sort(key=lambda r: (r.timestamp, r.namespace, r.model_name, version_key(r.model_version)))
    return rows


class _progress:
    """A rich progress bar on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self._bar = Progress(transient=True, console=_stderr_console())
        self._bar.start()
        task = self._bar.add_task("querying Prometheus", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr)


def rows_as_dicts(rows: Sequence[Row]) -> Iterator[dict[str, Any]]:
    from tfs_traffic.durations import rfc3339

    for r in rows:
        yield {
            "timestamp": rfc3339(r.timestamp),
            "namespace": r.namespace,
            "model_name": r.model_name,
            "model_version": r.model_version,
            "qps": r.qps,
            "available": r.available,
        }


def to_dataframe(rows: Sequence[Row]) -> Any:
    """A pandas DataFrame with the documented columns (timestamp as UTC datetimes in microseconds).

    The unit is fixed: pandas 2 made them nanoseconds, pandas 3 picks microseconds for whole seconds
    and nanoseconds otherwise, so the Parquet schema would follow the pandas version and the data.
    Microseconds hold Prometheus' millisecond timestamps exactly.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ToolError("this needs pandas: pip install 'tfs-traffic[export]'") from None
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime([r.timestamp for r in rows], unit="s", utc=True).as_unit("us"),
            "namespace": pd.Series([r.namespace for r in rows], dtype="string"),
            "model_name": pd.Series([r.model_name for r in rows], dtype="string"),
            "model_version": pd.Series([r.model_version for r in rows], dtype="string"),
            "qps": pd.Series([r.qps for r in rows], dtype="Float64"),
            "available": pd.Series([r.available for r in rows], dtype="Int8"),
        }
    )
    return frame


def write_rows(rows: Sequence[Row], fmt: str, output: str | None) -> None:
    """Write rows as csv, jsonl or parquet to `output` (atomically) or stdout (not parquet)."""
    import csv
    import io
    import json

    from tfs_traffic.files import atomic_writer

    if fmt == "parquet":
        if not output or output == "-":
            raise UsageError("--format parquet needs --output FILE")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ToolError("parquet output needs pyarrow: pip install 'tfs-traffic[export]'") from None
        table = pa.Table.from_pandas(to_dataframe(rows), preserve_index=False)
        with atomic_writer(output, "wb") as handle:
            pq.write_table(table, handle)
        return
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows_as_dicts(rows))
    elif fmt == "jsonl":
        for record in rows_as_dicts(rows):
            buffer.write(json.dumps(record) + "\n")
    else:
        raise UsageError(f"unknown format {fmt!r}: use csv, parquet or jsonl")
    if output and output != "-":
        with atomic_writer(output) as handle:
            handle.write(buffer.getvalue())
    else:
        sys.stdout.write(buffer.getvalue())


def export_dataframe(
    prometheus: str,
    window: str = "30d",
    step: str = "5m",
    at: str = "now",
    models: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> Any:
    """Notebook entry point: the per-version history from `prometheus` as a pandas DataFrame.

    >>> frame = export_dataframe("http://localhost:9090", window="7d")  # doctest: +SKIP
    """
    from tfs_traffic.durations import parse_duration, parse_time
    from tfs_traffic.prometheus.api import PrometheusAccess

    client = PrometheusClient(PrometheusAccess(url=prometheus.rstrip("/"), headers=dict(headers or {})))
    rows = fetch_rows(client, parse_time(at), parse_duration(window), parse_duration(step), models)
    return to_dataframe(rows)
