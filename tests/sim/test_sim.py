"""tfs-traffic sim over real sockets: gRPC with tensorflow-serving-api's stubs, REST with HTTP.

One sim serves the whole module; tests that count calls use models no other test touches.
"""

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2
from tfs_api import predict_request
from waiting import wait_for

from tfs_traffic import exposition
from tfs_traffic.sim.server import Sim

MODELS = {
    # name: (version dirs, config lines)
    "hp": (
        (1, 2, 3),
        'model_version_policy { all {} }\nversion_labels { key: "stable" value: 1 }\n'
        'version_labels { key: "canary" value: 2 }',
    ),
    "latest2": ((1, 2, 3), "model_version_policy { latest { num_versions: 2 } }"),
    "specific": ((1, 2, 3), "model_version_policy { specific { versions: 1 versions: 3 } }"),
    "plain": ((5, 10), ""),
    "counted": ((1, 2), 'model_version_policy { all {} }\nversion_labels { key: "stable" value: 1 }'),
    "dynamic": ((1,), "model_version_policy { all {} }"),
    "reload": ((1, 2), 'model_version_policy { all {} }\nversion_labels { key: "stable" value: 1 }'),
}


def write_config(tmp: Path, models: dict[str, tuple[tuple[int, ...], str]]) -> Path:
    entries = []
    for name, (versions, extra) in models.items():
        base = tmp / "models" / name
        for v in versions:
            (base / str(v)).mkdir(parents=True, exist_ok=True)
        (base / "not-a-version").mkdir(parents=True, exist_ok=True)
        entries.append(f'config {{\n name: "{name}"\n base_path: "{base}"\n model_platform: "tensorflow"\n{extra}\n}}')
    path = tmp / "models.config"
    path.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    return path


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    tmp = tmp_path_factory.mktemp("sim")
    with Sim(write_config(tmp, MODELS), poll_seconds=0.2, allow_labels_for_unavailable=True) as s:
        s.tmp = tmp  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def channel(sim: Sim) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(sim.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def predict_stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel: grpc.Channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def float_tensor(values: np.ndarray, content: bool = True) -> tensor_pb2.TensorProto:
    values = np.asarray(values, dtype=np.float32)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in values.shape])
    tp = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape)
    if content:
        tp.tensor_content = values.tobytes()
    else:
        tp.float_val.extend(values.ravel().tolist())
    return tp


def example(x: float) -> example_pb2.Example:
    return example_pb2.Example(
        features=feature_pb2.Features(feature={"x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[x]))})
    )


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value


def status_versions(model_stub, name: str) -> list[tuple[int, str]]:
    response = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": name}))
    return [
        (s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state)) for s in response.model_version_status
    ]


# --- gRPC Predict and resolution ---


def test_grpc_predict_latest_number_and_label(sim: Sim, predict_stub) -> None:
    response = predict_stub.Predict(predict_request("hp", x=[1.0, 2.0, 5.0], content=True))
    assert response.model_spec.name == "hp"
    assert response.model_spec.version.value == 3
    assert response.model_spec.signature_name == "serving_default"
    y = response.outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in y.tensor_shape.dim] == [3]
    assert list(y.float_val) == [2.5, 3.0, 4.5]  # AsProtoField, as TF Serving answers by default

    assert predict_stub.Predict(predict_request("hp", version=2, x=[0.0])).model_spec.version.value == 2
    assert predict_stub.Predict(predict_request("hp", version_label="stable", x=[0.0])).model_spec.version.value == 1
    assert predict_stub.Predict(predict_request("hp", version_label="canary", x=[0.0])).model_spec.version.value == 2


def test_grpc_predict_float_val_input_and_shape(predict_stub) -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "hp"
    req.inputs["x"].CopyFrom(float_tensor(np.array([[1.0, -4.0], [6.0, 0.5]]), content=False))
    y = predict_stub.Predict(req).outputs["y"]
    assert [d.size for d in y.tensor_shape.dim] == [2, 2]
    assert list(y.float_val) == [2.5, 0.0, 5.0, 2.25]


