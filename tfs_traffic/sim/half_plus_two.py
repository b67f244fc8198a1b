"""The models `tfs-traffic sim` serves: TF Serving's arithmetic test models, computed exactly.

TF Serving's own tests load SavedModels from `servables/tensorflow/testdata/`. Two of them are plain
float32 arithmetic, which the sim reproduces signature for signature (the metadata, the graph's
tensors and dtypes, and its results):

**half_plus_two** (`saved_model_half_plus_two_cpu`, the TF1 branch of `saved_model_half_plus_two.py`;
variables a = 0.5, b = 2, c = 3, a2 = 0.5, c2 = 3). `tf_example` is a DT_STRING placeholder of unknown
rank parsed by one ParseExample op with dense float features `x` ([1], required) and `x2` ([1],
default 0); `x = Identity(x)`, `x2 = Identity(x2)`:

| signature | method | input | output |
|---|---|---|---|
| `regress_x2_to_y3` | regress | `inputs` = `x2:0` DT_FLOAT [-1, 1] | `outputs` = `y3:0` = 0.5 x2 + 3 |
| `serving_default` | predict | `x` = `x:0` DT_FLOAT [-1, 1] | `y` = `y:0` = 0.5 x + 2 |
| `classify_x_to_y` | classify | `inputs` = `tf_example:0` DT_STRING, unknown rank | `scores` = `y:0` |
| `regress_x_to_y2` | regress | `inputs` = `tf_example:0` | `outputs` = `y2:0` = 0.5 x + 3 |
| `regress_x_to_y` | regress | `inputs` = `tf_example:0` | `outputs` = `y:0` |

**half_plus_three** (`saved_model_half_plus_three`, an older export: a = 0.5, b = 3; ParseExample has
the one feature `x`; no shapes in its TensorInfos):

| signature | method | input | output |
|---|---|---|---|
| `serving_default` | predict | `x` = `x:0` DT_FLOAT | `y` = `y:0` = 0.5 x + 3 |
| `tensorflow/serving/regress` | regress | `inputs` = `tf_example:0` (1) | `outputs` = `Identity:0` = `y` |

(1) declared DT_FLOAT; the placeholder is DT_STRING.

Requests run the way TF Serving runs them: the signature is looked up and checked
(`predict_util.cc`, `classifier.cc`, `regressor.cc`, `multi_inference.cc`), then its input tensors
are fed by name and its outputs fetched (`Session::Run`). Feeding is checked against the *graph's*
dtype of the fed tensor, not the signature's (TensorFlow's `FunctionCallFrame::SetArgs`:
"Expects arg[i] to be float but string is provided", args in sorted feed-name order): so Regress on
`regress_x2_to_y3` fails (it feeds serialized examples into a float tensor), and Predict on
half_plus_three's regress signature needs strings although the signature says DT_FLOAT.
TensorFlow's runtime errors (malformed examples, bad dtypes) have TensorFlow's wording, as
TensorFlow 2.21 answers them for these SavedModels. When one example has two malformed features,
TensorFlow names the first on the wire, the sim `x` before `x2`; bytes that are not UTF-8 in an
unparsable example are replaced by U+FFFD in the message.

Which model a servable is follows its base path (`model_for_base_path`), as TF Serving loads what is
on disk: a last directory named `half_plus_three` or `saved_model_half_plus_three` is
half_plus_three; every other base path (the sim's own tests and demos use empty version
directories) is half_plus_two.
"""

import functools
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
_DTYPE_ENUM = {1: "DT_FLOAT", 7: "DT_STRING"}


@dataclass(frozen=True)
class TensorSpec:
    """A signature's TensorInfo: dtype, shape (None: no `tensor_shape` at all), tensor name."""

    dtype: int
    dims: tuple[int, ...] | None
    tensor_name: str
    unknown_rank: bool = False


@dataclass(frozen=True)
class Signature:
    method: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


@dataclass
class Tensor:
    """A decoded input tensor: float32 values, or a list of byte strings for DT_STRING."""

    dtype: int
    shape: tuple[int, ...]
    values: Any  # np.ndarray (float32) or list[bytes]; None for dtypes the model never reads
    malformed: bool = False  # TensorProto whose values do not fit its shape (`Tensor::FromProto` fails)


