"""The stand-in's arithmetic models against the TF Serving source tree itself (part of `run.py`).

    python checks.py TF_SERVING_SRC

With the sim serving the source tree's `saved_model_half_plus_two_cpu` (as `default`) and
`saved_model_half_plus_three` (as `three`):

1. metadata: the REST document, re-indented the way upstream's file was written (`json.dumps`
   with a 1-space indent), equals `testdata/half_plus_two_model_metadata.json` byte for byte;
2. signature defs: GetModelMetadata's SignatureDefMap equals the `signature_def` map of each
   SavedModel's `saved_model.pb`;
3. results: TensorFlow runs each SavedModel (a TF1 session, the feeds and fetches TF Serving's
   `Session::Run` gets for the request) and every case answers the same as the sim over gRPC:
   values, shapes, or the error message. Feeds go through TensorFlow's C API without the Python
   client's own checks, which TF Serving does not have (`Session._call_tf_sessionrun`).

Prints one line per check and every case that differs; exit status 1 if any differs.
"""

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

TESTDATA = Path("tensorflow_serving/servables/tensorflow/testdata")
MODELS = {"default": "saved_model_half_plus_two_cpu", "three": "saved_model_half_plus_three"}
VERSION_DIR = "00000123"


def example(**features: list) -> bytes:
    out = example_pb2.Example()
    for key, values in features.items():
        feature = out.features.feature[key]
        if values and isinstance(values[0], int):
            feature.int64_list.value.extend(values)
        else:
            feature.float_list.value.extend(values)
    return out.SerializeToString()


class TensorFlow:
    """The SavedModels loaded in TF1 sessions; `run` feeds by tensor name as TF Serving does."""

    def __init__(self, testdata: Path) -> None:
        import tensorflow.compat.v1 as tf

        tf.disable_eager_execution()
        self.tf = tf
        self.sessions: dict[str, Any] = {}
        for model, directory in MODELS.items():
            session = tf.Session(graph=tf.Graph())
            with session.graph.as_default():
                tf.saved_model.loader.load(session, ["serve"], str(testdata / directory / VERSION_DIR))
            self.sessions[model] = session

    def run(self, model: str, feeds: dict[str, np.ndarray], fetches: list[str]) -> list[np.ndarray] | str:
        session = self.sessions[model]
        graph = session.graph
        feed = {graph.get_tensor_by_name(name)._as_tf_output(): value for name, value in feeds.items()}
        outputs = [graph.get_tensor_by_name(name)._as_tf_output() for name in fetches]
        try:
            return list(session._call_tf_sessionrun(None, feed, outputs, [], None))
        except self.tf.errors.OpError as e:
            return str(e.message)


def tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in values.shape]
    out = tensor_pb2.TensorProto(tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims))
    if values.dtype == object:
        out.dtype = types_pb2.DT_STRING
        out.string_val.extend(values.ravel().tolist())
    else:
        out.dtype = types_pb2.DT_FLOAT
        out.float_val.extend(values.ravel().tolist())
    return out


def sim_call(call: Callable[[], Any], read: Callable[[Any], list[np.ndarray]]) -> list[np.ndarray] | str:
    try:
        return read(call())
    except grpc.RpcError as e:
        return str(e.details())


