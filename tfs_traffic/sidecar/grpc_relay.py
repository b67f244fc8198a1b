"""gRPC calls seen in a relayed HTTP/2 connection, counted as docs/metrics.md says.

For each stream whose `:path` is Predict, Classify, Regress or MultiInference the observer keeps
the request's first message's `model_spec` and the response's (the version that served the call),
read by `protoscan` beside the copy, and the call's status: `grpc-status` of the trailers or of a
trailers-only response; an RST_STREAM; the connection ending under it. The call is counted when
its response ends, timed from its request headers. Every other stream is only followed (its
header blocks decoded for HPACK's sake, its DATA skipped by length).

When the upstream cannot be reached the relay has no server to forward to: `Refuser` then answers
the client itself, as a minimal HTTP/2 server whose every call ends UNAVAILABLE, counted like any
other failed call, and closes the connection with GOAWAY once idle so that the client's next call
opens a new connection (which tries the upstream again).
"""

import time
import urllib.parse
from collections.abc import Callable

import hpack

from tfs_traffic.contract import OTHER, UNRESOLVED
from tfs_traffic.sidecar import http2, wire
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.protoscan import MessageReader
from tfs_traffic.sidecar.relay import Refusal
from tfs_traffic.sidecar.view import View, ViewHolder

PREDICTION = "/tensorflow.serving.PredictionService/"
COUNTED = {
    (PREDICTION + "Predict").encode(): "predict",
    (PREDICTION + "Classify").encode(): "classify",
    (PREDICTION + "Regress").encode(): "regress",
    (PREDICTION + "MultiInference").encode(): "multi_inference",
}
CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
_STATUS_NAMES = {str(i).encode(): name for i, name in enumerate(CODES)}
# What a gRPC client makes of an HTTP status without grpc-status (grpc's http-grpc-status-mapping.md).
_HTTP_CODES = {
    b"400": "INTERNAL",
    b"401": "UNAUTHENTICATED",
    b"403": "PERMISSION_DENIED",
    b"404": "UNIMPLEMENTED",
    b"429": "UNAVAILABLE",
    b"502": "UNAVAILABLE",
    b"503": "UNAVAILABLE",
    b"504": "UNAVAILABLE",
}
# ... and of an RST_STREAM error code (grpc's PROTOCOL-HTTP2.md).
_RST_CODES = {0x7: "UNAVAILABLE", 0x8: "CANCELLED", 0xB: "RESOURCE_EXHAUSTED", 0xC: "PERMISSION_DENIED"}
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}

Pairs = list[tuple[str, str]]


def _spec_field(api: str, response: bool) -> tuple[int, int]:
    """(spec field, outer field) of the API's request or response message (wire.py lists them)."""
    if api == "multi_inference":
        return 1, 1
    return (2 if response else 1), 0


_SPEC_FIELDS = {api: (_spec_field(api, False), _spec_field(api, True)) for api in COUNTED.values()}


def served_pairs(view: View, api: str, request: MessageReader, response: MessageReader) -> Pairs:
    """(model, version) labels of a successful call, from the response's model_spec."""
    if api == "multi_inference":
        pairs = {view.served(s.name, s.version) for s in response.specs() or [] if s.version is not None}
        if pairs:
            return sorted(pairs)
        fallback = {_served_from_request(view, s) for s in request.specs() or []}
        return sorted(fallback) or [(OTHER, UNRESOLVED)]
    spec = response.spec()
    if spec is not None and spec.version is not None:
        return [view.served(spec.name, spec.version)]
    request_spec = request.spec()  # an upstream that does not fill in model_spec
    return [_served_from_request(view, request_spec) if request_spec else (OTHER, UNRESOLVED)]


def _served_from_request(view: View, spec: wire.ModelSpec) -> tuple[str, str]:
    return view.served(spec.name, view.resolved_version(spec.name, spec.version, spec.version_label))


def requested_pairs(view: View, api: str, request: MessageReader) -> Pairs:
    """(model, version) labels of a failed call, from what the request asked for."""
    if api == "multi_inference":
        pairs = {view.requested(s.name, s.version, s.version_label) for s in request.specs() or []}
        return sorted(pairs) or [(OTHER, UNRESOLVED)]
    spec = request.spec()
    if spec is None:
        return [(OTHER, UNRESOLVED)]
    return [view.requested(spec.name, spec.version, spec.version_label)]


