"""The testdata models the stand-in computes: half_plus_two's five signatures and half_plus_three.

What each signature feeds, fetches and computes is what TF Serving's export script defines
(`servables/tensorflow/testdata/saved_model_half_plus_two.py`, the TF1 branch; half_plus_three is an
older export of it with b = 3). The expected metadata below is built from those definitions, not
copied from upstream; `make upstream-suite` also compares the REST document with upstream's
`half_plus_two_model_metadata.json` byte for byte (re-indented as that file is).
"""

import json
from collections.abc import Iterator

import grpc
import pytest
import requests
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfs_traffic.sim.half_plus_two import HALF_PLUS_THREE, HALF_PLUS_TWO, model_for_base_path, model_for_version_path
from tfs_traffic.sim.server import Sim

COLUMN = [-1, 1]
PARSE_NODE = "\n\t [[{{node ParseExample/ParseExample}}]]"  # TensorFlow names the kernel that failed


def tensor_info(name: str, dtype: str, dims: list[int] | None = None, unknown_rank: bool = False) -> dict:
    """A TensorInfo as protobuf's JSON printer lays it out (plain fields first, the `name` oneof last)."""
    out: dict = {"dtype": dtype}
    if dims is not None or unknown_rank:
        out["tensor_shape"] = {"dim": [{"size": str(d), "name": ""} for d in dims or []], "unknown_rank": unknown_rank}
    out["name"] = name
    return out


def signature(method: str, inputs: dict, outputs: dict) -> dict:
    return {"inputs": inputs, "outputs": outputs, "method_name": f"tensorflow/serving/{method}", "defaults": {}}


EXAMPLES = tensor_info("tf_example:0", "DT_STRING", unknown_rank=True)  # placeholder(tf.string, shape=None)
# The signature map of saved_model_half_plus_two.py's TF1 export; the key order is the one TF
# Serving's printer gave (a protobuf map's order, recorded in upstream's metadata file).
HALF_PLUS_TWO_SIGNATURES = {
    "regress_x2_to_y3": signature(
        "regress",
        {"inputs": tensor_info("x2:0", "DT_FLOAT", COLUMN)},
        {"outputs": tensor_info("y3:0", "DT_FLOAT", COLUMN)},
    ),
    "serving_default": signature(
        "predict", {"x": tensor_info("x:0", "DT_FLOAT", COLUMN)}, {"y": tensor_info("y:0", "DT_FLOAT", COLUMN)}
    ),
    "classify_x_to_y": signature("classify", {"inputs": EXAMPLES}, {"scores": tensor_info("y:0", "DT_FLOAT", COLUMN)}),
    "regress_x_to_y2": signature("regress", {"inputs": EXAMPLES}, {"outputs": tensor_info("y2:0", "DT_FLOAT", COLUMN)}),
    "regress_x_to_y": signature("regress", {"inputs": EXAMPLES}, {"outputs": tensor_info("y:0", "DT_FLOAT", COLUMN)}),
}
HALF_PLUS_THREE_SIGNATURES = {
    "serving_default": signature(
        "predict", {"x": tensor_info("x:0", "DT_FLOAT")}, {"y": tensor_info("y:0", "DT_FLOAT")}
    ),
    "tensorflow/serving/regress": signature(
        "regress",
        {"inputs": tensor_info("tf_example:0", "DT_FLOAT")},
        {"outputs": tensor_info("Identity:0", "DT_FLOAT")},
    ),
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    tmp = tmp_path_factory.mktemp("models")
    entries = []
    for name, directory in (("default", "saved_model_half_plus_two_cpu"), ("three", "saved_model_half_plus_three")):
        (tmp / directory / "123").mkdir(parents=True)
        entries.append(f'config {{ name: "{name}" base_path: "{tmp / directory}" model_platform: "tensorflow" }}')
    config = tmp / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    with Sim(config, poll_seconds=0) as s:
        yield s


@pytest.fixture(scope="module")
def stub(sim: Sim) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(sim.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def floats(values: list, shape: list[int]) -> tensor_pb2.TensorProto:
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), float_val=values
    )


def example(**features: list) -> example_pb2.Example:
    out = example_pb2.Example()
    for key, values in features.items():
        feature = out.features.feature[key]
        if isinstance(values[0], float):
            feature.float_list.value.extend(values)
        else:
            feature.int64_list.value.extend(values)
    return out


def strings(*examples: example_pb2.Example) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(examples))])
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=[e.SerializeToString() for e in examples]
    )