def cases(stub: Any) -> list[tuple[str, Callable[[], Any], tuple[str, dict[str, np.ndarray], list[str]]]]:
    """(what, the sim's answer, the TensorFlow run it must equal)."""

    def predict(model: str, signature: str, alias: str, value: np.ndarray, output: str) -> Callable[[], Any]:
        request = predict_pb2.PredictRequest(model_spec={"name": model, "signature_name": signature})
        request.inputs[alias].CopyFrom(tensor(value))

        def read(response: Any) -> list[np.ndarray]:
            t = response.outputs[output]
            return [np.array(t.float_val, dtype=np.float32).reshape([d.size for d in t.tensor_shape.dim])]

        return lambda: sim_call(lambda: stub.Predict(request), read)

    def regress(model: str, signature: str, examples: list[bytes]) -> Callable[[], Any]:
        request = regression_pb2.RegressionRequest(model_spec={"name": model, "signature_name": signature})
        request.input.example_list.examples.extend(example_pb2.Example.FromString(e) for e in examples)
        read = lambda r: [np.array([[x.value] for x in r.result.regressions], dtype=np.float32)]  # noqa: E731
        return lambda: sim_call(lambda: stub.Regress(request), read)

    def classify(model: str, signature: str, examples: list[bytes]) -> Callable[[], Any]:
        request = classification_pb2.ClassificationRequest(model_spec={"name": model, "signature_name": signature})
        request.input.example_list.examples.extend(example_pb2.Example.FromString(e) for e in examples)
        read = lambda r: [np.array([[c.classes[0].score] for c in r.result.classifications], dtype=np.float32)]  # noqa: E731
        return lambda: sim_call(lambda: stub.Classify(request), read)

    def multi(model: str, tasks: list[tuple[str, str]], examples: list[bytes]) -> Callable[[], Any]:
        request = inference_pb2.MultiInferenceRequest()
        for signature, method in tasks:
            task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
            task.model_spec.name = model
            task.model_spec.signature_name = signature
        request.input.example_list.examples.extend(example_pb2.Example.FromString(e) for e in examples)

        def read(response: Any) -> list[np.ndarray]:
            out = []
            for result in response.results:
                if result.HasField("regression_result"):
                    out.append(np.array([[r.value] for r in result.regression_result.regressions], dtype=np.float32))
                else:
                    scores = [[c.classes[0].score] for c in result.classification_result.classifications]
                    out.append(np.array(scores, dtype=np.float32))
            return out

        return lambda: sim_call(lambda: stub.MultiInference(request), read)

    column = np.array([[2.0], [3.0], [0.1], [-1e7]], dtype=np.float32)
    good = [example(x=[2.0]), example(x=[-1.5], x2=[10.0]), example(x=[0.1], x2=[0.3])]
    strings = np.array(good, dtype=object)
    return [
        (
            "predict serving_default [4,1]",
            predict("default", "", "x", column, "y"),
            ("default", {"x:0": column}, ["y:0"]),
        ),
        (
            "predict serving_default scalar",
            predict("default", "", "x", np.array(2.0, dtype=np.float32), "y"),
            ("default", {"x:0": np.array(2.0, dtype=np.float32)}, ["y:0"]),
        ),
        (
            "predict serving_default strings",
            predict("default", "", "x", strings, "y"),
            ("default", {"x:0": strings}, ["y:0"]),
        ),
        (
            "predict regress_x2_to_y3",
            predict("default", "regress_x2_to_y3", "inputs", column, "outputs"),
            ("default", {"x2:0": column}, ["y3:0"]),
        ),
        (
            "predict classify_x_to_y",
            predict("default", "classify_x_to_y", "inputs", strings, "scores"),
            ("default", {"tf_example:0": strings}, ["y:0"]),
        ),
        (
            "predict regress_x_to_y2",
            predict("default", "regress_x_to_y2", "inputs", strings, "outputs"),
            ("default", {"tf_example:0": strings}, ["y2:0"]),
        ),
        (
            "predict regress_x_to_y, serialized [1,3]",
            predict("default", "regress_x_to_y", "inputs", strings.reshape(1, 3), "outputs"),
            ("default", {"tf_example:0": strings.reshape(1, 3)}, ["y:0"]),
        ),
        (
            "predict regress_x_to_y, bytes that are no Example",
            predict("default", "regress_x_to_y", "inputs", np.array([b"abc"], dtype=object), "outputs"),
            ("default", {"tf_example:0": np.array([b"abc"], dtype=object)}, ["y:0"]),
        ),
        (
            "classify classify_x_to_y",
            classify("default", "classify_x_to_y", good),
            ("default", {"tf_example:0": strings}, ["y:0"]),
        ),
        (
            "regress regress_x_to_y",
            regress("default", "regress_x_to_y", good),
            ("default", {"tf_example:0": strings}, ["y:0"]),
        ),
        (
            "regress regress_x_to_y2",
            regress("default", "regress_x_to_y2", good),
            ("default", {"tf_example:0": strings}, ["y2:0"]),
        ),
        (
            "regress regress_x2_to_y3 (examples into a float tensor)",
            regress("default", "regress_x2_to_y3", good),
            ("default", {"x2:0": strings}, ["y3:0"]),
        ),
        (
            "regress regress_x_to_y, x2 as int64",
            regress("default", "regress_x_to_y", [example(x=[1.0], x2=[3])]),
            ("default", {"tf_example:0": np.array([example(x=[1.0], x2=[3])], dtype=object)}, ["y:0"]),
        ),
        (
            "regress regress_x_to_y, x missing",
            regress("default", "regress_x_to_y", [example(x2=[1.0])]),
            ("default", {"tf_example:0": np.array([example(x2=[1.0])], dtype=object)}, ["y:0"]),
        ),
        (
            "regress regress_x_to_y2, two x values",
            regress("default", "regress_x_to_y2", [example(x=[1.0, 2.0])]),
            ("default", {"tf_example:0": np.array([example(x=[1.0, 2.0])], dtype=object)}, ["y2:0"]),
        ),
        (
            "multi inference regress_x_to_y, regress_x_to_y2, classify_x_to_y",
            multi(
                "default",
                [("regress_x_to_y", "regress"), ("regress_x_to_y2", "regress"), ("classify_x_to_y", "classify")],
                good,
            ),
            ("default", {"tf_example:0": strings}, ["y:0", "y2:0", "y:0"]),
        ),
        (
            "multi inference regress_x_to_y, regress_x2_to_y3",
            multi("default", [("regress_x_to_y", "regress"), ("regress_x2_to_y3", "regress")], good),
            ("default", {"tf_example:0": strings, "x2:0": strings}, ["y:0", "y3:0"]),
        ),
        (
            "half_plus_three predict serving_default",
            predict("three", "", "x", column, "y"),
            ("three", {"x:0": column}, ["y:0"]),
        ),
        (
            "half_plus_three regress tensorflow/serving/regress",
            regress("three", "tensorflow/serving/regress", good),
            ("three", {"tf_example:0": strings}, ["Identity:0"]),
        ),
        (
            "half_plus_three predict tensorflow/serving/regress, strings",
            predict("three", "tensorflow/serving/regress", "inputs", strings, "outputs"),
            ("three", {"tf_example:0": strings}, ["Identity:0"]),
        ),
        (
            "half_plus_three predict tensorflow/serving/regress, floats",
            predict("three", "tensorflow/serving/regress", "inputs", column, "outputs"),
            ("three", {"tf_example:0": column}, ["Identity:0"]),
        ),
    ]


