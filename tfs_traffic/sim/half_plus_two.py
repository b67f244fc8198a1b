"""The model every version of every model in `tfs-traffic sim` serves: TF Serving's half_plus_two.

TF Serving's own test model (`servables/tensorflow/testdata/saved_model_half_plus_two.py`,
TF1 flavour) computes y = 0.5 * x + 2 and has these signatures, which the sim reproduces:

| signature | method | input | output |
|---|---|---|---|
| `serving_default` | predict | `x` DT_FLOAT (any shape) | `y` = 0.5x + 2, same shape |
| `regress_x_to_y` | regress | `inputs` DT_STRING serialized tf.Example, float feature `x` [1] | `outputs` [N, 1] |
| `classify_x_to_y` | classify | `inputs` as above | `scores` [N, 1] (classes have empty labels) |

Errors follow TF Serving's checks (`predict_util.cc`, `classifier.cc`, `regressor.cc`,
`multi_inference.cc`) with their codes and messages; TensorFlow runtime errors (bad dtypes,
malformed examples) are imitated with TensorFlow's wording.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfs_traffic.sim.errors import Code, SimError

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

DT_FLOAT = 1
DT_STRING = 7
DTYPE_NAMES = {1: "float", 2: "double", 3: "int32", 7: "string", 9: "int64", 10: "bool"}

A = np.float32(0.5)
C = np.float32(2.0)


@dataclass(frozen=True)
class TensorSpec:
    dtype: int
    dims: tuple[int, ...]
    tensor_name: str


@dataclass(frozen=True)
class Signature:
    method: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


SIGNATURES: dict[str, Signature] = {
    DEFAULT_SIGNATURE: Signature(
        PREDICT_METHOD, {"x": TensorSpec(DT_FLOAT, (-1, 1), "x:0")}, {"y": TensorSpec(DT_FLOAT, (-1, 1), "y:0")}
    ),
    "regress_x_to_y": Signature(
        REGRESS_METHOD,
        {"inputs": TensorSpec(DT_STRING, (-1,), "tf_example:0")},
        {"outputs": TensorSpec(DT_FLOAT, (-1, 1), "y:0")},
    ),
    "classify_x_to_y": Signature(
        CLASSIFY_METHOD,
        {"inputs": TensorSpec(DT_STRING, (-1,), "tf_example:0")},
        {"scores": TensorSpec(DT_FLOAT, (-1, 1), "y:0")},
    ),
}


def half_plus_two(x: np.ndarray) -> np.ndarray:
    """y = 0.5x + 2 in float32, as the model's graph computes it."""
    return (x * A + C).astype(np.float32, copy=False)


def signature_def(protos: Any, sig: Signature) -> Any:
    """The SignatureDef proto of a signature (for metadata and for TF's DebugString in errors)."""
    out = protos.meta_graph.SignatureDef(method_name=sig.method)
    for target, specs in ((out.inputs, sig.inputs), (out.outputs, sig.outputs)):
        for alias, spec in specs.items():
            info = target[alias]
            info.name = spec.tensor_name
            info.dtype = spec.dtype
            for d in spec.dims:
                info.tensor_shape.dim.add(size=d)
    return out


def signature_def_map(protos: Any) -> Any:
    """`SignatureDefMap` with every signature, as GetModelMetadata returns it."""
    out = protos.get_model_metadata.SignatureDefMap()
    for name, sig in SIGNATURES.items():
        out.signature_def[name].CopyFrom(signature_def(protos, sig))
    return out


def debug_string(protos: Any, sig: Signature) -> str:
    """C++ `SignatureDef::DebugString()` (protobuf text format)."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(signature_def(protos, sig)))


def signature_or_error(name: str) -> tuple[str, Signature]:
    """Predict's lookup (`RunPredict`): FAILED_PRECONDITION for an unknown key."""
    key = name or DEFAULT_SIGNATURE
    sig = SIGNATURES.get(key)
    if sig is None:
        raise SimError(Code.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
    return key, sig


# --- tf.Example input (Classify, Regress, MultiInference, and Predict on the example signatures) ---


def examples_x(protos: Any, serialized: Sequence[bytes]) -> np.ndarray:
    """Feature `x` (FixedLenFeature([1], float32)) of each serialized tf.Example, as [N, 1]."""
    out = np.empty((len(serialized), 1), dtype=np.float32)
    example_cls = protos.example.Example
    for i, data in enumerate(serialized):
        try:
            example = example_cls.FromString(data)
        except Exception:
            raise SimError(Code.INVALID_ARGUMENT, "Could not parse example input, value: '<binary>'") from None
        feature = example.features.feature.get("x")
        if feature is None or feature.WhichOneof("kind") is None:
            raise SimError(Code.INVALID_ARGUMENT, "Feature: x (data type: float) is required but could not be found.")
        if feature.WhichOneof("kind") != "float_list":
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Name: <unknown>, Feature: x.  Data types don't match. Expected type: float, "
                f"Feature is: {feature.WhichOneof('kind').removesuffix('_list')}",
            )
        values = feature.float_list.value
        if len(values) != 1:
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Name: <unknown>, Key: x, Index: {i}.  Number of float values != expected.  "
                f"Values size: {len(values)} but output shape: [1]",
            )
        out[i, 0] = values[0]
    return out


