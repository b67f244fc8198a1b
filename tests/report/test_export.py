"""`tfs-traffic export` and the forecast against a real Prometheus holding backfilled history."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from tfs_traffic import contract
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.report.export import Row, chunks, fetch_rows, step_grid, to_dataframe
from tfs_traffic.report.forecast import DAY, daily_totals, forecast_idle

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
MIN = 60
HOURS = 12
END = T0 + HOURS * 3600


def counter(rate_per_s: float, start: int, end: int) -> list[tuple[float, float]]:
    return [(t, rate_per_s * (t - start)) for t in range(start, end + 1, MIN)]


def gauge(value: float, start: int, end: int) -> list[tuple[float, float]]:
    return [(t, value) for t in range(start, end + 1, MIN)]


def labels(model: str, version: str, instance: str, **extra: str) -> dict[str, str]:
    return {"model_name": model, "model_version": version, "instance": instance, "namespace": "ml", **extra}


HISTORY = [
    # resnet:1 on two replicas, 2/s and 3/s; the sidecar saw the same 5/s: combined 5, not 10.
    (contract.PATCHED_CALLS, labels("resnet", "1", "a"), counter(2, T0, END)),
    (contract.PATCHED_CALLS, labels("resnet", "1", "b"), counter(3, T0, END)),
    (contract.SIDECAR_CALLS, labels("resnet", "1", "a", api="predict", code="OK"), counter(5, T0, END)),
    (contract.PATCHED_AVAILABLE, labels("resnet", "1", "a"), gauge(1, T0, END)),
    (contract.PATCHED_AVAILABLE, labels("resnet", "1", "b"), gauge(1, T0, END)),
    # resnet:2 loaded after 6 hours, 0.5/s.
    (contract.PATCHED_CALLS, labels("resnet", "2", "a"), counter(0.5, T0 + 6 * 3600, END)),
    (contract.PATCHED_AVAILABLE, labels("resnet", "2", "a"), gauge(1, T0 + 6 * 3600, END)),
    # bert:7 idle, then unloaded after 8 hours.
    (contract.PATCHED_CALLS, labels("bert", "7", "a"), gauge(0, T0, T0 + 8 * 3600)),
    (contract.PATCHED_AVAILABLE, labels("bert", "7", "a"), [*gauge(1, T0, T0 + 8 * 3600 - MIN), (T0 + 8 * 3600, 0)]),
]


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    from tfs_traffic.prometheus.local import backfilled_prometheus

    server = backfilled_prometheus(HISTORY, tmp_path_factory.mktemp("export")).start()
    yield server
    server.stop()


def client(prom) -> PrometheusClient:
    return PrometheusClient(PrometheusAccess(url=prom.url))


def test_chunks_cover_the_grid_exactly() -> None:
    start, end = step_grid(T0 + 1234, 3600, 300)
    assert (start, end) == (T0 + 1200 - 3600, T0 + 1200)
    assert chunks(start, end, 300, 5) == [(start, start + 1200), (start + 1500, start + 2700), (start + 3000, end)]
    assert chunks(start, end, 300, 11_000) == [(start, end)]


def test_rows_match_the_backfilled_rates(prom) -> None:
    rows = fetch_rows(client(prom), END, 12 * 3600, 300)
    by_key: dict[tuple[str, str], dict[float, tuple]] = {}
    for r in rows:
        by_key.setdefault((r.model_name, r.model_version), {})[r.timestamp] = (r.qps, r.available)
    # Steady state on the 5m grid: exact rates, both sources combined with max.
    resnet1 = by_key[("resnet", "1")]
    assert resnet1[T0 + 3600] == (pytest.approx(5.0), 1)
    assert resnet1[END] == (pytest.approx(5.0), 1)
    resnet2 = by_key[("resnet", "2")]
    assert resnet2[T0 + 9 * 3600] == (pytest.approx(0.5), 1)
    assert T0 + 3 * 3600 not in resnet2  # not loaded yet: no row
    bert = by_key[("bert", "7")]
    assert bert[T0 + 4 * 3600] == (0.0, 1)
    assert bert[T0 + 8 * 3600][1] == 0  # unloaded
    assert {r.namespace for r in rows} == {"ml"}


def test_chunked_and_unchunked_exports_are_identical(prom) -> None:
    whole = fetch_rows(client(prom), END, 12 * 3600, 300)
    for max_points in (1, 7, 50):
        assert fetch_rows(client(prom), END, 12 * 3600, 300, max_points=max_points, concurrency=3) == whole


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tfs_traffic.cli", *args], capture_output=True, text=True, timeout=60)


def test_parquet_reads_back_into_the_documented_columns(prom, tmp_path) -> None:
    out = tmp_path / "traffic.parquet"
    done = run_cli("export", "--prometheus", prom.url, "--at", str(END), "--window", "12h", "--step", "1h",
                   "--format", "parquet", "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["timestamp", "namespace", "model_name", "model_version", "qps", "available"]
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    row = frame[(frame.model_name == "resnet") & (frame.model_version == "1")].iloc[-1]
    assert row.qps == pytest.approx(5.0) and row.available == 1


def test_dataframe_timestamps_are_microseconds_whatever_the_data() -> None:
    """pandas 3 would pick microseconds for whole seconds and nanoseconds for a fraction."""
    for stamps in ([T0, T0 + 60], [T0, T0 + 0.5]):
        frame = to_dataframe([Row(t, "ml", "m", "1", 1.0, 1) for t in stamps])
        assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
        assert [t.timestamp() for t in frame["timestamp"]] == stamps


def test_csv_and_jsonl_with_model_filter(prom) -> None:
    at = str(T0 + 8 * 3600)
    common = ("export", "--prometheus", prom.url, "--at", at, "--window", "2h", "--step", "1h", "--model", "bert")
    csv_out = run_cli(*common, "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines() == [
        "timestamp,namespace,model_name,model_version,qps,available",
        "2026-01-01T06:00:00Z,ml,bert,7,0.0,1",
        "2026-01-01T07:00:00Z,ml,bert,7,0.0,1",
        "2026-01-01T08:00:00Z,ml,bert,7,0.0,0",
    ]
    jsonl = run_cli(*common, "--format", "jsonl")
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert {r["model_name"] for r in records} == {"bert"} and len(records) == 3


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--at", str(T0 - 30 * 86400), "--window", "1d"), 1, "no traffic or inventory series"),
        (("--model", "nosuchmodel"), 1, "no traffic or inventory series for model nosuchmodel"),
        (("--model", "resnet", "--model", "nosuch"), 2, "no series for model 'nosuch'"),
        (("--step", "2d", "--window", "1d"), 2, "longer than --window"),
        (("--format", "parquet"), 2, "needs --output"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(prom, args, code, message) -> None:
    base = ["--at", str(END), "--window", "12h"]
    done = run_cli("export", "--prometheus", prom.url, *base, *args)
    assert done.returncode == code
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_unwritable_output_leaves_no_file(prom, tmp_path) -> None:
    target = tmp_path / "missing-dir" / "out.csv"
    done = run_cli("export", "--prometheus", prom.url, "--at", str(END), "--window", "12h", "--output", str(target))
    assert done.returncode == 1 and "cannot write" in done.stderr
    assert not target.parent.exists()


def linear_decline(zero_day: float, days: int, r0: float) -> list[tuple[float, float]]:
    """A counter whose rate falls linearly from r0 at T0 to 0 at T0 + zero_day days."""
    t_zero = zero_day * DAY
    out = []
    for t in range(0, days * 86400 + 1, 300):
        s = min(t, t_zero)
        out.append((T0 + t, r0 * (s - s * s / (2 * t_zero))))
    return out


def test_forecast_falls_within_a_day_of_the_truth_and_flat_gets_none(prometheus_factory) -> None:
    days = 7
    history = [
        (contract.PATCHED_CALLS, labels("fading", "1", "a"), linear_decline(zero_day=10, days=days, r0=2.0)),
        (contract.PATCHED_CALLS, labels("flat", "1", "a"), counter(1.0, T0, T0 + days * 86400)),
    ]
    prom = prometheus_factory(history)
    totals = daily_totals(client(prom), T0 + days * DAY, days * DAY)
    fading = forecast_idle(totals[("fading", "1")])
    assert fading is not None and abs(fading.idle_at - (T0 + 10 * DAY)) < DAY
    assert fading.slope_per_day < 0 and fading.tau == -1.0
    assert forecast_idle(totals[("flat", "1")]) is None


def test_forecast_rules() -> None:
    day = [(T0 + i * DAY, y) for i, y in enumerate([100, 90, 80, 70, 60])]
    f = forecast_idle(day)
    assert f is not None and f.idle_at == pytest.approx(T0 + 10 * DAY - DAY / 2)
    assert forecast_idle([(T0 + i * DAY, y) for i, y in enumerate([5, 9, 4, 8, 5, 9])]) is None  # noisy
    assert forecast_idle(day[:3]) is None  # too few days
    assert forecast_idle([(T0 + i * DAY, 0.0) for i in range(6)]) is None  # already idle


def test_parquet_export_of_the_demo_prometheus(tmp_path) -> None:
    """The issue's must-show: export --format parquet on the demo's history reads back in pandas."""
    from tfs_traffic.prometheus import backfill, scenario
    from tfs_traffic.prometheus.local import LocalPrometheus

    demo = scenario.load("demo")
    result = backfill.ensure(demo, tmp_path / "demo")
    out = tmp_path / "demo.parquet"
    with LocalPrometheus(result.tsdb) as prom:
        done = run_cli("export", "--prometheus", prom.url, "--at", str(demo.end), "--window", "7d", "--step", "1h",
                       "--format", "parquet", "--output", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["timestamp", "namespace", "model_name", "model_version", "qps", "available"]
    assert set(frame.model_name) == {"resnet", "bert", "fraud", "ranker", "search"}
    rows = frame.groupby(["model_name", "model_version"]).size()
    # 7d at 1h: 169 rows for a version there all week, 12 fewer across the ranker's scrape gap.
    assert rows[("resnet", "1")] == 169 and rows[("ranker", "100")] == 157 and len(frame) == 2883
    assert frame.qps.max() > 1 and set(frame.available.dropna()) == {0, 1}  # bert 9 is unloaded
