"""TF Serving's gRPC API as `retire` speaks it: status, what "latest" and a label resolve to, reload.

Raw bytes through `tfs_traffic.sidecar.wire`, as the sidecar's poller does, so no TensorFlow is
needed (`tensorflow_serving.apis`' messages import TensorFlow's protos; the config protos do not).
What a server answers after a reload or an unload is in the README ("Retiring versions"): the reload
RPC returns before the unload, which happens at the next file-system poll, so nothing here trusts an
RPC's status for the state: `verify` reads the state back.
"""

from dataclasses import dataclass
from typing import Any

from tfs_traffic.errors import UsageError
from tfs_traffic.sidecar import wire
from tfs_traffic.sidecar.poller import METADATA_METHOD, SPECIFIC_NOT_FOUND, STATUS_METHOD, UPSTREAM_CHANNEL_OPTIONS

RELOAD_METHOD = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
RPC_TIMEOUT = 5.0
# ServerCore::ReloadConfig waits only for models new to the config (a retirement adds none), but it
# serializes every reload behind one mutex: a long timeout, still bounded (unload.md §1.1).
RELOAD_TIMEOUT = 60.0
UNLOADED = (wire.STATE_END,)


class Unreachable(Exception):
    """The server did not answer (UNAVAILABLE, DEADLINE_EXCEEDED): not an answer about its state."""


class Refused(Exception):
    """The server answered a reload with an error (the change may still be partly applied)."""


@dataclass(frozen=True)
class Target:
    """A server to verify: its gRPC address, and the metrics pages that count its calls."""

    grpc: str
    pages: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"grpc": self.grpc, "pages": list(self.pages)}


def parse_address(text: str, flag: str) -> str:
    """HOST:PORT (or [IPV6]:PORT); UsageError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{flag} expects HOST:PORT, got {text!r}")
    return text.strip()


def parse_target(text: str) -> Target:
    """`HOST:PORT[,URL...]`: TF Serving's gRPC address, then the metrics pages of that server
    (its own /monitoring/prometheus/metrics, its sidecar's /metrics)."""
    first, *pages = [p.strip() for p in text.split(",")]
    for page in pages:
        if not page.startswith(("http://", "https://")):
            raise UsageError(f"--targets expects HOST:PORT[,URL...] with http(s) URLs, got {page!r} in {text!r}")
    return Target(parse_address(first, "--targets"), tuple(pages))


class Server:
    """One TF Serving (or a relay in front of it) over one gRPC channel."""

    def __init__(self, address: str, timeout: float = RPC_TIMEOUT) -> None:
        import grpc

        self._grpc = grpc
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=UPSTREAM_CHANNEL_OPTIONS)
        self._status = self._channel.unary_unary(STATUS_METHOD)
        self._metadata = self._channel.unary_unary(METADATA_METHOD)
        self._reload = self._channel.unary_unary(RELOAD_METHOD)

    def close(self) -> None:
        self._channel.close()

    def status(self, model: str) -> dict[int, int]:
        """GetModelStatus: {version: state} of every version the server has seen ({} for NOT_FOUND)."""
        grpc = self._grpc
        try:
            answer = self._status(wire.status_request(model), timeout=self.timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return {}
            raise Unreachable(_describe(self.address, e)) from None
        statuses = wire.model_status(answer)
        if statuses is None:
            raise Unreachable(f"{self.address}: GetModelStatus answered bytes that are not a GetModelStatusResponse")
        return {s.version: s.state for s in statuses}

    def resolve(self, model: str, label: str | None = None) -> int | None:
        """What a request for `model` by `label` (None: no version) resolves to: GetModelMetadata's
        `model_spec.version`, or the N of NOT_FOUND `Specific(model, N)`; None when it resolves to
        nothing (INVALID_ARGUMENT: no such label; NOT_FOUND without a number: no version)."""
        grpc = self._grpc
        try:
            answer = self._metadata(wire.metadata_request(model, label), timeout=self.timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                found = SPECIFIC_NOT_FOUND.fullmatch(e.details() or "")
                return int(found.group(1)) if found else None
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return None
            raise Unreachable(_describe(self.address, e)) from None
        spec = wire.model_spec(answer, 1)
        return spec.version if spec is not None else None

    def reload(self, config: Any) -> None:
        """HandleReloadConfigRequest with `config` (a ModelServerConfig message); Unreachable, or
        Refused with the server's code and message."""
        grpc = self._grpc
        try:
            self._reload(wire.reload_config_request(config.SerializeToString()), timeout=RELOAD_TIMEOUT)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unreachable(_describe(self.address, e)) from None
            raise Refused(_describe(self.address, e)) from None

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(address: str, error: Any) -> str:
    details = (error.details() or "").strip().splitlines()
    return f"{address}: {error.code().name}" + (f": {details[0]}" if details else "")