@dataclass(frozen=True)
class Model:
    """A SavedModel as the sim runs it: its signatures and the part of its graph they reach.

    `signatures` are in the order TF Serving's REST metadata lists them (a protobuf map's iteration
    order, which is unspecified: the one `half_plus_two_model_metadata.json` records). `feeds` are
    the graph dtypes of the tensors a signature feeds. The graph: `tf_example:0` is parsed by one
    ParseExample op with dense float `features` ((key, default or None if required), shape [1])
    into the tensors `parsed` names, and each tensor of `affine` is `a * source + b`.
    """

    name: str
    signatures: Mapping[str, Signature]
    feeds: Mapping[str, int]
    features: tuple[tuple[str, float | None], ...]
    parsed: Mapping[str, str]  # feature key -> the tensor that carries it
    affine: Mapping[str, tuple[str, np.float32, np.float32]]  # tensor -> (source tensor, a, b)


def affine(x: np.ndarray, a: np.float32, b: np.float32) -> np.ndarray:
    """`Add(Mul(a, x), b)` in float32: two roundings, as the graph's two ops."""
    return (np.asarray(x, dtype=np.float32) * a + b).astype(np.float32, copy=False)


# --- tf.Example input (Classify, Regress, MultiInference, and Predict on the example signatures) ---


# A kernel's error carries the node it ran in (TensorFlow's `AttachDef`); both models name theirs so.
_PARSE_NODE = "\n\t [[{{node ParseExample/ParseExample}}]]"


def _parse_error(message: str) -> SimError:
    return SimError(Code.INVALID_ARGUMENT, message + _PARSE_NODE)


def parse_examples(protos: Any, serialized: Sequence[bytes], features: Sequence[tuple[str, float | None]]) -> list:
    """ParseExample with dense float features of shape [1]: one [N, 1] array per (key, default or None).

    TensorFlow's fast parser (`example_proto_fast_parsing.cc`) checks the features an example has,
    then the required ones it lacks; its messages are what TensorFlow 2.21 answers for these models.
    """
    outs = [np.empty((len(serialized), 1), dtype=np.float32) for _ in features]
    example_cls = protos.example.Example
    for i, data in enumerate(serialized):
        try:
            example = example_cls.FromString(data)
        except Exception:
            value = bytes(data).decode("utf-8", "replace")
            raise _parse_error(f"Could not parse example input, value: '{value}'") from None
        missing = None
        for out, (key, default) in zip(outs, features, strict=True):
            feature = example.features.feature.get(key)
            kind = feature.WhichOneof("kind") if feature is not None else None
            if kind is None:
                if default is None and missing is None:
                    missing = key
                out[i, 0] = 0.0 if default is None else default
                continue
            if kind != "float_list":
                data_type = "int64" if kind == "int64_list" else "string"
                raise _parse_error(
                    f"Name: <unknown>, Key: {key}, Index: {i}.  Data types don't match. "
                    f"Data type: {data_type} but expected type: float"
                )
            values = feature.float_list.value
            if len(values) != 1:
                raise _parse_error(
                    f"Name: <unknown>, Key: {key}, Index: {i}.  Number of float values != expected.  "
                    f"Values size: {len(values)} but output shape: [1]"
                )
            out[i, 0] = values[0]
        if missing is not None:
            raise _parse_error(
                f"Name: <unknown>, Feature: {missing} (data type: float) is required but could not be found."
            )
    return outs


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


def _serialized(fed: Tensor) -> list[bytes]:
    """ParseExample's `serialized` input, which must be a vector."""
    if len(fed.shape) != 1:
        raise _parse_error(f"Expected serialized to be a vector, got shape: [{','.join(map(str, fed.shape))}]")
    return list(fed.values)


_COLUMN = (-1, 1)
_HALF, _TWO, _THREE = np.float32(0.5), np.float32(2.0), np.float32(3.0)
_EXAMPLES = TensorSpec(DT_STRING, (), "tf_example:0", unknown_rank=True)

