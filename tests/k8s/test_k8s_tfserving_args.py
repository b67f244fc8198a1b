"""The rendered Deployment's TF Serving container, run through the stand-in under TF Serving's rules.

`tfs-traffic k8s render` (Helm's engine over the chart) of the example values, as `make render`
runs it, gives a `tfserving` container (command, args, config maps and the models volume mounted
at fixed paths). The test lays those files out under a temporary
directory (the same mount paths rebased), creates the version directories the models config asks
for, maps `--port`/`--rest_api_port` to 127.0.0.1:0 and runs every other rendered flag unchanged
through `tfs-traffic sim`, which takes tensorflow_model_server's flags and applies
`ServerCore::UpdateModelVersionLabelMap`'s rules (`model_servers/server_core.cc`): a startup config
with labels needs `--allow_version_labels_for_unavailable_models` (`model_servers/main.cc`).
"""

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
import yaml
from tfs_api import predict_request, served_version

from tfs_traffic import modelconfig

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FLAG = "--allow_version_labels_for_unavailable_models"
REFUSED = "Request to assign label to version {v} of model recommender, which is not currently available for inference"


@dataclass
class Rendered:
    args: list[str]  # the tfserving container's args, mount paths rebased, ports on 127.0.0.1:0
    models_config: Path
    labels: dict[tuple[str, str], int]  # (model, label) -> version, from the rendered models config


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    out = subprocess.run(
        [
            *(str(BIN / "tfs-traffic"), "k8s", "render", "recommender", "--namespace", "serving"),
            *("--values", str(ROOT / "k8s" / "values.example.yaml")),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(out) if doc]
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "tfserving"]
    assert container["command"] == ["tensorflow_model_server"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    root = tmp_path_factory.mktemp("pod")
    rebase = {m["mountPath"]: str(root / m["mountPath"].lstrip("/")) for m in container["volumeMounts"]}

    mounts = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(m) for m in sorted(rebase, key=len, reverse=True)) + ")/")

    def rebased(text: str) -> str:
        """Mount paths where a path starts (after `=`, a quote, a blank), in one pass."""
        return mounts.sub(lambda m: rebase[m.group(1)] + "/", text)

    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        Path(rebase[mount["mountPath"]]).mkdir(parents=True, exist_ok=True)
        for name, text in config_maps.get(volume.get("configMap", {}).get("name", ""), {}).items():
            (Path(rebase[mount["mountPath"]]) / name).write_text(rebased(text))
    args = []
    for arg in container["args"]:
        flag = arg.partition("=")[0]
        if flag == "--port":
            args.append("--grpc-addr=127.0.0.1:0")
        elif flag == "--rest_api_port":
            args.append("--rest-addr=127.0.0.1:0")
        else:
            args.append(rebased(arg))
    (models_config,) = [Path(a.partition("=")[2]) for a in args if a.startswith("--model_config_file=")]
    labels = {}
    for entry in modelconfig.load(models_config).model_config_list.config:
        policy = entry.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        versions = list(policy.specific.versions) if kind == "specific" else list(range(1, 4))
        for version in versions:  # what the models volume would hold
            (Path(entry.base_path) / str(version)).mkdir(parents=True, exist_ok=True)
        labels.update({(entry.name, k): v for k, v in entry.version_labels.items()})
    return Rendered(args, models_config, labels)


def start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [str(BIN / "tfs-traffic"), "sim", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


@pytest.fixture
def running(rendered: Rendered) -> Iterator[tuple[str, str]]:
    """The stand-in on the rendered args."""
    proc, ready = start(rendered.args)
    try:
        assert ready.startswith("grpc="), proc.stderr.read() if proc.stderr else ""
        grpc_addr, rest_addr = (part.split("=", 1)[1] for part in ready.split())
        yield grpc_addr, rest_addr
    finally:
        proc.terminate()
        proc.wait(10)


def test_rendered_models_config_sets_labels(rendered: Rendered) -> None:
    assert rendered.labels == {("recommender", "stable"): 4, ("recommender", "canary"): 5}
    assert any(a.startswith("--monitoring_config_file=") for a in rendered.args)


def test_rendered_deployment_accepts_its_own_models_config(rendered: Rendered) -> None:
    """Must show: the rendered TF Serving args, as they are (the chart passes
    `--allow_version_labels_for_unavailable_models=true` because the config has labels), start on
    the rendered models config."""
    assert f"{FLAG}=true" in rendered.args
    proc, ready = start(rendered.args)
    proc.terminate()
    proc.wait(10)
    assert ready.startswith("grpc=127.0.0.1:")


def test_rendered_args_serve_the_labels_and_the_metrics_page(rendered: Rendered, running: tuple[str, str]) -> None:
    """Every rendered flag runs: labels resolve once the versions load, the page is where
    `--monitoring_config_file` puts it, `--enable_grpc_healthcheck_service` answers SERVING for the
    startup probe's `PredictionService`."""
    grpc_addr, rest_addr = running
    for (model, label), version in rendered.labels.items():
        assert served_version(grpc_addr, predict_request(model, version_label=label)) == version
    assert requests.get(f"http://{rest_addr}/monitoring/prometheus/metrics", timeout=10).status_code == 200
    with grpc.insecure_channel(grpc_addr) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        assert check(b"\x0a\x11PredictionService", timeout=10) == b"\x08\x01"  # service: ..., status: SERVING


def test_rendered_args_without_the_flag_are_refused_like_tf_serving(rendered: Rendered) -> None:
    """Without the flag TF Serving exits at startup (`main.cc`: `Failed to start server. Error: ...` on
    stdout, status 255): nothing is AVAILABLE when `ReloadConfig` checks the labels."""
    proc, first_line = start([a for a in rendered.args if a.partition("=")[0] != FLAG])
    rest, err = proc.communicate(timeout=60)
    assert (rest, err, proc.returncode) == ("", "", 255)
    message = first_line.removeprefix("Failed to start server. Error: FAILED_PRECONDITION: ")
    assert message in (REFUSED.format(v=4), REFUSED.format(v=5))  # a proto map: either label first
