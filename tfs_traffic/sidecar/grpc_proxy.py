"""The transparent gRPC proxy: raw bytes in, raw bytes out, one count per inference call.

Every method of every service is forwarded through generic handlers that never deserialize: the
request bytes, the invocation metadata and the remaining deadline go to the upstream; the response
bytes, initial and trailing metadata, status code and details come back unchanged. TF Serving's
own methods are unary and take the fast unary path; any other method is forwarded as a stream
(which carries unary calls too), so unknown or future methods pass through.

Predict, Classify, Regress and MultiInference are counted: the version comes from the response's
`model_spec` (the version that served the call), or for a failed call from the request's.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from tfs_traffic.contract import OTHER, UNRESOLVED
from tfs_traffic.sidecar import wire
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.poller import UPSTREAM_CHANNEL_OPTIONS
from tfs_traffic.sidecar.view import View

PREDICTION = "/tensorflow.serving.PredictionService/"
MODEL_SERVICE = "/tensorflow.serving.ModelService/"

# Inference methods and their `api` label. MultiInference carries one model_spec per task/result.
COUNTED = {
    PREDICTION + "Predict": "predict",
    PREDICTION + "Classify": "classify",
    PREDICTION + "Regress": "regress",
    PREDICTION + "MultiInference": "multi_inference",
}
# TF Serving's other methods, all unary: forwarded but not counted.
UNARY = {PREDICTION + "GetModelMetadata", MODEL_SERVICE + "GetModelStatus", MODEL_SERVICE + "HandleReloadConfigRequest"}

# The server side: no message size limits (TF Serving sets none).
SERVER_OPTIONS = (("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1))

# Metadata that gRPC sets itself on the outgoing call.
_DROPPED_METADATA = frozenset({"user-agent"})
_MAX_CACHED_METHODS = 256

Pairs = list[tuple[str, str]]


class ViewHolder:
    """The worker's current View, replaced when the supervisor publishes a new one."""

    def __init__(self, view: View | None = None) -> None:
        self.view = view or View()


def _forward_metadata(context: Any) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in context.invocation_metadata() or () if k not in _DROPPED_METADATA)


def _timeout(context: Any) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(remaining, 0.0)


def served_pairs(view: View, api: str, request: bytes, response: bytes) -> Pairs:
    """(model, version) labels of a successful call, from the response's model_spec."""
    if api == "multi_inference":
        specs = wire.multi_inference_response_specs(response) or []
        pairs = {view.served(s.name, s.version) for s in specs if s.version is not None}
        if pairs:
            return sorted(pairs)
        tasks = wire.multi_inference_request_specs(request) or []
        fallback = {_served_from_request(view, s) for s in tasks}
        return sorted(fallback) or [(OTHER, UNRESOLVED)]
    spec = wire.response_spec(response)
    if spec is not None and spec.version is not None:
        return [view.served(spec.name, spec.version)]
    request_spec = wire.request_spec(request)  # an upstream that does not fill in model_spec
    return [_served_from_request(view, request_spec) if request_spec else (OTHER, UNRESOLVED)]


def _served_from_request(view: View, spec: wire.ModelSpec) -> tuple[str, str]:
    return view.served(spec.name, view.rest_version(spec.name, spec.version, spec.version_label))


def requested_pairs(view: View, api: str, request: bytes) -> Pairs:
    """(model, version) labels of a failed call, from what the request asked for."""
    if api == "multi_inference":
        tasks = wire.multi_inference_request_specs(request) or []
        pairs = {view.requested(s.name, s.version, s.version_label) for s in tasks}
        return sorted(pairs) or [(OTHER, UNRESOLVED)]
    spec = wire.request_spec(request)
    if spec is None:
        return [(OTHER, UNRESOLVED)]
    return [view.requested(spec.name, spec.version, spec.version_label)]


