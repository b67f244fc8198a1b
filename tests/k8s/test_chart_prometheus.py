"""The chart's PrometheusRule and KEDA query on real Prometheus code: promtool runs the rendered
rules on series of a pod scraped by two jobs, and the scaler's query runs on a real Prometheus."""

import subprocess
from pathlib import Path

import yaml
from chart_checks import by_kind, render, values_for

from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import promtool
from tfs_traffic.queries import mixin


def scaler_query(models_config: str | None = None) -> str:
    changes: dict = {"autoscaling": {"enabled": True}}
    if models_config is not None:
        changes["modelsConfig"] = models_config
    [so] = by_kind(render(values_for("proxy", **changes)))["ScaledObject"]
    return str(so["spec"]["triggers"][0]["metadata"]["query"])


def test_a_pod_scraped_by_two_jobs_counts_once_in_rules_and_scaler(tmp_path: Path) -> None:
    """promtool over the chart's own PrometheusRule: pod a is scraped by the annotation job and by the
    PodMonitor's job (same instance, other job and Operator labels), pod b by one job. The recorded
    rate and the ScaledObject's query count pod a once."""
    kinds = by_kind(render(values_for("proxy", autoscaling={"enabled": True})))
    [rule] = kinds["PrometheusRule"]
    [so] = kinds["ScaledObject"]
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    call = 'api="predict",code="OK",namespace="serving"'
    a = f'instance="10.0.0.1:9102",pod="recommender-a",model_name="recommender",model_version="4",{call}'
    b = f'instance="10.0.0.2:9102",pod="recommender-b",model_name="ranker",model_version="1",{call}'
    operator = 'job="serving/recommender",container="tfs-traffic-sidecar",endpoint="tfs-metrics"'
    rate = mixin.CALLS_RATE5M
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "group_eval_order": [mixin.RULES_GROUP, mixin.HOURLY_GROUP, mixin.ALERTS_GROUP],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # Pod a: 120 calls a minute (2/s) through its sidecar, stored once per job.
                    {"series": f'tfserving_model_calls_total{{job="kubernetes-pods",{a}}}', "values": "0+120x20"},
                    {"series": f"tfserving_model_calls_total{{{operator},{a}}}", "values": "0+120x20"},
                    # Pod b: 30 a minute (0.5/s), one job.
                    {"series": f'tfserving_model_calls_total{{job="kubernetes-pods",{b}}}', "values": "0+30x20"},
                ],
                "promql_expr_test": [
                    {
                        "expr": rate,
                        "eval_time": "10m",
                        "exp_samples": [
                            {
                                "labels": f'{rate}{{namespace="serving",model_name="recommender",model_version="4"}}',
                                "value": 2,
                            },
                            {
                                "labels": f'{rate}{{namespace="serving",model_name="ranker",model_version="1"}}',
                                "value": 0.5,
                            },
                        ],
                    },
                    # 2 + 0.5 calls/s; a sum over both copies would say 4.5 and scale to twice the pods.
                    {"expr": query, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": 2.5}]},
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, width=1000))
    proc = subprocess.run([promtool(), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_scaler_query_sums_this_releases_models_on_a_real_prometheus(prometheus_factory) -> None:
    """The ScaledObject's query, run on recorded series: only this namespace's served models count."""
    config = """model_config_list {
      config { name: "ranker.v2-eu" base_path: "/models/ranker" }
      config { name: "recommender" base_path: "/models/recommender" }
    }"""
    query = scaler_query(config)
    t0 = 1_700_000_000
    series = [
        ("recommender", "serving", "3", 10.0),
        ("recommender", "serving", "4", 5.0),
        ("ranker.v2-eu", "serving", "1", 2.5),
        ("rankerXv2-eu", "serving", "1", 100.0),  # would match an unescaped '.'
        ("search", "serving", "1", 1000.0),  # served by another release
        ("recommender", "other", "3", 1000.0),  # another namespace
    ]
    prom = prometheus_factory(
        [
            (mixin.CALLS_RATE5M, {"model_name": m, "namespace": ns, "model_version": v}, [(t0, rate)])
            for m, ns, v, rate in series
        ]
    )
    client = PrometheusClient(PrometheusAccess(prom.url))
    assert [float(r["value"][1]) for r in client.query(query, at=t0)] == [17.5]
    assert [float(r["value"][1]) for r in client.query(query, at=t0 - 3600)] == [0.0]  # idle: 0, not empty