HALF_PLUS_TWO = Model(
    "half_plus_two",
    {
        "regress_x2_to_y3": Signature(
            REGRESS_METHOD,
            {"inputs": TensorSpec(DT_FLOAT, _COLUMN, "x2:0")},
            {"outputs": TensorSpec(DT_FLOAT, _COLUMN, "y3:0")},
        ),
        DEFAULT_SIGNATURE: Signature(
            PREDICT_METHOD, {"x": TensorSpec(DT_FLOAT, _COLUMN, "x:0")}, {"y": TensorSpec(DT_FLOAT, _COLUMN, "y:0")}
        ),
        "classify_x_to_y": Signature(
            CLASSIFY_METHOD, {"inputs": _EXAMPLES}, {"scores": TensorSpec(DT_FLOAT, _COLUMN, "y:0")}
        ),
        "regress_x_to_y2": Signature(
            REGRESS_METHOD, {"inputs": _EXAMPLES}, {"outputs": TensorSpec(DT_FLOAT, _COLUMN, "y2:0")}
        ),
        "regress_x_to_y": Signature(
            REGRESS_METHOD, {"inputs": _EXAMPLES}, {"outputs": TensorSpec(DT_FLOAT, _COLUMN, "y:0")}
        ),
    },
    {"tf_example:0": DT_STRING, "x:0": DT_FLOAT, "x2:0": DT_FLOAT},
    (("x", None), ("x2", 0.0)),
    {"x": "x:0", "x2": "x2:0"},
    {"y:0": ("x:0", _HALF, _TWO), "y2:0": ("x:0", _HALF, _THREE), "y3:0": ("x2:0", _HALF, _THREE)},
)

HALF_PLUS_THREE = Model(
    "half_plus_three",
    {
        DEFAULT_SIGNATURE: Signature(
            PREDICT_METHOD, {"x": TensorSpec(DT_FLOAT, None, "x:0")}, {"y": TensorSpec(DT_FLOAT, None, "y:0")}
        ),
        REGRESS_METHOD: Signature(
            REGRESS_METHOD,
            {"inputs": TensorSpec(DT_FLOAT, None, "tf_example:0")},
            {"outputs": TensorSpec(DT_FLOAT, None, "Identity:0")},
        ),
    },
    {"tf_example:0": DT_STRING, "x:0": DT_FLOAT},
    (("x", None),),
    {"x": "x:0"},
    {"y:0": ("x:0", _HALF, _THREE), "Identity:0": ("x:0", _HALF, _THREE)},
)


@functools.lru_cache(maxsize=4096)
def model_for_version_path(path: str) -> Model:
    """The model a version directory (BASE_PATH/VERSION) was loaded from."""
    return model_for_base_path(path.rstrip("/").rsplit("/", 1)[0])


def model_for_base_path(base_path: str) -> Model:
    """The model a base path holds: its last directory names half_plus_three, or it is half_plus_two."""
    last = base_path.rstrip("/").rsplit("/", 1)[-1]
    return HALF_PLUS_THREE if last.removeprefix("saved_model_") == "half_plus_three" else HALF_PLUS_TWO


# --- metadata ---


def signature_def(protos: Any, sig: Signature) -> Any:
    """The SignatureDef proto of a signature (for metadata and for TF's DebugString in errors)."""
    out = protos.meta_graph.SignatureDef(method_name=sig.method)
    for target, specs in ((out.inputs, sig.inputs), (out.outputs, sig.outputs)):
        for alias, spec in specs.items():
            info = target[alias]
            info.name = spec.tensor_name
            info.dtype = spec.dtype
            if spec.dims is None:
                continue
            info.tensor_shape.SetInParent()
            info.tensor_shape.unknown_rank = spec.unknown_rank
            for d in spec.dims:
                info.tensor_shape.dim.add(size=d)
    return out


def signature_def_map(protos: Any, model: Model) -> Any:
    """`SignatureDefMap` with every signature of the model, as GetModelMetadata returns it
    (`get_model_metadata_impl.cc:GetSignatureDef` copies the loaded MetaGraphDef's whole map)."""
    out = protos.get_model_metadata.SignatureDefMap()
    for name, sig in model.signatures.items():
        out.signature_def[name].CopyFrom(signature_def(protos, sig))
    return out


