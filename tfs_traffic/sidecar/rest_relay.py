"""REST calls seen in a relayed HTTP/1.1 connection, counted as docs/metrics.md says.

`http1` frames the requests and responses beside the copy; each POST to TF Serving's inference
route (`:predict`, `:classify`, `:regress`) is counted when its response ends, timed from its
request's head. REST responses do not say which version served them, so the version is resolved
here (docs/metrics.md): `/versions/N` is N, `/labels/L` and no version go through the poller's
view. The HTTP status maps back to the gRPC status name that TF Serving turned into it, so both
protocols share the `code` label.

When the upstream cannot be reached, `Refuser` answers each request itself with a 503 and TF
Serving's error body shape, and closes the connection after it (the next request reconnects).
"""

import re
import time
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from tfs_traffic.contract import UNRESOLVED
from tfs_traffic.sidecar import http1
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.relay import Refusal
from tfs_traffic.sidecar.view import View, ViewHolder

# TF Serving's own route for inference calls (model_servers/http_rest_api_util.cc, 2.20.0).
PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)

# Inverse of TF Serving's ToHTTPStatusCode (model_servers/http_server.cc). Where several gRPC codes
# share one HTTP status, the most common one is named: 400 also covers FAILED_PRECONDITION and
# OUT_OF_RANGE, 409 also ALREADY_EXISTS, 500 also UNKNOWN and DATA_LOSS.
HTTP_TO_GRPC = {
    200: "OK",
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def grpc_code(status: int) -> str:
    """The gRPC status name for an HTTP status from TF Serving."""
    code = HTTP_TO_GRPC.get(status)
    if code is not None:
        return code
    if 200 <= status < 300:
        return "OK"
    return "INVALID_ARGUMENT" if 400 <= status < 500 else "UNKNOWN"


Inference = tuple[str, str, int | None, str | None]
_PATHS: dict[str, Inference | None] = {}  # a POST's target -> what it reads as (a client repeats its targets)
_PATHS_ENTRIES = 256
_PATHS_MAX_CHARS = 1024


def parse_inference_path(method: str, raw_path: str) -> tuple[str, str, int | None, str | None] | None:
    """(api, model name, version, label) of a REST inference call, None for anything else.

    `raw_path` is the request target as sent (percent-encoded, query included), matched as TF Serving
    does (`ParseModelInfo` full-matches the path *with* its query, so `:predict?x=1` is malformed there);
    the method must be lower case as TF Serving dispatches it, or the call is malformed upstream.
    """
    if method != "POST":
        return None
    try:
        return _PATHS[raw_path]
    except KeyError:
        pass
    inference = _parse_post_target(raw_path)
    if len(raw_path) <= _PATHS_MAX_CHARS:
        if len(_PATHS) >= _PATHS_ENTRIES:
            _PATHS.clear()
        _PATHS[raw_path] = inference
    return inference


def _parse_post_target(raw_path: str) -> tuple[str, str, int | None, str | None] | None:
    match = PREDICTION_PATH.fullmatch(raw_path)
    if match is None:
        return None
    name, version, label, api = match.groups()
    if api not in ("classify", "regress", "predict"):
        return None
    try:
        decoded_name = unquote_to_bytes(name).decode("utf-8")
        decoded_label = unquote_to_bytes(label).decode("utf-8") if label is not None else None
    except UnicodeDecodeError:
        return api, "\ufffd", None, None  # not a configured model: counted as __other__
    number = int(version) if version is not None and len(version) <= 19 else None
    if version is not None and number is None:
        number = -1  # too large for int64: never a known version
    return api, decoded_name, number, decoded_label


def call_labels(view: View, name: str, version: int | None, label: str | None, ok: bool) -> tuple[str, str]:
    """(model, version) labels of a REST inference call."""
    if ok:
        resolved = view.resolved_version(name, version, label)
        if resolved is None and name in view.models:
            return name, UNRESOLVED
        return view.served(name, resolved)
    return view.requested(name, version, label)


class _Call:
    __slots__ = ("inference", "started")

    def __init__(self, inference: Inference, started: float) -> None:
        self.inference = inference
        self.started = started


class RestObserver:
    """Counts the inference calls of one relayed connection (`http1.Observer`)."""

    __slots__ = ("clock", "connection", "holder", "metrics")

    def __init__(self, holder: ViewHolder, metrics: CallMetrics, clock: Callable[[], float] = time.perf_counter):
        self.holder = holder
        self.metrics = metrics
        self.clock = clock
        self.connection = http1.Connection(self)

    def client_data(self, data: bytes) -> None:
        self.connection.client_data(data)

    def server_data(self, data: bytes) -> None:
        self.connection.server_data(data)

    def request(self, method: str, target: str) -> object:
        inference = parse_inference_path(method, target)
        return None if inference is None else _Call(inference, self.clock())

    def response(self, token: object, status: int) -> None:
        if isinstance(token, _Call):
            self._finish(token, grpc_code(status))

    def closed(self, by_upstream: bool, upstream_ended: bool = False) -> None:
        """The connection is over: a body that ends with it ends; requests still waiting fail.

        `upstream_ended`: the upstream sent its last byte (a body that runs to the close is whole),
        `by_upstream`: and did so first (waiting requests fail UNAVAILABLE, else CANCELLED).
        """
        if upstream_ended:
            self.connection.server_closed()
        pending, self.connection.pending = self.connection.pending, type(self.connection.pending)()
        for request in pending:
            if isinstance(request.token, _Call):
                self._finish(request.token, "UNAVAILABLE" if by_upstream else "CANCELLED")

    def unanswered(self) -> bool:
        """A request waits and no byte of its response was relayed (the relay may still answer it)."""
        pending = self.connection.pending
        return bool(pending) and not pending[0].answered and not self.connection.tunnelled

    def abandon(self) -> None:
        """Parsing failed: stop counting this connection."""
        self.connection.pending.clear()

    def _finish(self, call: _Call, code: str) -> None:
        api, name, version, label = call.inference
        model, version_label = call_labels(self.holder.view, name, version, label, code == "OK")
        self.metrics.record(model, version_label, api, code, self.clock() - call.started)


def unavailable_response(reason: str) -> bytes:
    """The relay's own answer while the upstream is unreachable: 503, TF Serving's error body."""
    message = reason.replace("\\", "\\\\").replace('"', "'")
    body = f'{{ "error": "tfs-traffic sidecar: upstream unavailable: {message}" }}'.encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class Refuser(RestObserver):
    """Answers the first request itself while the upstream is unreachable, then closes."""

    __slots__ = ("done", "refusal")

    def __init__(self, holder: ViewHolder, metrics: CallMetrics, refusal: Refusal) -> None:
        super().__init__(holder, metrics)
        self.refusal = refusal
        self.done = False

    def client_data(self, data: bytes) -> None:
        if self.done:
            return
        self.connection.requests.feed(data)
        pending = self.connection.pending
        if pending and pending[0].complete:  # the first request has been read whole, body too
            self.respond()

    def respond(self) -> None:
        self.done = True
        request = self.connection.pending.popleft()
        self.refusal.write(unavailable_response(self.refusal.reason))
        if isinstance(request.token, _Call):
            self._finish(request.token, "UNAVAILABLE")
        self.connection.pending.clear()
        self.refusal.close()

    def idle(self, force: bool = False) -> None:
        """Nothing to do: the connection closes after its one answer, and the relay sets no idle timer
        for REST (`Listener.refuser_idle`)."""