@pytest.mark.parametrize(
    ("request_kwargs", "code", "message"),
    [
        ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        ({"name": "hp", "version": 9}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(hp, 9)"),
        (
            {"name": "latest2", "version": 1},
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(latest2, 1)",
        ),
        (
            {"name": "hp", "version_label": "beta"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: beta",
        ),
        (
            {"name": "nope", "version_label": "stable"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: stable",
        ),
        ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ],
)
def test_grpc_resolution_errors(predict_stub, request_kwargs, code, message) -> None:
    error = rpc_error(predict_stub.Predict, predict_request(**request_kwargs))
    assert error.code() == code
    assert error.details() == message


def test_grpc_predict_request_errors(predict_stub) -> None:
    error = rpc_error(predict_stub.Predict, predict_pb2.PredictRequest())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")

    req = predict_request("hp")
    req.model_spec.signature_name = "nope"
    error = rpc_error(predict_stub.Predict, req)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )

    req = predict_request("hp")
    req.inputs["z"].CopyFrom(float_tensor(np.array([1.0])))
    error = rpc_error(predict_stub.Predict, req)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. Missing but required: {}."
    )

    req = predict_request("hp")
    req.output_filter.append("w")
    error = rpc_error(predict_stub.Predict, req)
    assert error.details() == "output tensor alias not found in signature: w Outputs expected to be in the set {y}."


def test_grpc_model_status_and_version_policies(model_stub) -> None:
    assert status_versions(model_stub, "hp") == [(3, "AVAILABLE"), (2, "AVAILABLE"), (1, "AVAILABLE")]
    assert status_versions(model_stub, "latest2") == [(3, "AVAILABLE"), (2, "AVAILABLE")]
    assert status_versions(model_stub, "specific") == [(3, "AVAILABLE"), (1, "AVAILABLE")]
    assert status_versions(model_stub, "plain") == [(10, "AVAILABLE")]  # numeric, not text, order

    one = model_stub.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "hp", "version": {"value": 2}})
    )
    assert [(s.version, s.state, s.status.error_code) for s in one.model_version_status] == [(2, 30, 0)]
    assert one.model_version_status[0].HasField("status")

    for spec, message in (
        ({"name": "nope"}, "Could not find any versions of model nope"),
        ({"name": "hp", "version": {"value": 7}}, "Could not find version 7 of model hp"),
    ):
        error = rpc_error(model_stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
        assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, message)


def test_grpc_classify_regress_multi_inference(predict_stub) -> None:
    creq = classification_pb2.ClassificationRequest(model_spec={"name": "hp", "signature_name": "classify_x_to_y"})
    creq.input.example_list.examples.extend([example(1.0), example(3.0)])
    c = predict_stub.Classify(creq)
    assert [[(k.label, k.score) for k in cl.classes] for cl in c.result.classifications] == [[("", 2.5)], [("", 3.5)]]
    assert (c.model_spec.name, c.model_spec.version.value, c.model_spec.signature_name) == ("hp", 3, "classify_x_to_y")

    rreq = regression_pb2.RegressionRequest(
        model_spec={"name": "hp", "version_label": "stable", "signature_name": "regress_x_to_y"}
    )
    rreq.input.example_list_with_context.context.CopyFrom(example(4.0))
    rreq.input.example_list_with_context.examples.extend([example(2.0)])
    r = predict_stub.Regress(rreq)
    assert [x.value for x in r.result.regressions] == [3.0]  # the example's own feature wins over the context
    assert (r.model_spec.version.value, r.model_spec.signature_name) == (1, "regress_x_to_y")

    mreq = inference_pb2.MultiInferenceRequest()
    for sig, method in (("classify_x_to_y", "classify"), ("regress_x_to_y", "regress")):
        task = mreq.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name = "hp"
        task.model_spec.version.value = 2
        task.model_spec.signature_name = sig
    mreq.input.example_list.examples.append(example(6.0))
    m = predict_stub.MultiInference(mreq)
    assert m.results[0].classification_result.classifications[0].classes[0].score == 5.0
    assert m.results[1].regression_result.regressions[0].value == 5.0
    assert [(x.model_spec.version.value, x.model_spec.signature_name) for x in m.results] == [
        (2, "classify_x_to_y"),
        (2, "regress_x_to_y"),
    ]

    # default signature is the predict one: TF Serving's classifier rejects it with this message
    bad = classification_pb2.ClassificationRequest(model_spec={"name": "hp"})
    bad.input.example_list.examples.append(example(1.0))
    error = rpc_error(predict_stub.Classify, bad)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("No classification inputs found in SignatureDef: inputs {")

    empty = regression_pb2.RegressionRequest(model_spec={"name": "hp", "signature_name": "regress_x_to_y"})
    assert rpc_error(predict_stub.Regress, empty).details() == "Input is empty."