def _tensor_info_json(spec: TensorSpec) -> dict:
    out: dict[str, Any] = {"dtype": _DTYPE_ENUM[spec.dtype]}
    if spec.dims is not None:
        dims = [{"size": str(d), "name": ""} for d in spec.dims]
        out["tensor_shape"] = {"dim": dims, "unknown_rank": spec.unknown_rank}
    out["name"] = spec.tensor_name
    return out


def signature_def_map_json(model: Model) -> dict:
    """The SignatureDefMap as TF Serving's protobuf JSON printer lays it out, in its key order: a
    message's plain fields in declaration order, then its oneof members (TensorInfo's `name`);
    every field without presence printed (`always_print_fields_with_no_presence`), 64-bit sizes as
    strings, an absent `tensor_shape` left out."""
    sigs = {}
    for key, sig in model.signatures.items():
        sigs[key] = {
            "inputs": {alias: _tensor_info_json(spec) for alias, spec in sig.inputs.items()},
            "outputs": {alias: _tensor_info_json(spec) for alias, spec in sig.outputs.items()},
            "method_name": sig.method,
            "defaults": {},
        }
    return {"signature_def": sigs}


def debug_string(protos: Any, sig: Signature) -> str:
    """C++ `SignatureDef::DebugString()` (protobuf text format)."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(signature_def(protos, sig)))


# --- signature lookup and checks ---


def signature_or_error(model: Model, name: str) -> tuple[str, Signature]:
    """Predict's lookup (`RunPredict`): FAILED_PRECONDITION for an unknown key."""
    key = name or DEFAULT_SIGNATURE
    sig = model.signatures.get(key)
    if sig is None:
        raise SimError(Code.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
    return key, sig


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


def classify_or_regress_signature(protos: Any, model: Model, name: str, classify: bool) -> tuple[str, Signature]:
    """`GetClassificationSignatureDef` / `GetRegressionSignatureDef`: INVALID_ARGUMENT when unknown."""
    key = name or DEFAULT_SIGNATURE
    sig = model.signatures.get(key)
    if sig is None:
        raise SimError(Code.INVALID_ARGUMENT, f"No signature was found with the name: {key}")
    (check_classify_signature if classify else check_regress_signature)(protos, sig)
    return key, sig


# --- running the graph ---


def run(protos: Any, model: Model, feeds: Mapping[str, Tensor], fetches: Sequence[str]) -> list[np.ndarray]:
    """`Session::Run`: feeds checked against the graph's dtypes (sorted by name), then the fetches."""
    for index, name in enumerate(sorted(feeds) if len(feeds) > 1 else feeds):
        want, got = model.feeds[name], feeds[name].dtype
        if got != want:
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Expects arg[{index}] to be {DTYPE_NAMES.get(want, want)} but {DTYPE_NAMES.get(got, str(got))} "
                "is provided",
            )
    values = {name: t.values for name, t in feeds.items() if t.dtype == DT_FLOAT}
    if "tf_example:0" in feeds and any(model.affine.get(n, (n,))[0] not in values for n in fetches):
        parsed = parse_examples(protos, _serialized(feeds["tf_example:0"]), model.features)
        for (key, _), tensor in zip(model.features, parsed, strict=True):
            values.setdefault(model.parsed[key], tensor)  # ParseExample ran; a fed tensor wins over its output
    out = []
    for name in fetches:
        if name in values:
            out.append(values[name])
        else:
            source, a, b = model.affine[name]
            out.append(affine(values[source], a, b))
    return out


def run_examples(protos: Any, model: Model, sig: Signature, serialized: list[bytes]) -> np.ndarray:
    """Classify/Regress (`PerformOneShotTensorComputation`): the examples fed to the signature's
    `inputs` tensor as a DT_STRING vector, its one scores/outputs tensor fetched."""
    feed = Tensor(DT_STRING, (len(serialized),), serialized)
    (output,) = sig.outputs.values()
    return run(protos, model, {sig.inputs["inputs"].tensor_name: feed}, [output.tensor_name])[0]


def predict(
    protos: Any, model: Model, sig: Signature, inputs: Mapping[str, Tensor], output_filter: Sequence[str]
) -> dict:
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
    feeds = {sig.inputs[alias].tensor_name: tensor for alias, tensor in inputs.items()}
    values = run(protos, model, feeds, [sig.outputs[alias].tensor_name for alias in aliases])
    return dict(zip(aliases, values, strict=True))
