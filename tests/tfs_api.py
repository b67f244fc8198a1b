"""TF Serving's API as the tests speak it: request messages of every kind, their gRPC framing, a Predict.

The stand-in serves half_plus_two (`x` -> `y = x / 2 + 2`, five signatures); every request here is a
valid one for it unless a test edits it.
"""

import struct
from collections.abc import Sequence
from typing import Any

import grpc
from hypothesis import strategies as st
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

DT_FLOAT = 1  # tensorflow/core/framework/types.proto
PREDICTION = "/tensorflow.serving.PredictionService/"
METHODS = {
    "predict": PREDICTION + "Predict",
    "classify": PREDICTION + "Classify",
    "regress": PREDICTION + "Regress",
    "multi_inference": PREDICTION + "MultiInference",
    "metadata": PREDICTION + "GetModelMetadata",
    "status": "/tensorflow.serving.ModelService/GetModelStatus",
}
SIGNATURES = {"predict": "serving_default", "classify": "classify_x_to_y", "regress": "regress_x_to_y"}


def model_spec(
    name: str, version: int | None = None, version_label: str | None = None, signature: str = ""
) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    if version_label is not None:
        spec.version_label = version_label
    return spec


def predict_request(
    name: str = "m",
    version: int | None = None,
    version_label: str | None = None,
    *,
    x: Sequence[float] = (1.0,),
    content: bool = False,
) -> predict_pb2.PredictRequest:
    """A PredictRequest for `name` (latest, or at `version` or `version_label`) with `x` as a float vector,
    in `float_val` or, with `content`, packed in `tensor_content` (the two ways a client may send it)."""
    request = predict_pb2.PredictRequest(model_spec=model_spec(name, version, version_label))
    tensor = request.inputs["x"]
    tensor.dtype = DT_FLOAT
    tensor.tensor_shape.dim.add().size = len(x)
    if content:
        tensor.tensor_content = struct.pack(f"<{len(x)}f", *x)
    else:
        tensor.float_val.extend(x)
    return request


def grpc_message(message: bytes) -> bytes:
    """A message as gRPC frames it in DATA: uncompressed, its length in 4 bytes, then its bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_predict(
    name: str = "m", version: int | None = None, version_label: str | None = None, *, x: Sequence[float] = (1.0,)
) -> bytes:
    """`predict_request(...)` as it goes over the wire."""
    return grpc_message(predict_request(name, version, version_label, x=x).SerializeToString())


def request_bytes(api: str, model: dict[str, Any]) -> bytes:
    """A valid request of `api` (a key of METHODS) for `model` (model_spec's arguments), serialized."""
    signature = SIGNATURES.get(api, "")
    if api == "predict":
        message: Any = predict_request(**model, x=(1.0, 2.0, 5.0))
        message.model_spec.signature_name = signature
    elif api == "multi_inference":
        message = inference_pb2.MultiInferenceRequest()
        message.tasks.add(
            model_spec=model_spec(**model, signature="regress_x_to_y"), method_name="tensorflow/serving/regress"
        )
        message.input.example_list.examples.add().features.feature["x"].float_list.value.append(4.0)
    elif api == "metadata":
        message = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_spec(**model), metadata_field=["signature_def"]
        )
    elif api == "status":
        message = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(**model))
    else:
        cls = classification_pb2.ClassificationRequest if api == "classify" else regression_pb2.RegressionRequest
        message = cls(model_spec=model_spec(**model, signature=signature))
        message.input.example_list.examples.add().features.feature["x"].float_list.value.append(4.0)
    return bytes(message.SerializeToString())


def served_version(target: str, request: predict_pb2.PredictRequest) -> int:
    """The version a Predict at `target` ran on (a failed call raises grpc.RpcError)."""
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    return int(response.model_spec.version.value)


@st.composite
def model_specs(draw: st.DrawFn, text: st.SearchStrategy[str]) -> model_pb2.ModelSpec:
    """Any ModelSpec: names from `text`, and a version, a label or neither."""
    spec = model_pb2.ModelSpec(name=draw(text), signature_name=draw(text))
    choice = draw(st.sampled_from(["none", "version", "label"]))
    if choice == "version":
        spec.version.value = draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
    elif choice == "label":
        spec.version_label = draw(text)
    return spec
