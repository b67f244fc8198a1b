"""The chart's values: the schema refuses typos and wrong types with Helm's own message, the
committed example output and generated files are current, and `tfs-traffic k8s render` writes all
or nothing."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_checks import CHART, EXAMPLE_OUTPUT, EXAMPLE_VALUES, NAMESPACE, RELEASE, example_values

from tfs_traffic import cli
from tfs_traffic.errors import UsageError
from tfs_traffic.k8s import chart_files, helm

SCHEMA_HEADER = "values don't meet the specifications of the schema(s) in the following chart(s):"

# (case, values merged over the example, Helm's message for it)
BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("typo", {"sidecar": {"pollIntervall": "15s"}}, "at '/sidecar': additional properties 'pollIntervall' not allowed"),
    ("typo at the top", {"replica": 3}, "at '': additional properties 'replica' not allowed"),
    (
        "typo in securityContext",
        {"securityContext": {"runAsUsr": 5}},
        "at '/securityContext': additional properties 'runAsUsr' not allowed",
    ),
    ("typo in env", {"env": [{"name": "A", "valu": "x"}]}, "at '/env/0': additional properties 'valu' not allowed"),
    ("wrong type", {"replicaCount": "2"}, "at '/replicaCount': got string, want integer"),
    ("nested type", {"tfserving": {"grpcPort": [8500]}}, "at '/tfserving/grpcPort': got array, want integer"),
    ("pull secrets", {"imagePullSecrets": ["regcred"]}, "at '/imagePullSecrets/0': got string, want object"),
    ("enum", {"sidecar": {"mode": "sidecar"}}, "at '/sidecar/mode': value must be one of 'proxy', 'status-only'"),
    (
        "duration",
        {"monitoring": {"scrapeInterval": "30"}},
        "at '/monitoring/scrapeInterval': '30' does not match pattern",
    ),
    ("port range", {"sidecar": {"metricsPort": 70000}}, "at '/sidecar/metricsPort': maximum: got 70,000, want 65,535"),
    (
        "scale to zero",
        {"autoscaling": {"enabled": True, "minReplicas": 0}},
        "at '/autoscaling/minReplicas': value must be 'at least 1: the trigger metric comes from the pods being "
        "scaled, so at 0 nothing would ever scale the Deployment up again'",
    ),
]

# Checks the schema cannot express: the chart's own `fail`, one line naming the field.
BAD_COMBINATIONS: list[tuple[str, dict[str, Any], str]] = [
    (
        "port clash",
        {"sidecar": {"metricsPort": 8501}},
        "sidecar.metricsPort: port 8501 is already used by tfserving.restPort",
    ),
    (
        "service ports",
        {"service": {"restPort": 8500}},
        "service.restPort: port 8500 is already used by service.grpcPort",
    ),
    (
        "bounds",
        {"autoscaling": {"enabled": True, "minReplicas": 9}},
        "autoscaling: minReplicas (9) must not exceed maxReplicas (8)",
    ),
    (
        "no model",
        {"autoscaling": {"enabled": True}, "modelsConfig": "model_config_list {}"},
        "modelsConfig: configures no model",
    ),
    (
        "pdb",
        {"podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
        "podDisruptionBudget: set at most one of minAvailable and maxUnavailable",
    ),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_schema_refuses_with_helms_message(case: str, change: dict[str, Any], message: str) -> None:
    import helm_python

    values = helm.merge_values(example_values(), change)
    with helm_python.Chart.load(str(CHART)) as chart, pytest.raises(helm_python.HelmValuesError) as raised:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    text = str(raised.value)
    assert text.startswith(f"{SCHEMA_HEADER}\ntfs-traffic:\n- {message}"), text


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_VALUES + BAD_COMBINATIONS, ids=[c[0] for c in BAD_VALUES + BAD_COMBINATIONS]
)
def test_bad_values_are_one_line_and_write_nothing(
    case: str, change: dict[str, Any], message: str, tmp_path: Path, capsys
) -> None:
    data = yaml.safe_load(EXAMPLE_VALUES.read_text())
    data = helm.merge_values(data, change)
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "out.yaml"
    assert cli.main(["k8s", "render", "-f", str(values_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tfs-traffic: error: values.yaml: {message}"), err
    assert list(tmp_path.iterdir()) == [values_file]  # nothing written, no temporary file left


def test_the_committed_example_is_helm_template_of_the_example_values(capsys) -> None:
    """k8s/examples/recommender.yaml is `helm template recommender k8s/chart -n serving -f k8s/values.example.yaml`."""
    text, _ = helm.template(example_values(), chart_dir=CHART, release=RELEASE, namespace=NAMESPACE)
    assert EXAMPLE_OUTPUT.read_text() == text, "k8s/examples/ is stale: run `make render`"
    assert cli.main(["k8s", "render", RELEASE, "-n", NAMESPACE, "-f", str(EXAMPLE_VALUES)]) == 0
    assert capsys.readouterr().out == text
    kinds = [d["kind"] for d in yaml.safe_load_all(text)]
    assert kinds == [
        "PodDisruptionBudget", "ServiceAccount", "ConfigMap", "ConfigMap", "ConfigMap", "Service", "Deployment",
        "PodMonitor", "PrometheusRule",
    ]  # fmt: skip


def test_the_packaged_chart_is_the_repositorys() -> None:
    assert helm.packaged_chart().resolve() == CHART.resolve()
    assert (helm.packaged_chart() / "values.schema.json").is_file()


def test_chart_files_are_the_mixins() -> None:
    """files/ holds what the mixin renders (rules, alerts, dashboards): `make render` keeps it current."""
    expected = chart_files.rendered_files()
    actual = {str(p.relative_to(CHART)): p.read_text() for p in (CHART / "files").rglob("*") if p.is_file()}
    assert actual == expected, "k8s/chart/files/ is stale: run `make render`"
    assert sorted(expected) == ["files/dashboards/tfs-traffic-model.json", "files/prometheus-rules.yaml"]


def test_chart_files_write_removes_stale_dashboards(tmp_path: Path, capsys) -> None:
    (tmp_path / "files" / "dashboards").mkdir(parents=True)
    (tmp_path / "files" / "dashboards" / "old.json").write_text("{}")
    assert cli.main(["k8s", "chart-files", "--chart", str(tmp_path)]) == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*")) == sorted(chart_files.rendered_files())


def test_values_files_merge_like_helm(tmp_path: Path, capsys) -> None:
    first = tmp_path / "a.yaml"
    first.write_text("replicaCount: 3\nsidecar:\n  mode: status-only\n  workers: 2\n")
    second = tmp_path / "b.yaml"
    second.write_text("sidecar:\n  workers: 3\ncommonLabels: {team: x}\n")
    assert helm.load_values_files([first, second]) == {
        "replicaCount": 3,
        "sidecar": {"mode": "status-only", "workers": 3},
        "commonLabels": {"team": "x"},
    }
    out = tmp_path / "out.yaml"
    assert cli.main(["k8s", "render", "-f", str(first), "-f", str(second), "--out", str(out)]) == 0
    assert "wrote 8 objects" in capsys.readouterr().err
    [deployment] = [d for d in yaml.safe_load_all(out.read_text()) if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3
    [sidecar] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] != "tfserving"]
    assert "--workers=3" in sidecar["args"] and not any(a.startswith("--listen-grpc") for a in sidecar["args"])


def test_a_failed_render_leaves_the_previous_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.yaml"
    assert cli.main(["k8s", "render", "-f", str(EXAMPLE_VALUES), "--out", str(out)]) == 0
    before = out.read_text()
    bad = tmp_path / "bad.yaml"
    data = copy.deepcopy(yaml.safe_load(EXAMPLE_VALUES.read_text()))
    data["sidecar"]["mode"] = "both"
    bad.write_text(yaml.safe_dump(data))
    assert cli.main(["k8s", "render", "-f", str(bad), "--out", str(out)]) == 2
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out.yaml"]


def test_values_file_errors_are_one_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("replicaCount: [unclosed\n")
    assert cli.main(["k8s", "render", "-f", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfs-traffic: error: broken.yaml: not valid YAML values:") and err.count("\n") == 1, err
    broken.write_text("- a list\n")
    assert cli.main(["k8s", "render", "-f", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfs-traffic: error: broken.yaml: not valid YAML values:") and err.count("\n") == 1, err
    assert cli.main(["k8s", "render", "-f", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read values file" in capsys.readouterr().err
    assert cli.main(["k8s", "render", "Not_A_Name"]) == 2
    assert capsys.readouterr().err.startswith("tfs-traffic: error: release name 'Not_A_Name':")
    with pytest.raises(UsageError, match="not a Helm chart"):
        helm.template({}, chart_dir=tmp_path)