def predict(stub, model: str, signature_name: str, alias: str, tensor: tensor_pb2.TensorProto) -> dict:
    request = predict_pb2.PredictRequest(model_spec={"name": model, "signature_name": signature_name})
    request.inputs[alias].CopyFrom(tensor)
    response = stub.Predict(request)
    return {
        key: (list(t.float_val), [d.size for d in t.tensor_shape.dim], t.dtype) for key, t in response.outputs.items()
    }


def regress(stub, model: str, signature_name: str, *examples: example_pb2.Example) -> list[float]:
    request = regression_pb2.RegressionRequest(model_spec={"name": model, "signature_name": signature_name})
    request.input.example_list.examples.extend(examples)
    return [r.value for r in stub.Regress(request).result.regressions]


def classify(stub, model: str, signature_name: str, *examples: example_pb2.Example) -> list:
    request = classification_pb2.ClassificationRequest(model_spec={"name": model, "signature_name": signature_name})
    request.input.example_list.examples.extend(examples)
    return [[(c.label, c.score) for c in r.classes] for r in stub.Classify(request).result.classifications]


def error(call, *args) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value.code(), info.value.details()


# --- which model a base path holds ---


def test_base_path_picks_the_model() -> None:
    """TF Serving serves what the base path holds; the sim knows the two arithmetic testdata directories."""
    assert model_for_base_path("/t/testdata/saved_model_half_plus_three") is HALF_PLUS_THREE
    assert model_for_base_path("/models/half_plus_three/") is HALF_PLUS_THREE
    assert model_for_base_path("/t/testdata/saved_model_half_plus_two_cpu") is HALF_PLUS_TWO
    assert model_for_base_path("/models/half_plus_three_v2") is HALF_PLUS_TWO
    assert model_for_base_path("/models/m") is HALF_PLUS_TWO
    assert model_for_version_path("/t/testdata/saved_model_half_plus_three/00000123") is HALF_PLUS_THREE
    assert model_for_version_path("/t/testdata/saved_model_half_plus_two_cpu/00000123") is HALF_PLUS_TWO


# --- metadata ---


def test_rest_metadata_is_tf_servings_document(sim: Sim) -> None:
    """`http_rest_api_util.cc:ToJsonString(GetModelMetadataResponse)`: the model spec and the
    SignatureDefMap printed separately (`add_whitespace`, `always_print_fields_with_no_presence`,
    `preserve_proto_field_names`) and joined by hand; every signature def of the SavedModel
    (`get_model_metadata_impl.cc` copies the whole map), `tf_example` inputs of unknown rank."""
    model_spec = {"name": "default", "signature_name": "", "version": "123"}
    sigs = {"signature_def": HALF_PLUS_TWO_SIGNATURES}
    r = requests.get(f"{sim.rest_url}/v1/models/default/metadata")
    assert r.status_code == 200
    assert r.text == (
        '{\n"model_spec":'
        + json.dumps(model_spec, indent=1)
        + "\n,\n"
        + '"metadata": {"signature_def": '
        + json.dumps(sigs, indent=1)
        + "\n}\n}\n"
    )
    r = requests.get(f"{sim.rest_url}/v1/models/three/versions/123/metadata")
    assert json.loads(r.text) == {
        "model_spec": {"name": "three", "signature_name": "", "version": "123"},
        "metadata": {"signature_def": {"signature_def": HALF_PLUS_THREE_SIGNATURES}},
    }
    assert '"tensor_shape"' not in r.text  # half_plus_three's TensorInfos have no shape at all


@pytest.mark.parametrize(
    ("model", "expected"), [("default", HALF_PLUS_TWO_SIGNATURES), ("three", HALF_PLUS_THREE_SIGNATURES)]
)
def test_grpc_metadata_has_every_signature_def(stub, model: str, expected: dict) -> None:
    """GetModelMetadata over gRPC carries the same SignatureDefMap (`get_model_metadata_impl.cc`)."""
    response = stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": model}, metadata_field=["signature_def"])
    )
    got = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(got)
    want = json_format.ParseDict({"signature_def": expected}, get_model_metadata_pb2.SignatureDefMap())
    assert got == want
    assert (response.model_spec.name, response.model_spec.version.value) == (model, 123)


# --- half_plus_two, one signature at a time ---


