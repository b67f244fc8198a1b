"""The stand-in TF Serving's service layer, shared by its gRPC and REST front ends.

Each inference function follows TF Serving's `*WithModelSpec` functions: resolve the ModelSpec
(`ServerCore::GetServableHandle`), count the call for the resolved version exactly where the
patch of docs/metrics.md counts it (right after resolution, before the model runs and whether
or not it then fails), then run the servable's model (`half_plus_two`: half_plus_two, or half_plus_three
for a base path that holds it). Model time (`--latency-ms`) is spent by the async front ends after a
successful run, inside `ServerCore.request()`: the request holds the serving map it resolved against
until then, as a TF Serving request holds its servable handle.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfs_traffic.sim import half_plus_two
from tfs_traffic.sim.core import Resolved, ServerCore
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.half_plus_two import Model, Tensor


@dataclass(frozen=True)
class Spec:
    """A ModelSpec as plain values (gRPC's message or REST's URL)."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""


def spec_from_proto(model_spec: Any) -> Spec:
    choice = model_spec.WhichOneof("version_choice")
    return Spec(
        name=model_spec.name,
        version=model_spec.version.value if choice == "version" else None,
        label=model_spec.version_label if choice == "version_label" else None,
        signature_name=model_spec.signature_name,
    )


@dataclass
class Result:
    """What an inference produced, for the front end to encode."""

    resolved: Resolved
    signature_name: str  # the key that ran (default filled in)
    values: Any  # predict: {alias: ndarray}; classify/regress: ndarray [N, 1]


DEADLINE_MESSAGE = "Timed out waiting for notification"  # DirectSession::WaitForNotification