def same(a: list[np.ndarray] | str, b: list[np.ndarray] | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def main() -> int:
    source = Path(sys.argv[1])
    testdata = source / TESTDATA
    from tfs_traffic.sim.server import Sim

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "models.config"
        entries = "".join(
            f'  config {{ name: "{name}" base_path: "{testdata / directory}" model_platform: "tensorflow" }}\n'
            for name, directory in MODELS.items()
        )
        config.write_text(f"model_config_list {{\n{entries}}}\n")
        with Sim(config, poll_seconds=0) as sim, grpc.insecure_channel(sim.grpc_target) as channel:
            import urllib.request

            with urllib.request.urlopen(f"{sim.rest_url}/v1/models/default/metadata", timeout=20) as response:
                body = response.read().decode()
            expected = (testdata / "half_plus_two_model_metadata.json").read_bytes()
            got = (json.dumps(json.loads(body), indent=1) + "\n").encode()
            equal = got == expected
            ok &= equal
            print(
                f"metadata: GET /v1/models/default/metadata re-indented {'equals' if equal else 'DIFFERS FROM'} "
                f"{TESTDATA / 'half_plus_two_model_metadata.json'} byte for byte ({len(got)} and {len(expected)} bytes)"
            )

            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for name, directory in MODELS.items():
                saved = saved_model_pb2.SavedModel.FromString(
                    (testdata / directory / VERSION_DIR / "saved_model.pb").read_bytes()
                )
                want = dict(saved.meta_graphs[0].signature_def)
                response = stub.GetModelMetadata(
                    get_model_metadata_pb2.GetModelMetadataRequest(
                        model_spec={"name": name}, metadata_field=["signature_def"]
                    )
                )
                sigs = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(sigs)
                equal = dict(sigs.signature_def) == want
                ok &= equal
                print(
                    f"signature defs: {directory}: GetModelMetadata {'equals' if equal else 'DIFFERS FROM'} "
                    f"saved_model.pb's {len(want)} signature defs"
                )

            import tensorflow as tf_root

            tf = TensorFlow(testdata)
            differing = []
            all_cases = cases(stub)
            for what, sim_answer, (model, feeds, fetches) in all_cases:
                a = sim_answer()
                b = tf.run(model, feeds, fetches)
                if not same(a, b):
                    differing.append((what, a, b))
            ok &= not differing
            print(
                f"results: TensorFlow {tf_root.__version__} running the SavedModels against the sim: "
                f"{len(all_cases) - len(differing)} of {len(all_cases)} cases equal "
                "(values and shapes, or the error message)"
            )
            for what, a, b in differing:
                print(f"  DIFFERS {what}:\n    sim:        {a!r}\n    TensorFlow: {b!r}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