def test_serving_default_is_half_plus_two(stub, sim: Sim) -> None:
    """`serving_default`: x:0 -> y:0 = 0.5x + 2, any shape fed (float32 arithmetic)."""
    assert predict(stub, "default", "", "x", floats([1.0, 2.0, 0.1], [3, 1])) == {
        "y": ([2.5, 3.0, 2.049999952316284], [3, 1], types_pb2.DT_FLOAT)
    }
    r = requests.post(f"{sim.rest_url}/v1/models/default:predict", json={"instances": [[2.0], [5.0]]})
    assert r.json() == {"predictions": [[3.0], [4.5]]}


def test_regress_x2_to_y3_predicts_from_x2_and_cannot_regress(stub, sim: Sim) -> None:
    """`regress_x2_to_y3` feeds x2:0, a float tensor: Predict on it computes y3 = 0.5 x2 + 3
    (upstream's `predict_impl_test.cc` PredictionWithNamedRegressionSignature: 2 -> 4), while Regress
    feeds serialized examples into that float tensor, which `Session::Run` refuses
    (`FunctionCallFrame::SetArgs`)."""
    assert predict(stub, "default", "regress_x2_to_y3", "inputs", floats([2.0], [])) == {
        "outputs": ([4.0], [], types_pb2.DT_FLOAT)
    }
    assert predict(stub, "default", "regress_x2_to_y3", "inputs", floats([2.0, 5.0], [2, 1])) == {
        "outputs": ([4.0, 5.5], [2, 1], types_pb2.DT_FLOAT)
    }
    assert error(stub.Regress, _regress_request("default", "regress_x2_to_y3", example(x=[2.0], x2=[2.0]))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but string is provided",
    )
    r = requests.post(
        f"{sim.rest_url}/v1/models/default:regress",
        json={"signature_name": "regress_x2_to_y3", "examples": [{"x": 2.0}]},
    )
    assert (r.status_code, r.json()) == (400, {"error": "Expects arg[0] to be float but string is provided"})


def _regress_request(model: str, signature_name: str, *examples: example_pb2.Example):
    request = regression_pb2.RegressionRequest(model_spec={"name": model, "signature_name": signature_name})
    request.input.example_list.examples.extend(examples)
    return request


