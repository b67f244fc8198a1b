"""The local Prometheus answers PromQL over the history we backfill into it."""

import io

import requests

from tfs_traffic.prometheus.local import format_labels, write_openmetrics

T0 = 1_700_000_000


def test_openmetrics_is_sorted_per_series_and_ends_with_eof() -> None:
    out = io.StringIO()
    n = write_openmetrics(out, [("m", {"b": "2", "a": 'x"y'}, [(T0 + 60, 2), (T0, 1.5)])])
    assert n == 2
    assert out.getvalue().splitlines() == [
        f'm{{a="x\\"y",b="2"}} 1.5 {T0}',
        f'm{{a="x\\"y",b="2"}} 2 {T0 + 60}',
        "# EOF",
    ]
    assert format_labels({}) == ""


def test_backfilled_counter_answers_increase(prometheus_factory) -> None:
    samples = [(T0 + 60 * i, float(i * 10)) for i in range(61)]  # +10 per minute for an hour
    prom = prometheus_factory(
        [(":tensorflow:serving:model_call_count", {"model_name": "m", "model_version": "1"}, samples)]
    )
    r = requests.get(
        f"{prom.url}/api/v1/query",
        params={"query": "increase(:tensorflow:serving:model_call_count[1h])", "time": T0 + 3600},
        timeout=10,
    ).json()
    [result] = r["data"]["result"]
    assert result["metric"] == {"model_name": "m", "model_version": "1"}
    assert float(result["value"][1]) == 600.0
