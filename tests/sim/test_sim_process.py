"""`tfs-traffic sim` as a subprocess (ready line, port 0, SIGTERM) and `--latency-ms`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tfs_api import predict_request

from tfs_traffic.sim.server import Sim


def config(tmp_path: Path) -> Path:
    (tmp_path / "m" / "3").mkdir(parents=True)
    path = tmp_path / "models.config"
    path.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{tmp_path / "m"}" model_platform: "tensorflow" }} }}\n'
    )
    return path


REQUEST = predict_request(x=[0.0, 1.0, 2.0, 3.0], content=True)


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "tfs-traffic"
    proc = subprocess.Popen(
        [
            str(cli),
            "sim",
            "--models-config",
            str(config(tmp_path)),
            "--grpc-addr",
            "127.0.0.1:0",
            "--rest-addr",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        parts = dict(p.split("=", 1) for p in line.split())
        assert set(parts) == {"grpc", "rest"}
        assert not parts["grpc"].endswith(":0") and not parts["rest"].endswith(":0")
        with grpc.insecure_channel(parts["grpc"]) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(REQUEST, timeout=10)
        assert response.model_spec.version.value == 3
        assert list(response.outputs["y"].float_val) == [2.0, 2.5, 3.0, 3.5]
        page = requests.get(f"http://{parts['rest']}/monitoring/prometheus/metrics", timeout=10).text
        assert ':tensorflow:serving:model_call_count{model_name="m",model_version="3"} 1' in page
        r = requests.post(
            f"http://{parts['rest']}/v1/models/m:predict", data=json.dumps({"instances": [2.0]}), timeout=10
        )
        assert r.json() == {"predictions": [3.0]}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_cli_bad_config_is_refused_as_tf_serving_refuses_it(tmp_path: Path) -> None:
    """`server_core.cc:ValidateModelConfigList` (a relative base path) fails `ServerCore::Create`;
    `main.cc:main` prints `Failed to start server. Error: STATUS` on stdout and returns -1 (255)."""
    bad = tmp_path / "bad.config"
    bad.write_text(
        'model_config_list { config { name: "m" base_path: "relative/path" model_platform: "tensorflow" } }\n'
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tfs-traffic"), "sim", "--models-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 255
    assert result.stdout.splitlines() == [
        "Failed to start server. Error: INVALID_ARGUMENT: "
        "Expected model m to have an absolute path or URI; got base_path()=relative/path"
    ]
    assert result.stderr == ""


@pytest.mark.parametrize("latency_ms", [60])
def test_latency_ms_is_model_time(tmp_path: Path, latency_ms: int) -> None:
    with Sim(config(tmp_path), latency_ms=latency_ms) as sim, grpc.insecure_channel(sim.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(REQUEST)  # warm the channel
        start = time.perf_counter()
        stub.Predict(REQUEST)
        grpc_seconds = time.perf_counter() - start
        start = time.perf_counter()
        requests.post(f"{sim.rest_url}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
        rest_seconds = time.perf_counter() - start
    assert grpc_seconds >= latency_ms / 1000
    assert rest_seconds >= latency_ms / 1000