def test_classify_x_to_y(stub, sim: Sim) -> None:
    """`classify_x_to_y`: scores = y:0 = 0.5x + 2 of the parsed examples; no classes output, so
    labels are empty (`PostProcessClassificationResult`)."""
    assert classify(stub, "default", "classify_x_to_y", example(x=[2.0]), example(x=[7.0])) == [
        [("", 3.0)],
        [("", 5.5)],
    ]
    r = requests.post(
        f"{sim.rest_url}/v1/models/default:classify",
        json={"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
    )
    assert r.json() == {"results": [[["", 3.0]]]}
    assert predict(stub, "default", "classify_x_to_y", "inputs", strings(example(x=[4.0]))) == {
        "scores": ([4.0], [1, 1], types_pb2.DT_FLOAT)
    }


def test_regress_x_to_y2(stub, sim: Sim) -> None:
    """`regress_x_to_y2`: y2:0 = 0.5x + 3 (upstream's multi_inference_test.cc: 2 -> 4)."""
    assert regress(stub, "default", "regress_x_to_y2", example(x=[2.0]), example(x=[3.0])) == [4.0, 4.5]
    r = requests.post(
        f"{sim.rest_url}/v1/models/default:regress",
        json={"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}]},
    )
    assert r.json() == {"results": [4.0]}
    assert predict(stub, "default", "regress_x_to_y2", "inputs", strings(example(x=[1.0]))) == {
        "outputs": ([3.5], [1, 1], types_pb2.DT_FLOAT)
    }


def test_regress_x_to_y_parses_x2_too(stub) -> None:
    """`regress_x_to_y`: y:0 = 0.5x + 2. Its ParseExample op also parses `x2` (default 0), so a
    malformed x2 fails a call that only needs x, and a missing x fails every example signature."""
    assert regress(stub, "default", "regress_x_to_y", example(x=[2.0], x2=[9.0])) == [3.0]
    assert error(stub.Regress, _regress_request("default", "regress_x_to_y", example(x=[2.0], x2=[1]))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Name: <unknown>, Key: x2, Index: 0.  Data types don't match. Data type: int64 but expected type: float"
        + PARSE_NODE,
    )
    assert error(stub.Regress, _regress_request("default", "regress_x_to_y", example(x=[2.0], x2=[1.0, 2.0]))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Name: <unknown>, Key: x2, Index: 0.  Number of float values != expected.  Values size: 2 but output shape: [1]"
        + PARSE_NODE,
    )
    assert error(stub.Regress, _regress_request("default", "regress_x_to_y2", example(x2=[1.0]))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Name: <unknown>, Feature: x (data type: float) is required but could not be found." + PARSE_NODE,
    )


def test_multi_inference_runs_each_task_on_its_own_output(stub) -> None:
    """`TensorFlowMultiInferenceRunner::Infer`: one run feeding every task's input tensor, each task
    reading its own output (upstream's MultipleValidRegressSignaturesTest: 3 and 4); a task on
    regress_x2_to_y3 feeds examples into x2:0, the second feed in sorted order."""
    request = inference_pb2.MultiInferenceRequest()
    for sig, method in (("regress_x_to_y", "regress"), ("regress_x_to_y2", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name = "default"
        task.model_spec.signature_name = sig
    request.input.example_list.examples.append(example(x=[2.0]))
    response = stub.MultiInference(request)
    assert [r.regression_result.regressions[0].value for r in response.results[:2]] == [3.0, 4.0]
    assert response.results[2].classification_result.classifications[0].classes[0].score == 3.0

    task = request.tasks.add(method_name="tensorflow/serving/regress")
    task.model_spec.name = "default"
    task.model_spec.signature_name = "regress_x2_to_y3"
    assert error(stub.MultiInference, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[1] to be float but string is provided",
    )


# --- half_plus_three ---


def test_half_plus_three_serving_default(stub, sim: Sim) -> None:
    """half_plus_three's `serving_default`: y = 0.5x + 3 (upstream's testGoodModelConfig: 2 -> 4)."""
    assert predict(stub, "three", "", "x", floats([2.0], [1])) == {"y": ([4.0], [1], types_pb2.DT_FLOAT)}
    r = requests.post(f"{sim.rest_url}/v1/models/three:predict", json={"instances": [2.0, 3.0, 0.1]})
    assert r.text == '{\n    "predictions": [4.0, 4.5, 3.05\n    ]\n}'


def test_half_plus_three_regress_signature(stub, sim: Sim) -> None:
    """`tensorflow/serving/regress` feeds tf_example:0, a DT_STRING placeholder although the
    signature declares DT_FLOAT: Regress works, Predict works only with strings, and Classify is
    refused by `PreProcessClassification` (no scores or classes output)."""
    assert regress(stub, "three", "tensorflow/serving/regress", example(x=[2.0]), example(x=[10.0])) == [4.0, 8.0]
    assert predict(stub, "three", "tensorflow/serving/regress", "inputs", strings(example(x=[1.0]))) == {
        "outputs": ([3.5], [1, 1], types_pb2.DT_FLOAT)
    }
    assert error(stub.Predict, _predict_request("three", "tensorflow/serving/regress", floats([2.0], [1]))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be string but float is provided",
    )
    r = requests.post(
        f"{sim.rest_url}/v1/models/three:predict",
        json={"signature_name": "tensorflow/serving/regress", "instances": [2.0]},
    )
    assert (r.status_code, r.json()) == (400, {"error": "Expects arg[0] to be string but float is provided"})
    code, message = error(stub.Classify, _classify_request("three", "tensorflow/serving/regress", example(x=[2.0])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith(
        'Expected classification signature outputs to contain at least one of "classes" or "scores". '
        'Signature was: inputs {\n  key: "inputs"\n  value {\n    name: "tf_example:0"\n    dtype: DT_FLOAT\n  }\n}'
    )
    # its one ParseExample feature is x: an x2 of any type is ignored
    assert regress(stub, "three", "tensorflow/serving/regress", example(x=[4.0], x2=[1])) == [5.0]
    assert error(stub.Regress, _regress_request("three", "regress_x_to_y")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "No signature was found with the name: regress_x_to_y",
    )


def _predict_request(model: str, signature_name: str, tensor: tensor_pb2.TensorProto):
    request = predict_pb2.PredictRequest(model_spec={"name": model, "signature_name": signature_name})
    request.inputs["inputs"].CopyFrom(tensor)
    return request


def _classify_request(model: str, signature_name: str, *examples: example_pb2.Example):
    request = classification_pb2.ClassificationRequest(model_spec={"name": model, "signature_name": signature_name})
    request.input.example_list.examples.extend(examples)
    return request


def test_example_input_must_be_a_vector(stub) -> None:
    """ParseExample's `serialized` must be a vector: a Predict feeding a [1, 1] string tensor fails."""
    tensor = strings(example(x=[1.0]))
    tensor.tensor_shape.dim.add(size=1)
    assert error(stub.Predict, _predict_request("default", "regress_x_to_y", tensor)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected serialized to be a vector, got shape: [1,1]" + PARSE_NODE,
    )
