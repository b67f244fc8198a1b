"""The stand-in TF Serving's gRPC API: PredictionService and ModelService on grpc.aio.

Messages are tensorflow-serving-api's own. Tensors are decoded only as far as the model needs
(numpy over `tensor_content` or `float_val`), and outputs are written the way TF Serving writes them
by default (`AsProtoField`: dtype, shape, packed `float_val`), assembled as bytes in one go.
"""

import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np

from tfs_traffic.sim import half_plus_two
from tfs_traffic.sim.core import State
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.half_plus_two import DT_FLOAT, DT_STRING, Tensor
from tfs_traffic.sim.service import SimService, Spec, Transport, in_thread, spec_from_proto

GRPC_CODES: dict[Code, grpc.StatusCode] = {Code(c.value[0]): c for c in grpc.StatusCode}


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        bits = n & 0x7F
        n >>= 7
        if n:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def float_tensor_bytes(values: np.ndarray, content: bool = False) -> bytes:
    """A serialized TensorProto {dtype: DT_FLOAT, tensor_shape, float_val (packed)} for `values`
    (`Tensor::AsProtoField`); with `content`, `tensor_content` instead (`AsProtoTensorContent`)."""
    shape = b"".join(
        b"\x12" + _varint(len(dim)) + dim for dim in ((b"\x08" + _varint(d)) if d else b"" for d in values.shape)
    )
    out = b"\x08\x01\x12" + _varint(len(shape)) + shape
    if values.size:
        data = np.ascontiguousarray(values, dtype="<f4").tobytes()
        out += (b"\x22" if content else b"\x2a") + _varint(len(data)) + data
    return out


def decode_tensor(proto: Any) -> Tensor:
    """`Tensor::FromProto` for the dtypes the model reads; other dtypes keep only their type."""
    dims = tuple(d.size for d in proto.tensor_shape.dim)
    n = int(np.prod(dims)) if dims else 1
    if any(d < 0 for d in dims):
        return Tensor(proto.dtype, dims, None, malformed=True)
    if proto.dtype == DT_FLOAT:
        if proto.tensor_content:
            content = proto.tensor_content
            if len(content) != 4 * n:
                return Tensor(DT_FLOAT, dims, None, malformed=True)
            return Tensor(DT_FLOAT, dims, np.frombuffer(content, dtype="<f4").reshape(dims))
        count = len(proto.float_val)
        if count == n:
            arr = np.array(proto.float_val, dtype=np.float32)
        elif count == 0:
            arr = np.zeros(n, dtype=np.float32)
        elif count < n:  # TF repeats the last value
            vals = np.array(proto.float_val, dtype=np.float32)
            arr = np.concatenate([vals, np.full(n - count, vals[-1], dtype=np.float32)])
        else:
            return Tensor(DT_FLOAT, dims, None, malformed=True)
        return Tensor(DT_FLOAT, dims, arr.reshape(dims))
    if proto.dtype == DT_STRING:
        strings = list(proto.string_val)
        if len(strings) == n:
            return Tensor(DT_STRING, dims, strings)
        if 0 < len(strings) < n:
            return Tensor(DT_STRING, dims, strings + [strings[-1]] * (n - len(strings)))
        if not strings:
            return Tensor(DT_STRING, dims, [b""] * n)
        return Tensor(DT_STRING, dims, None, malformed=True)
    return Tensor(proto.dtype, dims, None)


def fill_model_spec(target: Any, name: str, signature_name: str | None, version: int) -> None:
    """`MakeModelSpec`: name as requested, signature (empty -> serving_default), resolved version."""
    target.Clear()
    target.name = name
    if signature_name is not None:
        target.signature_name = signature_name or half_plus_two.DEFAULT_SIGNATURE
    target.version.value = version


class _Base(Transport):
    async def _fail(self, context: Any, error: SimError) -> Any:
        await context.abort(GRPC_CODES[error.code], error.grpc_message())