class SimService:
    """Inference and metadata over a ServerCore.

    `tensor_content` is `--enable_serialization_as_tensor_content`: Predict answers over gRPC carry
    their tensors as `tensor_content` (`PredictResponseTensorSerializationOption::kAsProtoContent`).
    """

    def __init__(self, core: ServerCore, protos: Any, tensor_content: bool = False) -> None:
        self.core = core
        self.protos = protos
        self.tensor_content = tensor_content
        self._metadata_any: dict[str, Any] = {}

    def model(self, resolved: Resolved) -> Model:
        """The model the resolved version was loaded from: its base path's (`half_plus_two.model_for_base_path`)."""
        return half_plus_two.model_for_version_path(resolved.path)

    def resolve(self, spec: Spec) -> Resolved:
        """A look-up that keeps no handle (REST's `GetInfoMap`, metadata)."""
        return self.core.resolve(spec.name, spec.version, spec.label, hold=False)

    def _resolve_and_count(self, spec: Spec) -> Resolved:
        resolved = self.core.resolve(spec.name, spec.version, spec.label)
        self.core.count_call(resolved)
        return resolved

    def predict(self, spec: Spec, inputs: Mapping[str, Tensor], output_filter: Sequence[str] = ()) -> Result:
        resolved = self._resolve_and_count(spec)
        model = self.model(resolved)
        key, sig = half_plus_two.signature_or_error(model, spec.signature_name)
        outputs = half_plus_two.predict(self.protos, model, sig, inputs, output_filter)
        return Result(resolved, key, outputs)

    def _examples(self, spec: Spec, request_input: Any, classify: bool) -> Result:
        """Classify or Regress: the signature and its checks, the examples, then the graph."""
        resolved = self._resolve_and_count(spec)
        model = self.model(resolved)
        key, sig = half_plus_two.classify_or_regress_signature(self.protos, model, spec.signature_name, classify)
        examples = half_plus_two.input_examples(self.protos, request_input)
        return Result(resolved, key, half_plus_two.run_examples(self.protos, model, sig, examples))

    def classify(self, spec: Spec, request_input: Any) -> Result:
        return self._examples(spec, request_input, classify=True)

    def regress(self, spec: Spec, request_input: Any) -> Result:
        return self._examples(spec, request_input, classify=False)

    def multi_inference(self, request: Any) -> tuple[Resolved, list[tuple[Any, str, str, np.ndarray]]]:
        """`RunMultiInferenceWithServerCore`: (resolved, [(task spec, method, signature key, output)]).

        Every task's input tensor is fed the same examples in one run (`PerformOneShotTensorComputation`
        with the set of input names) and each task reads its own output tensor.
        """
        first = request.tasks[0].model_spec if request.tasks and request.tasks[0].HasField("model_spec") else None
        resolved = self._resolve_and_count(spec_from_proto(first) if first is not None else Spec(""))
        model = self.model(resolved)
        model_name = ""
        seen: set[str] = set()
        plan: list[tuple[Any, str, str, str]] = []
        feeds: set[str] = set()
        for task in request.tasks:
            if not task.model_spec.name:
                raise SimError(Code.INVALID_ARGUMENT, "Found ModelSpec with an empty model name.")
            if not model_name:
                model_name = task.model_spec.name
            elif model_name != task.model_spec.name:
                raise SimError(
                    Code.INVALID_ARGUMENT, "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            key = task.model_spec.signature_name or half_plus_two.DEFAULT_SIGNATURE
            if key in seen:
                raise SimError(Code.INVALID_ARGUMENT, f"Duplicate evaluation of signature: {key}")
            seen.add(key)
            sig = model.signatures.get(key)
            if sig is None:
                raise SimError(Code.INVALID_ARGUMENT, f"Requested signature not found in model graph: {key}")
            if task.method_name == half_plus_two.CLASSIFY_METHOD:
                half_plus_two.check_classify_signature(self.protos, sig)
            elif task.method_name == half_plus_two.REGRESS_METHOD:
                half_plus_two.check_regress_signature(self.protos, sig)
            else:
                raise SimError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
            feeds.add(sig.inputs["inputs"].tensor_name)
            (output,) = sig.outputs.values()
            plan.append((task.model_spec, task.method_name, key, output.tensor_name))
        examples = half_plus_two.input_examples(self.protos, request.input)
        feed = Tensor(half_plus_two.DT_STRING, (len(examples),), examples)
        fetches = sorted({name for *_, name in plan})
        values = dict(
            zip(fetches, half_plus_two.run(self.protos, model, dict.fromkeys(feeds, feed), fetches), strict=True)
        )
        return resolved, [(spec, method, key, values[name]) for spec, method, key, name in plan]

    def metadata(self, spec: Spec, fields: Sequence[str]) -> tuple[Resolved, Any]:
        """`GetModelMetadataWithModelSpec`: (resolved, Any-packed SignatureDefMap). Never counted."""
        if not fields:
            raise SimError(Code.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise SimError(Code.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        resolved = self.resolve(spec)
        model = self.model(resolved)
        packed = self._metadata_any.get(model.name)
        if packed is None:
            from google.protobuf import any_pb2

            packed = any_pb2.Any()
            packed.Pack(half_plus_two.signature_def_map(self.protos, model))
            self._metadata_any[model.name] = packed
        return resolved, packed


class Transport:
    """What the gRPC and REST front ends share: the service and the simulated model time."""

    def __init__(self, service: SimService, latency_s: float) -> None:
        self.service = service
        self.protos = service.protos
        self.latency_s = latency_s

    async def _model_time(self, model_name: str | None = None, api: str = "", timeout_s: float | None = None) -> None:
        """Spend the model's run time; for Predict/Classify/Regress (`api` given) record it as
        `runtime_latency`, as `predict_util.cc`/`classifier.cc`/`regressor.cc` do after a run.

        A run longer than `timeout_s` (REST's `--rest_api_timeout_in_ms`, the session's
        `RunOptions.timeout_in_ms`) stops there with DEADLINE_EXCEEDED."""
        start = time.perf_counter()
        if timeout_s is not None and self.latency_s > timeout_s:
            await asyncio.sleep(timeout_s)
            raise SimError(Code.DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if model_name is not None:
            self.service.core.stock.runtime_latency(model_name, api, (time.perf_counter() - start) * 1e6)


async def in_thread(function: Callable[[], Any]) -> Any:
    """Run a blocking call (a reload that waits for new models, the startup wait) on its own daemon
    thread: one that may never return must not hold up the interpreter's exit, as the default
    executor's threads would."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        error: BaseException | None = None
        result = None
        try:
            result = function()
        except BaseException as e:  # handed to the awaiting coroutine
            error = e
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="tfs-traffic-sim-call", daemon=True).start()
    return await future