def test_grpc_metadata(predict_stub) -> None:
    md = predict_stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "hp", "version_label": "canary"}, metadata_field=["signature_def"]
        )
    )
    assert (md.model_spec.name, md.model_spec.version.value) == ("hp", 2)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert md.metadata["signature_def"].Unpack(sigs)
    assert sorted(sigs.signature_def) == [
        "classify_x_to_y",
        "regress_x2_to_y3",
        "regress_x_to_y",
        "regress_x_to_y2",
        "serving_default",
    ]
    assert sigs.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
    error = rpc_error(
        predict_stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "hp"})
    )
    assert error.details() == "GetModelMetadataRequest must specify at least one metadata_field"


# --- REST ---


def test_rest_predict_formats(sim: Sim) -> None:
    r = requests.post(f"{sim.rest_url}/v1/models/hp:predict", data='{"instances": [1.0, 2.0, 5.0]}')
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.text == '{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'  # TF Serving's documented answer

    r = requests.post(f"{sim.rest_url}/v1/models/hp/versions/2:predict", json={"inputs": [[1.0], [3.0]]})
    assert r.json() == {"outputs": [[2.5], [3.5]]}
    r = requests.post(f"{sim.rest_url}/v1/models/hp/labels/stable:predict", json={"instances": [{"x": [1, 2]}]})
    assert r.text == '{\n    "predictions": [[2.5, 3.0]\n    ]\n}'
    r = requests.post(f"{sim.rest_url}/v1/models/hp:predict", json={"instances": [0.1, 1e7, 123456.7]})
    assert r.text == '{\n    "predictions": [2.05, 5000002.0, 61730.3516\n    ]\n}'


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/models/nope:predict", '{"instances": [1]}', 404, "Servable not found for request: Latest(nope)"),
        (
            "/v1/models/hp/versions/9:predict",
            '{"instances": [1]}',
            404,
            "Servable not found for request: Specific(hp, 9)",
        ),
        ("/v1/models/hp/labels/beta:predict", '{"instances": [1]}', 400, "Unrecognized servable version label: beta"),
        (
            "/v1/models/hp:predict",
            '{"signature_name": "s", "instances": [1]}',
            400,
            'Serving signature name: "s" not found in signature def',
        ),
        ("/v1/models/hp:predict", "", 400, "JSON Parse error: The document is empty"),
        ("/v1/models/hp:predict", '{"x": 1}', 400, "Missing 'inputs' or 'instances' key"),
        (
            "/v1/models/hp:predict",
            '{"instances": ["a"]}',
            400,
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: \"a\" Type: String "
            "is not of expected type: float",
        ),
        ("/v1/models/hp:explain", "{}", 400, "Malformed request: POST /v1/models/hp:explain"),
    ],
)
def test_rest_errors(sim: Sim, path: str, body: str, status: int, message: str) -> None:
    r = requests.post(sim.rest_url + path, data=body)
    assert r.status_code == status
    assert r.json() == {"error": message}
    assert r.text.startswith('{\n    "error": ')