def input_examples(protos: Any, request_input: Any) -> list[bytes]:
    """The serialized examples of an `Input` (context prepended, as `InputToSerializedExampleTensor`)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        out = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        ctx = request_input.example_list_with_context.context.SerializeToString()
        out = [ctx + e.SerializeToString() for e in request_input.example_list_with_context.examples]
    else:
        out = []
    if not out:
        raise SimError(Code.INVALID_ARGUMENT, "Input is empty.")
    return out


def check_classify_signature(protos: Any, sig: Signature) -> None:
    """`PreProcessClassification` (the method-name check is off by default in TF Serving)."""
    if len(sig.inputs) != 1:
        raise SimError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(sig.outputs) not in (1, 2):
        raise SimError(Code.INVALID_ARGUMENT, f"Expected one or two output Tensors, found {len(sig.outputs)}")
    if "inputs" not in sig.inputs:
        raise SimError(
            Code.INVALID_ARGUMENT, "No classification inputs found in SignatureDef: " + debug_string(protos, sig)
        )
    if "classes" not in sig.outputs and "scores" not in sig.outputs:
        raise SimError(
            Code.INVALID_ARGUMENT,
            'Expected classification signature outputs to contain at least one of "classes" or "scores". '
            "Signature was: " + debug_string(protos, sig),
        )


def check_regress_signature(protos: Any, sig: Signature) -> None:
    """`PreProcessRegression`."""
    if len(sig.inputs) != 1:
        raise SimError(Code.INVALID_ARGUMENT, "Expected one input Tensor.")
    if len(sig.outputs) != 1:
        raise SimError(Code.INVALID_ARGUMENT, "Expected one output Tensor.")
    if "inputs" not in sig.inputs:
        raise SimError(
            Code.INVALID_ARGUMENT, "No regression inputs found in SignatureDef: " + debug_string(protos, sig)
        )
    if "outputs" not in sig.outputs:
        raise SimError(
            Code.INVALID_ARGUMENT, "No regression outputs found in SignatureDef: " + debug_string(protos, sig)
        )


def classify_or_regress_signature(protos: Any, name: str, classify: bool) -> tuple[str, Signature]:
    """`GetClassificationSignatureDef` / `GetRegressionSignatureDef`: INVALID_ARGUMENT when unknown."""
    key = name or DEFAULT_SIGNATURE
    sig = SIGNATURES.get(key)
    if sig is None:
        raise SimError(Code.INVALID_ARGUMENT, f"No signature was found with the name: {key}")
    (check_classify_signature if classify else check_regress_signature)(protos, sig)
    return key, sig


# --- Predict ---


@dataclass
class Tensor:
    """A decoded input tensor: float32 values, or a list of byte strings for DT_STRING."""

    dtype: int
    shape: tuple[int, ...]
    values: Any  # np.ndarray (float32) or list[bytes]; None for dtypes the model never reads
    malformed: bool = False  # TensorProto whose values do not fit its shape (`Tensor::FromProto` fails)


def predict(protos: Any, sig: Signature, inputs: Mapping[str, Tensor], output_filter: Sequence[str]) -> dict:
    """RunPredict's checks, then the graph: output alias -> float32 ndarray."""
    request_keys = sorted(inputs)
    sig_keys = sorted(sig.inputs)
    if len(inputs) != len(sig.inputs):
        extra = sorted(set(request_keys) - set(sig_keys))
        missing = sorted(set(sig_keys) - set(request_keys))
        raise SimError(
            Code.INVALID_ARGUMENT,
            f"input size does not match signature: {len(inputs)}!={len(sig.inputs)} "
            f"len({{{','.join(request_keys)}}}) != len({{{','.join(sig_keys)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.",
        )
    for alias, spec in sig.inputs.items():
        if alias not in inputs:
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Signature input alias: {alias}(feed name: {spec.tensor_name}) not found in request and no "
                f"default value provided. Inputs expected to be in the request {{{','.join(request_keys)}}}, "
                "or default input alias set: ",
            )
    for alias in sorted(sig.inputs):
        if inputs[alias].malformed:
            raise SimError(Code.INVALID_ARGUMENT, f"tensor parsing error: {alias}")
    aliases: list[str] = []
    for alias in output_filter:
        if alias not in sig.outputs:
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(sig.outputs))}}}.",
            )
        if alias in aliases:
            raise SimError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        aliases.append(alias)
    if not aliases:
        aliases = list(sig.outputs)
    for index, (alias, spec) in enumerate(sorted(sig.inputs.items())):
        got = inputs[alias].dtype
        if got != spec.dtype:
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Expects arg[{index}] to be {DTYPE_NAMES.get(spec.dtype, spec.dtype)} but "
                f"{DTYPE_NAMES.get(got, str(got))} is provided",
            )
    if "x" in sig.inputs:
        y = half_plus_two(np.asarray(inputs["x"].values, dtype=np.float32))
    else:
        y = half_plus_two(examples_x(protos, inputs["inputs"].values))
    return dict.fromkeys(aliases, y)
