"""The TF Serving API protos the stand-in server needs, and how to import them cheaply.

`tensorflow-serving-api`'s messages import TensorFlow's own protos (`tensorflow.core.framework...`).
Importing those runs `tensorflow/__init__.py`, which loads all of TensorFlow (seconds, hundreds of
MB). A process that only serves protos (the `tfs-traffic sim` command) can skip that: with
`light=True` the `tensorflow` package is entered as a bare namespace whose `__path__` is the real
one, so only the generated `*_pb2.py` files run. Never use `light=True` in a process that may
import TensorFlow itself afterwards (tests do): its `tensorflow` module would be the bare one.
"""

import importlib
import importlib.util
import sys
import types
from typing import Any

from tfs_traffic.errors import ToolError

_MODULES = {
    "predict": "tensorflow_serving.apis.predict_pb2",
    "classification": "tensorflow_serving.apis.classification_pb2",
    "regression": "tensorflow_serving.apis.regression_pb2",
    "inference": "tensorflow_serving.apis.inference_pb2",
    "input": "tensorflow_serving.apis.input_pb2",
    "model": "tensorflow_serving.apis.model_pb2",
    "get_model_metadata": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status": "tensorflow_serving.apis.get_model_status_pb2",
    "model_management": "tensorflow_serving.apis.model_management_pb2",
    "prediction_service_grpc": "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "model_service_grpc": "tensorflow_serving.apis.model_service_pb2_grpc",
    "model_server_config": "tensorflow_serving.config.model_server_config_pb2",
    "tensor": "tensorflow.core.framework.tensor_pb2",
    "types": "tensorflow.core.framework.types_pb2",
    "meta_graph": "tensorflow.core.protobuf.meta_graph_pb2",
    "example": "tensorflow.core.example.example_pb2",
    "feature": "tensorflow.core.example.feature_pb2",
    "error_codes": "tensorflow.core.protobuf.error_codes_pb2",
}


class Protos(types.SimpleNamespace):
    """Attribute access to the modules above, e.g. `protos.predict.PredictRequest`."""

    predict: Any
    classification: Any
    regression: Any
    inference: Any
    input: Any
    model: Any
    get_model_metadata: Any
    get_model_status: Any
    model_management: Any
    prediction_service_grpc: Any
    model_service_grpc: Any
    model_server_config: Any
    tensor: Any
    types: Any
    meta_graph: Any
    example: Any
    feature: Any
    error_codes: Any


_loaded: Protos | None = None


def _enter_tensorflow_namespace() -> None:
    if "tensorflow" in sys.modules:
        return
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return
    module = types.ModuleType("tensorflow")
    module.__path__ = list(spec.submodule_search_locations)
    module.__file__ = None
    sys.modules["tensorflow"] = module


def load(light: bool = False) -> Protos:
    """Import the protos once; ToolError with the fix when a package is missing."""
    global _loaded
    if _loaded is not None:
        return _loaded
    if light:
        _enter_tensorflow_namespace()
    try:
        mods = {key: importlib.import_module(name) for key, name in _MODULES.items()}
    except ImportError as e:
        raise ToolError(
            f"tfs-traffic sim needs TF Serving's API protos ({e}): "
            "pip install tensorflow-cpu and pip install --no-deps tensorflow-serving-api"
        ) from None
    _loaded = Protos(**mods)
    return _loaded