class ProxyHandler(grpc.GenericRpcHandler):
    """Generic handler for every method; the method handlers are cached per method name."""

    def __init__(self, channel: grpc.aio.Channel, holder: ViewHolder, metrics: CallMetrics) -> None:
        self._channel = channel
        self._holder = holder
        self._metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = self._make(method)
            if method in COUNTED or method in UNARY or len(self._handlers) < _MAX_CACHED_METHODS:
                self._handlers[method] = handler
        return handler

    def _make(self, method: str) -> grpc.RpcMethodHandler:
        if method in COUNTED:
            return grpc.unary_unary_rpc_method_handler(self._counted(method, COUNTED[method]))
        if method in UNARY:
            return grpc.unary_unary_rpc_method_handler(self._unary(method))
        return grpc.stream_stream_rpc_method_handler(self._stream(method))

    def _unary(self, method: str) -> Callable[..., Any]:
        upstream = self._channel.unary_unary(method)

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes | None:
            call = upstream(request, timeout=_timeout(context), metadata=_forward_metadata(context))
            try:
                response = await call
            except grpc.aio.AioRpcError as e:
                await _return_error(context, e)
                return None
            await _return_metadata(context, call)
            return response

        return forward

    def _counted(self, method: str, api: str) -> Callable[..., Any]:
        upstream = self._channel.unary_unary(method)
        holder = self._holder
        record = self._metrics.record

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes | None:
            started = time.perf_counter()
            call = upstream(request, timeout=_timeout(context), metadata=_forward_metadata(context))
            try:
                response = await call
            except grpc.aio.AioRpcError as e:
                seconds = time.perf_counter() - started
                code = e.code()
                for model, version in requested_pairs(holder.view, api, request):
                    record(model, version, api, code.name, seconds)
                await _return_error(context, e)
                return None
            except asyncio.CancelledError:  # the client went away: the upstream call is cancelled too
                seconds = time.perf_counter() - started
                for model, version in requested_pairs(holder.view, api, request):
                    record(model, version, api, "CANCELLED", seconds)
                raise
            seconds = time.perf_counter() - started
            for model, version in served_pairs(holder.view, api, request, response):
                record(model, version, api, "OK", seconds)
            await _return_metadata(context, call)
            return response

        return forward

    def _stream(self, method: str) -> Callable[..., Any]:
        """A method we do not know: one request message, any number of responses.

        Every TF Serving method is unary; server streaming passes through as well. The request is
        sent with its end-of-stream in one batch: writing it separately races with an upstream that
        answers before reading (UNIMPLEMENTED), which grpcio then reports as INTERNAL.
        """
        upstream = self._channel.unary_stream(method)

        async def forward(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            try:
                request = await requests.__anext__()
            except StopAsyncIteration:
                context.set_code(grpc.StatusCode.UNIMPLEMENTED)
                context.set_details("tfs-traffic sidecar: a call without a request message cannot be forwarded")
                return
            call = upstream(request, timeout=_timeout(context), metadata=_forward_metadata(context))
            try:
                initial = await call.initial_metadata()
                if initial:
                    await context.send_initial_metadata(initial)
                async for response in call:
                    yield response
                await _return_trailers(context, call)
            except grpc.aio.AioRpcError as e:
                await _return_error(context, e)

        return forward


async def _return_metadata(context: grpc.aio.ServicerContext, call: Any) -> None:
    """Initial and trailing metadata (and any details) of a successful upstream call."""
    initial = await call.initial_metadata()
    if initial:
        await context.send_initial_metadata(initial)
    await _return_trailers(context, call)


async def _return_trailers(context: grpc.aio.ServicerContext, call: Any) -> None:
    trailing = await call.trailing_metadata()
    if trailing:
        context.set_trailing_metadata(trailing)
    details = await call.details()
    if details:
        context.set_details(details)


async def _return_error(context: grpc.aio.ServicerContext, error: grpc.aio.AioRpcError) -> None:
    """The upstream's status, details and metadata, unchanged."""
    initial = error.initial_metadata()
    if initial:
        await context.send_initial_metadata(initial)
    trailing = error.trailing_metadata()
    if trailing:
        context.set_trailing_metadata(trailing)
    context.set_code(error.code())
    context.set_details(error.details() or "")


def upstream_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=UPSTREAM_CHANNEL_OPTIONS)


async def start_server(
    listen: str, upstream: str, holder: ViewHolder, metrics: CallMetrics, reuse_port: bool
) -> tuple[grpc.aio.Server, grpc.aio.Channel, int]:
    """Start the proxy server on `listen`; returns the server, its upstream channel and its port."""
    channel = upstream_channel(upstream)
    server = grpc.aio.server(options=(*SERVER_OPTIONS, ("grpc.so_reuseport", 1 if reuse_port else 0)))
    server.add_generic_rpc_handlers([ProxyHandler(channel, holder, metrics)])
    port = server.add_insecure_port(listen)
    await server.start()
    return server, channel, port