def test_rest_status_metadata_classify_regress(sim: Sim) -> None:
    r = requests.get(f"{sim.rest_url}/v1/models/latest2")
    assert r.status_code == 200
    assert r.json() == {
        "model_version_status": [
            {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
            {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        ]
    }
    r = requests.get(f"{sim.rest_url}/v1/models/hp/versions/8")
    assert (r.status_code, r.json()) == (404, {"error": "Could not find version 8 of model hp"})
    r = requests.get(f"{sim.rest_url}/v1/models")
    assert (r.status_code, r.json()) == (400, {"error": "Missing model name in request."})

    r = requests.get(f"{sim.rest_url}/v1/models/hp/labels/stable/metadata")
    assert r.status_code == 200
    doc = r.json()
    assert doc["model_spec"] == {"name": "hp", "version": "1", "signature_name": ""}
    assert doc["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"

    r = requests.post(
        f"{sim.rest_url}/v1/models/hp:regress",
        json={"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 3.0}]},
    )
    assert r.text == '{\n    "results": [2.5, 3.5]\n}'
    r = requests.post(
        f"{sim.rest_url}/v1/models/hp:classify", json={"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]}
    )
    assert r.text == '{\n    "results": [[["", 2.5]]\n    ]\n}'
    r = requests.post(
        f"{sim.rest_url}/v1/models/hp:regress", json={"signature_name": "regress_x_to_y", "examples": [{"x": 1}]}
    )
    assert r.status_code == 400  # an integer makes an int64 feature, as in TF Serving


def test_rest_unknown_paths(sim: Sim) -> None:
    r = requests.get(f"{sim.rest_url}/v2/models/hp")
    assert r.status_code == 404
    r = requests.put(f"{sim.rest_url}/v1/models/hp")
    assert (r.status_code, r.json()) == (400, {"error": "Malformed request: PUT /v1/models/hp"})


# --- counting and the Prometheus page ---


def counted_page(sim: Sim) -> dict:
    text = requests.get(f"{sim.rest_url}/monitoring/prometheus/metrics").text
    return exposition.parse(text)


def test_metrics_exact_counts(sim: Sim, predict_stub, model_stub) -> None:
    page = counted_page(sim)
    calls = page[":tensorflow:serving:model_call_count"]
    key = lambda v: (("model_name", "counted"), ("model_version", v))  # noqa: E731
    assert calls[key("1")] == 0 and calls[key("2")] == 0  # zero cells once AVAILABLE

    for _ in range(3):
        predict_stub.Predict(predict_request("counted"))  # latest: 2
    predict_stub.Predict(predict_request("counted", version_label="stable"))  # 1
    rreq = regression_pb2.RegressionRequest(model_spec={"name": "counted", "signature_name": "regress_x_to_y"})
    rreq.input.example_list.examples.append(example(1.0))
    predict_stub.Regress(rreq)  # 2
    bad = predict_request("counted", version=2)
    bad.model_spec.signature_name = "missing"
    rpc_error(predict_stub.Predict, bad)  # resolved, then fails: still counted under 2, as the patch counts
    rpc_error(predict_stub.Predict, predict_request("counted", version=5))  # unresolved: not counted
    requests.post(f"{sim.rest_url}/v1/models/counted/versions/1:predict", json={"instances": [1.0]})  # 1
    requests.post(f"{sim.rest_url}/v1/models/counted/labels/stable:predict", json={"instances": [1.0]})  # 1
    requests.post(f"{sim.rest_url}/v1/models/counted:predict", data="{not json")  # fails before resolution
    # status and metadata never count
    requests.get(f"{sim.rest_url}/v1/models/counted")
    requests.get(f"{sim.rest_url}/v1/models/counted/metadata")
    status_versions(model_stub, "counted")
    predict_stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": "counted"}, metadata_field=["signature_def"])
    )

    assert sim.call_counts()[("counted", "1")] == 3
    assert sim.call_counts()[("counted", "2")] == 5
    page = counted_page(sim)
    assert page[":tensorflow:serving:model_call_count"][key("1")] == 3
    assert page[":tensorflow:serving:model_call_count"][key("2")] == 5
    assert page[":tensorflow:serving:model_version_available"][key("1")] == 1
    requests_count = page[":tensorflow:serving:request_count"]
    # gRPC Predict/Regress: 5 OK, 1 FAILED_PRECONDITION, 1 NOT_FOUND; REST counts every /v1 request:
    # 2 predicts, the status and the metadata GET OK, the bad JSON INVALID_ARGUMENT
    assert requests_count[(("model_name", "counted"), ("status", "OK"))] == 5 + 4
    assert requests_count[(("model_name", "counted"), ("status", "FAILED_PRECONDITION"))] == 1
    assert requests_count[(("model_name", "counted"), ("status", "NOT_FOUND"))] == 1
    assert requests_count[(("model_name", "counted"), ("status", "INVALID_ARGUMENT"))] == 1


def test_metrics_page_format(sim: Sim) -> None:
    text = requests.get(f"{sim.rest_url}/monitoring/prometheus/metrics").text
    lines = text.splitlines()
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert lines[0] == "# TYPE :tensorflow:serving:batching_session:queuing_latency histogram"  # sorted by TF name
    assert "# TYPE :tensorflow:serving:model_call_count counter" in lines
    assert "# TYPE :tensorflow:serving:model_version_available gauge" in lines
    assert not any(line.startswith("# HELP") for line in lines)
    assert "model_call_count_total" not in text and "request_count_total" not in text  # no suffix added
    assert ':tensorflow:serving:model_call_count{model_name="plain",model_version="10"} 0' in lines
    assert ':tensorflow:serving:model_call_count{model_name="plain",model_version="5"}' not in text


# --- versions on disk, reload ---


def test_versions_appear_and_unload_with_polling(sim: Sim, predict_stub, model_stub) -> None:
    base = sim.tmp / "models" / "dynamic"  # type: ignore[attr-defined]
    (base / "4").mkdir()
    assert wait_for(lambda: (4, "AVAILABLE") in status_versions(model_stub, "dynamic"))
    assert sim.call_counts()[("dynamic", "4")] == 0
    assert predict_stub.Predict(predict_request("dynamic")).model_spec.version.value == 4

    (base / "4").rmdir()
    assert wait_for(lambda: (4, "END") in status_versions(model_stub, "dynamic"))
    assert status_versions(model_stub, "dynamic") == [(4, "END"), (1, "AVAILABLE")]
    assert sim.version_available()[("dynamic", "4")] == 0
    assert sim.call_counts()[("dynamic", "4")] == 1  # the counter stays
    error = rpc_error(predict_stub.Predict, predict_request("dynamic", version=4))
    assert error.details() == "Servable not found for request: Specific(dynamic, 4)"
    assert predict_stub.Predict(predict_request("dynamic")).model_spec.version.value == 1


def test_reload_config(sim: Sim, predict_stub, model_stub) -> None:
    config = model_server_config_pb2.ModelServerConfig()
    config.CopyFrom(sim.core.config)
    reload_entry = next(m for m in config.model_config_list.config if m.name == "reload")
    reload_entry.version_labels["stable"] = 2
    reload_entry.model_version_policy.Clear()
    reload_entry.model_version_policy.specific.versions.append(2)
    added = config.model_config_list.config.add(name="added", base_path=str(sim.tmp / "models" / "plain"))  # type: ignore[attr-defined]
    added.model_platform = "tensorflow"
    response = model_stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config))
    assert response.status.error_code == 0
    # the reload waited for the new model; the policy change of "reload" comes with a file-system poll
    assert predict_stub.Predict(predict_request("added")).model_spec.version.value == 10
    assert wait_for(lambda: status_versions(model_stub, "reload") == [(2, "AVAILABLE"), (1, "END")])
    assert predict_stub.Predict(predict_request("reload", version_label="stable")).model_spec.version.value == 2

    # moving a label to a version that is not available is refused, and nothing served changes
    reload_entry.version_labels["stable"] = 1
    error = rpc_error(model_stub.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=config))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        "Request to assign label to version 1 of model reload, which is not currently available for inference"
    )

    error = rpc_error(model_stub.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    # removing a model un-aspires all its versions at once; the manager unloads them
    del config.model_config_list.config[-1]
    reload_entry.version_labels["stable"] = 2
    model_stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config))
    assert wait_for(lambda: status_versions(model_stub, "added") == [(10, "END")])
    error = rpc_error(predict_stub.Predict, predict_request("added"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(added)",
    )
    assert sim.version_available()[("added", "10")] == 0
