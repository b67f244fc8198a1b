"""The REST proxy: TF Serving's HTTP API forwarded unchanged, inference calls counted.

Method, path, query, headers and body go to the upstream as they came; status, headers and body
come back as they went (no decompression, no re-encoding). REST responses do not say which version
served them, so the proxy resolves the version itself (design.md section 4): `/versions/N` is N,
`/labels/L` goes through the config's version_labels, and no version is the highest AVAILABLE
version in the poller's latest view. The HTTP status maps back to the gRPC status name that TF
Serving turned into it, so both protocols share the `code` label.
"""

import re
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from tfs_traffic.contract import UNRESOLVED
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.view import View

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

# Hop-by-hop headers (RFC 9110 section 7.6.1) and the framing the server library sets again.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
MAX_BODY = 1 << 31


def grpc_code(status: int) -> str:
    """The gRPC status name for an HTTP status from TF Serving."""
    code = HTTP_TO_GRPC.get(status)
    if code is not None:
        return code
    if 200 <= status < 300:
        return "OK"
    return "INVALID_ARGUMENT" if 400 <= status < 500 else "UNKNOWN"


def parse_inference_path(method: str, raw_path: str) -> tuple[str, str, int | None, str | None] | None:
    """(api, model name, version, label) of a REST inference call, None for anything else.

    `raw_path` is the path as sent (percent-encoded, without the query), matched as TF Serving does;
    the method must be lower case as TF Serving dispatches it, or the call is malformed upstream.
    """
    if method != "POST":
        return None
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
        resolved = view.rest_version(name, version, label)
        if resolved is None and name in view.models:
            return name, UNRESOLVED
        return view.served(name, resolved)
    return view.requested(name, version, label)


class RestProxy:
    """An aiohttp low-level handler that forwards every request to the upstream REST address."""

    def __init__(self, upstream: str, holder: Any, metrics: CallMetrics) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._base = f"http://{upstream}"
        self._holder = holder
        self._metrics = metrics
        self._session: Any = None

    async def start(self) -> None:
        aiohttp = self._aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, enable_cleanup_closed=True),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: Any) -> Any:
        from aiohttp import web
        from multidict import CIMultiDict
        from yarl import URL

        raw_path = request.raw_path
        path = raw_path.split("?", 1)[0]
        inference = parse_inference_path(request.method, path)
        body = await request.read()
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
        skip = [h for h in _AUTO_HEADERS if h not in headers]
        started = time.perf_counter()
        try:
            async with self._session.request(
                request.method,
                URL(self._base + raw_path, encoded=True),
                data=body if body or request.method not in ("GET", "HEAD") else None,
                headers=headers,
                skip_auto_headers=skip,
                allow_redirects=False,
            ) as upstream:
                data = await upstream.read()
                status, reason = upstream.status, upstream.reason
                out_headers = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP)
        except (self._aiohttp.ClientError, OSError) as e:
            seconds = time.perf_counter() - started
            if inference is not None:
                self._record(inference, "UNAVAILABLE", seconds)
            message = str(e).replace('"', "'")
            return web.Response(
                status=503,
                body=f'{{ "error": "tfs-traffic sidecar: upstream unavailable: {message}" }}'.encode(),
                content_type="application/json",
            )
        if inference is not None:
            self._record(inference, grpc_code(status), time.perf_counter() - started)
        return web.Response(status=status, reason=reason, body=data, headers=out_headers)

    def _record(self, inference: tuple[str, str, int | None, str | None], code: str, seconds: float) -> None:
        api, name, version, label = inference
        model, version_label = call_labels(self._holder.view, name, version, label, code == "OK")
        self._metrics.record(model, version_label, api, code, seconds)


async def start_server(listen_host: str, listen_port: int, proxy: RestProxy, reuse_port: bool) -> Any:
    """Serve `proxy` on the address; returns the aiohttp runner (cleanup() stops it)."""
    from aiohttp import web
    from aiohttp.web_request import BaseRequest

    def request_factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> BaseRequest:
        return BaseRequest(message, payload, protocol, writer, task, protocol._loop, client_max_size=MAX_BODY)

    await proxy.start()
    server = web.Server(proxy.handle, request_factory=request_factory, auto_decompress=False, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, listen_host, listen_port, reuse_port=reuse_port, backlog=1024)
    await site.start()
    return runner