def _timeout(value: bytes) -> float | None:
    """grpc-timeout in seconds ("100m" is 0.1 s), None if unreadable."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8:
        return None
    return int(digits) * unit


def _request_memo(fields: http2.Fields) -> tuple[str | None, float | None]:
    """(api, grpc-timeout in seconds) of a request header block; api None for methods not counted."""
    path = timeout = None
    for name, value in fields:
        if name == b":path":
            path = value
        elif name == b"grpc-timeout":
            timeout = _timeout(value)
    return (COUNTED.get(path) if path is not None else None), timeout


def _response_memo(fields: http2.Fields) -> tuple[str | None, str | None]:
    """(code from a :status other than 200, code from grpc-status) of a response header block."""
    http_code = grpc_code = None
    for name, value in fields:
        if name == b"grpc-status":
            grpc_code = _STATUS_NAMES.get(value, "UNKNOWN")
        elif name == b":status" and value != b"200":
            http_code = _HTTP_CODES.get(value, "UNKNOWN")
    return http_code, grpc_code


class Call:
    """One counted stream: what its request asked, what its response said."""

    __slots__ = ("api", "deadline", "request", "response", "response_started", "started", "status")

    def __init__(self, api: str, started: float, deadline: float | None) -> None:
        self.api = api
        self.started = started
        self.deadline = deadline
        (field, outer), (response_field, response_outer) = _SPEC_FIELDS[api]
        self.request = MessageReader(field, outer, lazy=True)
        self.response = MessageReader(response_field, response_outer)
        self.response_started = False
        self.status: str | None = None  # from HTTP :status while no grpc-status came


class GrpcObserver:
    """Counts the calls of one relayed connection (`http2.Observer`)."""

    __slots__ = ("calls", "clock", "connection", "holder", "metrics")
    answers = False  # a `Refuser` answers the client itself and so reads every frame

    def __init__(self, holder: ViewHolder, metrics: CallMetrics, clock: Callable[[], float] = time.perf_counter):
        self.holder = holder
        self.metrics = metrics
        self.clock = clock
        self.calls: dict[int, Call] = {}
        self.connection = http2.Connection(self, frame_hook=self.answers)

    def client_data(self, data: bytes) -> None:
        self.connection.client_data(data)

    def server_data(self, data: bytes) -> None:
        self.connection.server_data(data)

    # --- http2.Observer -------------------------------------------------------------------

    def headers(self, from_client: bool, stream: int, fields: http2.Fields, end_stream: bool) -> None:
        if from_client:
            if stream in self.calls:
                return  # request trailers
            memo = fields.memo
            if memo is None:
                memo = fields.memo = _request_memo(fields)
            api, timeout = memo
            if api is not None:
                now = self.clock()
                self.calls[stream] = Call(api, now, None if timeout is None else now + timeout)
            return
        call = self.calls.get(stream)
        if call is None:
            return
        memo = fields.memo
        if memo is None:
            memo = fields.memo = _response_memo(fields)
        http_code, grpc_code = memo
        if not call.response_started:
            call.response_started = True
            if http_code is not None:
                call.status = http_code
        if grpc_code is not None:
            call.status = grpc_code

    def data_sink(self, from_client: bool, stream: int) -> http2.DataSink | None:
        call = self.calls.get(stream)
        if call is None:
            return None
        reader = call.request if from_client else call.response
        return None if reader.done else reader

    def end_stream(self, from_client: bool, stream: int) -> None:
        if from_client:
            return
        call = self.calls.pop(stream, None)
        if call is not None:
            self._finish(call, call.status or "UNKNOWN")  # no grpc-status at all: the client says UNKNOWN

    def reset(self, from_client: bool, stream: int, code: int) -> None:
        call = self.calls.pop(stream, None)
        if call is None:
            return
        if from_client:
            late = call.deadline is not None and self.clock() >= call.deadline
            self._finish(call, "DEADLINE_EXCEEDED" if late else "CANCELLED")
        else:
            self._finish(call, _RST_CODES.get(code, "INTERNAL"))

    def goaway(self, from_client: bool, last_stream: int, code: int) -> None:
        if from_client:
            return
        # Streams the server never processed: the client retries them elsewhere (or fails them).
        for stream in [s for s in self.calls if s > last_stream]:
            del self.calls[stream]

    def frame(self, from_client: bool, kind: int, flags: int, stream: int, length: int, payload: bytes | None) -> None:
        """Only a `Refuser` looks at every frame."""

    def unanswered(self) -> bool:
        """Never: a gRPC client sees its calls end UNAVAILABLE when the connection goes, so the relay does
        not answer for the upstream."""
        return False

    def answer_point(self) -> int:
        """Bytes the upstream must still send before the relay may put a frame of its own to the client
        (`relay.Answering`): the reader of the upstream's side knows where its frames end."""
        return self.connection.directions[False].to_boundary()

    # --- the end of the connection -----------------------------------------------------------

    def closed(self, by_upstream: bool, upstream_ended: bool = False) -> None:
        """The connection is over: calls still open end as their client sees them.

        `by_upstream`: the upstream ended it (UNAVAILABLE), not the client (CANCELLED).
        """
        calls, self.calls = self.calls, {}
        for call in calls.values():
            self._finish(call, "UNAVAILABLE" if by_upstream else "CANCELLED")

    def abandon(self) -> None:
        """Parsing failed: stop counting this connection."""
        self.calls.clear()

    def _finish(self, call: Call, code: str) -> None:
        seconds = self.clock() - call.started
        view = self.holder.view
        if code == "OK":
            pairs = served_pairs(view, call.api, call.request, call.response)
        else:
            pairs = requested_pairs(view, call.api, call.request)
        record = self.metrics.record
        for model, version in pairs:
            record(model, version, call.api, code, seconds)


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3) + bytes((kind, flags)) + stream.to_bytes(4) + payload