class PredictionServicer(_Base):
    """tensorflow.serving.PredictionService."""

    async def _counted(self, request: Any, context: Any, run: Callable[[], Any], api: str) -> Any:
        """`PredictionServiceImpl::Predict`/`Classify`/`Regress`: `request_count` for every call,
        `request_latency{API, entrypoint="GRPC"}` for the OK ones."""
        with self.service.core.request():
            return await self._counted_call(request, context, run, api)

    async def _counted_call(self, request: Any, context: Any, run: Callable[[], Any], api: str) -> Any:
        start = time.perf_counter()
        name = request.model_spec.name
        try:
            response = run()
        except SimError as e:
            self.service.core.count_request(name, e.code)
            return await self._fail(context, e)
        await self._model_time(name, api)
        self.service.core.stock.request_latency(name, api, "GRPC", (time.perf_counter() - start) * 1e6)
        self.service.core.count_request(name, Code.OK)
        return response

    async def Predict(self, request: Any, context: Any) -> Any:
        def run() -> Any:
            if not request.HasField("model_spec"):
                raise SimError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            inputs = {alias: decode_tensor(tp) for alias, tp in request.inputs.items()}
            result = self.service.predict(spec_from_proto(request.model_spec), inputs, list(request.output_filter))
            response = self.protos.predict.PredictResponse()
            fill_model_spec(
                response.model_spec, request.model_spec.name, result.signature_name, result.resolved.version
            )
            for alias, values in result.values.items():
                response.outputs[alias].MergeFromString(float_tensor_bytes(values, self.service.tensor_content))
            return response

        return await self._counted(request, context, run, "Predict")

    async def Classify(self, request: Any, context: Any) -> Any:
        def run() -> Any:
            if not request.HasField("model_spec"):
                raise SimError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            result = self.service.classify(spec_from_proto(request.model_spec), request.input)
            response = self.protos.classification.ClassificationResponse()
            fill_model_spec(
                response.model_spec, request.model_spec.name, result.signature_name, result.resolved.version
            )
            for row in result.values:
                response.result.classifications.add().classes.add(score=float(row[0]))
            return response

        return await self._counted(request, context, run, "Classify")

    async def Regress(self, request: Any, context: Any) -> Any:
        def run() -> Any:
            if not request.HasField("model_spec"):
                raise SimError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            result = self.service.regress(spec_from_proto(request.model_spec), request.input)
            response = self.protos.regression.RegressionResponse()
            fill_model_spec(
                response.model_spec, request.model_spec.name, result.signature_name, result.resolved.version
            )
            for row in result.values:
                response.result.regressions.add(value=float(row[0]))
            return response

        return await self._counted(request, context, run, "Regress")

    async def MultiInference(self, request: Any, context: Any) -> Any:
        with self.service.core.request():
            return await self._multi_inference(request, context)

    async def _multi_inference(self, request: Any, context: Any) -> Any:
        try:
            resolved, results = self.service.multi_inference(request)
        except SimError as e:
            return await self._fail(context, e)
        response = self.protos.inference.MultiInferenceResponse()
        for spec, method, _key, y in results:
            result = response.results.add()
            if method == half_plus_two.CLASSIFY_METHOD:
                for row in y:
                    result.classification_result.classifications.add().classes.add(score=float(row[0]))
            else:
                for row in y:
                    result.regression_result.regressions.add(value=float(row[0]))
            fill_model_spec(result.model_spec, spec.name, spec.signature_name, resolved.version)
        self.service.core.stock.example_count(resolved.name, len(results[0][3]))
        await self._model_time()
        return response

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            if not request.HasField("model_spec"):
                raise SimError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            resolved, packed = self.service.metadata(spec_from_proto(request.model_spec), list(request.metadata_field))
        except SimError as e:
            return await self._fail(context, e)
        response = self.protos.get_model_metadata.GetModelMetadataResponse()
        response.model_spec.name = resolved.name
        response.model_spec.version.value = resolved.version
        response.metadata["signature_def"].CopyFrom(packed)
        return response


def model_status_response(protos: Any, service: SimService, spec: Spec) -> Any:
    """GetModelStatusResponse for a spec (the label is ignored, as TF Serving ignores it)."""
    response = protos.get_model_status.GetModelStatusResponse()
    for version, state in service.core.version_states(spec.name, spec.version):
        entry = response.model_version_status.add(version=version, state=int(state))
        entry.status.SetInParent()
    return response


class ModelServicer(_Base):
    """tensorflow.serving.ModelService."""

    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        try:
            if not request.HasField("model_spec"):
                raise SimError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            return model_status_response(self.protos, self.service, spec_from_proto(request.model_spec))
        except SimError as e:
            return await self._fail(context, e)

    async def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:
        """`ModelServiceImpl::HandleReloadConfigRequest`: a model_config_list only, then `ReloadConfig`
        (which may wait for new models; it runs off the event loop). `metric_names` (2.15 and later):
        each name once, with the change of its first cell across the reload."""
        core = self.service.core
        names = list(dict.fromkeys(request.metric_names))  # a flat_hash_map: one entry per name
        before = core.metric_first_values(names)
        error: SimError | None = None
        if request.config.WhichOneof("config") != "model_config_list":
            error = SimError(
                Code.INVALID_ARGUMENT,
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported",
            )
        else:
            try:
                config = self.protos.model_server_config.ModelServerConfig()
                config.CopyFrom(request.config)
                await in_thread(lambda: core.reload_config(config))
            except SimError as e:
                error = e
        if error is not None:
            return await self._fail(context, error)
        after = core.metric_first_values(names)
        response = self.protos.model_management.ReloadConfigResponse()
        response.status.SetInParent()
        for name in names:
            response.metric.add(name=name, int64_value_increase=after[name] - before[name])
        return response


_HEALTH_SERVING = {"", "ModelService", "PredictionService"}


def health_handler() -> Any:
    """gRPC's default health service as `server.cc` turns it on with `--enable_grpc_healthcheck_service`:
    the default service ("") and `ModelService`, `PredictionService` (those names, unqualified) are
    SERVING; other names NOT_FOUND. Only `Check` (what a Kubernetes gRPC probe calls); requests and
    responses are `grpc.health.v1` messages, read and written as bytes."""

    async def check(request: bytes, context: Any) -> bytes:
        service = b""
        if request[:1] == b"\x0a":  # field 1, length-delimited: the service name
            size, start = request[1], 2
            if size & 0x80:
                size, start = (size & 0x7F) | (request[2] << 7), 3
            service = request[start : start + size]
        if service.decode("utf-8", "replace") not in _HEALTH_SERVING:
            await context.abort(grpc.StatusCode.NOT_FOUND, "service name unregistered")
        return b"\x08\x01"  # status: SERVING

    handler = grpc.unary_unary_rpc_method_handler(check)
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})


def add_servicers(server: Any, service: SimService, latency_s: float) -> None:
    """Register both services on a grpc.aio server."""
    protos = service.protos
    protos.prediction_service_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, latency_s), server
    )
    protos.model_service_grpc.add_ModelServiceServicer_to_server(ModelServicer(service, latency_s), server)


__all__ = ["State", "add_servicers", "decode_tensor", "float_tensor_bytes"]