class Refuser(GrpcObserver):
    """Answers the client itself while the upstream is unreachable: every call ends UNAVAILABLE."""

    __slots__ = ("done", "encoder", "last_stream", "open", "refusal", "trailers")
    answers = True

    def __init__(self, holder: ViewHolder, metrics: CallMetrics, refusal: Refusal) -> None:
        super().__init__(holder, metrics)
        self.refusal = refusal
        self.encoder = hpack.Encoder()
        message = urllib.parse.quote(f"tfs-traffic sidecar: upstream unavailable: {refusal.reason}", safe=" :/.,()'")
        self.trailers = [
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", b"14"),
            (b"grpc-message", message.encode()),
        ]
        self.open: set[int] = set()
        self.last_stream = 0
        self.done = False
        refusal.write(_frame(http2.SETTINGS, 0, 0, b""))

    def headers(self, from_client: bool, stream: int, fields: http2.Fields, end_stream: bool) -> None:
        super().headers(from_client, stream, fields, end_stream)
        if from_client and stream not in self.open and stream > self.last_stream:
            self.open.add(stream)
            self.last_stream = stream

    def end_stream(self, from_client: bool, stream: int) -> None:
        if not from_client or stream not in self.open:
            return
        self.open.discard(stream)
        block = self.encoder.encode(self.trailers, huffman=False)
        self.refusal.write(_frame(http2.HEADERS, http2.FLAG_END_HEADERS | http2.FLAG_END_STREAM, stream, block))
        call = self.calls.pop(stream, None)
        if call is not None:
            self._finish(call, "UNAVAILABLE")
        self.idle()

    def reset(self, from_client: bool, stream: int, code: int) -> None:
        self.open.discard(stream)
        super().reset(from_client, stream, code)
        self.idle()

    def frame(self, from_client: bool, kind: int, flags: int, stream: int, length: int, payload: bytes | None) -> None:
        if kind == http2.SETTINGS and not flags & http2.FLAG_ACK and payload is not None:
            for i in range(0, len(payload) - len(payload) % 6, 6):
                if int.from_bytes(payload[i : i + 2]) == http2.SETTINGS_HEADER_TABLE_SIZE:
                    self.encoder.header_table_size = min(int.from_bytes(payload[i + 2 : i + 6]), 4096)
            self.refusal.write(_frame(http2.SETTINGS, http2.FLAG_ACK, 0, b""))
        elif kind == http2.PING and not flags & http2.FLAG_ACK and payload is not None:
            self.refusal.write(_frame(http2.PING, http2.FLAG_ACK, 0, payload))
        elif kind == http2.DATA and length:
            # Take the request's bytes as if consumed, so that a large one can finish.
            increment = length.to_bytes(4)
            self.refusal.write(
                _frame(http2.WINDOW_UPDATE, 0, 0, increment) + _frame(http2.WINDOW_UPDATE, 0, stream, increment)
            )

    def idle(self, force: bool = False) -> None:
        """No call open: say goodbye, so that the client's next call makes a new connection.

        `force`: also a connection that has made no call yet (the relay's idle timer).
        """
        if not self.open and (self.last_stream or force) and not self.done:
            self.done = True
            self.refusal.write(_frame(http2.GOAWAY, 0, 0, self.last_stream.to_bytes(4) + bytes(4)))
            self.refusal.close()
