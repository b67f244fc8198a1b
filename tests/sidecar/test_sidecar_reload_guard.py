"""The sidecar refuses a client's HandleReloadConfigRequest (README, "Guarding the control plane").

A real gRPC client (grpcio) and hand-laid HTTP/2 call through a real sidecar to the real stand-in,
with a recording forwarder between the sidecar and the stand-in, so that the test reads every header
block the upstream received: the refused call's stream never reaches it, the client gets
PERMISSION_DENIED, the stand-in's config stays (GetModelStatus), the refusal is counted, and calls
on the same connection before it finish. With `--allow-config-reload` the same call goes through, and
so do connections the relay cannot read (TLS), which it otherwise closes.
"""

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from h2_support import RawClient, SilentObserver, data_frames, header_frames
from sidecar_support import Endpoints, Sidecar, Sim, delta, tls_handshake, write_models
from tcp_server import tcp_server
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tfs_api import METHODS, grpc_message, grpc_predict, model_spec, predict_request
from waiting import wait_for

from tfs_traffic.sidecar import guard, http2

MODELS = {"m": [1, 2, 3]}
PREDICT = METHODS["predict"]
RELOAD = guard.RELOAD_PATH.decode()
AVAILABLE, END = 30, 50
REFUSED = "tfserving_sidecar_refused_calls_total"


class Recorder:
    """A TCP forwarder in front of the stand-in that keeps what each connection sent upward."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent: list[bytearray] = []

    def handle(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        record = bytearray()
        self.sent.append(record)
        threading.Thread(target=self._pump, args=(client, server, record), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    record += data
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (source, target):
                s.close()

    def requests(self) -> list[tuple[str, str]]:
        """(`:path`, `x-call`) of every request the upstream received, in order per connection."""
        seen: list[tuple[str, str]] = []

        class Heads(SilentObserver):
            def headers(self, from_client: bool, stream: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
                names = dict(fields)
                if b":path" in names:
                    seen.append((names[b":path"].decode(), names.get(b"x-call", b"").decode()))

        for record in self.sent:
            http2.Connection(Heads()).client_data(bytes(record))
        return seen


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sim, Sidecar, Recorder]]:
    """The stand-in, a recorder in front of its gRPC port, and a sidecar (reloads refused) in front of that."""
    root = tmp_path_factory.mktemp("guard")
    config = write_models(root, MODELS)
    with Sim(config, root / "sim.log") as sim:
        recorder = Recorder(sim.grpc_port)
        with (
            tcp_server(recorder.handle) as port,
            Sidecar(config, Endpoints(port, sim.rest_port), root / "sidecar.log") as sidecar,
        ):
            yield sim, sidecar, recorder


def reload_request(root: Path) -> model_management_pb2.ReloadConfigRequest:
    """A reload that would keep only version 3 of `m`."""
    request = model_management_pb2.ReloadConfigRequest()
    model = request.config.model_config_list.config.add(
        name="m", base_path=str(root / "models" / "m"), model_platform="tensorflow"
    )
    model.model_version_policy.specific.versions.append(3)
    return request


def states(sim: Sim) -> list[tuple[int, int]]:
    """GetModelStatus of `m`, asked of the stand-in itself: (version, state), newest first."""
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec("m"))
    with grpc.insecure_channel(sim.grpc) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return [(s.version, s.state) for s in response.model_version_status]


def refused(sidecar: Sidecar) -> dict[tuple[str, ...], float]:
    return sidecar.gauge(REFUSED)


def test_a_grpc_clients_reload_is_refused_counted_and_never_reaches_the_server(
    guarded: tuple[Sim, Sidecar, Recorder], tmp_path: Path
) -> None:
    sim, sidecar, recorder = guarded
    calls_before, refused_before, received_before = sidecar.calls(code="OK"), refused(sidecar), recorder.requests()
    with grpc.insecure_channel(sidecar.grpc) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        assert predict(predict_request(version=2), timeout=10).model_spec.version.value == 2
        with pytest.raises(grpc.RpcError) as refusal:
            models.HandleReloadConfigRequest(reload_request(Path(sim.log).parent), timeout=10)
        # The same channel goes on: the GOAWAY sent it to a new connection.
        assert predict(predict_request(version=1), timeout=10).model_spec.version.value == 1
    # A reload as a new connection's first call.
    with grpc.insecure_channel(sidecar.grpc) as channel, pytest.raises(grpc.RpcError) as first:
        model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            reload_request(Path(sim.log).parent), timeout=10
        )
    assert refusal.value.code() == first.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal.value.details() == first.value.details() == guard.MESSAGE
    assert states(sim) == [(3, AVAILABLE), (2, AVAILABLE), (1, AVAILABLE)]
    received = recorder.requests()[len(received_before) :]
    assert [path for path, _ in received].count(PREDICT) == 2
    assert RELOAD not in {path for path, _ in recorder.requests()}
    assert delta(refused(sidecar), refused_before) == {(guard.RELOAD_METHOD,): 2.0}  # type: ignore[arg-type]
    assert f"{guard.RELOAD_METHOD} refused (PERMISSION_DENIED" in sidecar.output()
    assert delta(sidecar.calls(code="OK"), calls_before) == {("m", "2"): 1.0, ("m", "1"): 1.0}


def test_on_one_connection_the_earlier_call_finishes_and_later_streams_are_left_to_retry(
    guarded: tuple[Sim, Sidecar, Recorder],
) -> None:
    """Stream 1 still sending, 3 the reload (its header block split, a large message), 5 sent before the
    client could read the GOAWAY: 3 is answered by the relay, 1 by the server, 5 by nobody (GOAWAY's last
    stream is 3: the client retries 5 elsewhere); the upstream sees stream 1 only."""
    sim, sidecar, recorder = guarded
    before = recorder.requests()
    client = RawClient("127.0.0.1", sidecar.grpc_port)
    try:
        message = grpc_predict(version=3)
        client.send(header_frames(1, client.request_block(PREDICT, sidecar.grpc, extra=[("x-call", "raw-1")])))
        client.send(data_frames(1, message[:5], end_stream=False))
        client.send(header_frames(3, client.request_block(RELOAD, sidecar.grpc, extra=[("x-call", "raw-3")]), 3))
        client.send(data_frames(3, grpc_message(reload_request(Path(sim.log).parent).SerializeToString() * 2000)))
        client.send(header_frames(5, client.request_block(PREDICT, sidecar.grpc, extra=[("x-call", "raw-5")])))
        client.send(data_frames(5, grpc_predict(version=2)))
        answer = client.read_until(3)
        client.send(data_frames(1, message[5:]))
        first = client.read_until(1)
    finally:
        client.close()
    assert answer.ended and answer.trailers == []
    assert answer.headers == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"7"),
        (b"grpc-message", guard.MESSAGE.encode()),
    ]
    assert client.goaway == (3, 0)
    assert first.ended and first.header(b"grpc-status") == b"0"
    assert 5 not in client.responses
    assert recorder.requests()[len(before) :].count((PREDICT, "raw-1")) == 1
    assert {call for _, call in recorder.requests()} & {"raw-3", "raw-5"} == set()
    assert states(sim) == [(3, AVAILABLE), (2, AVAILABLE), (1, AVAILABLE)]


def test_with_allow_config_reload_the_reload_goes_through(tmp_path: Path) -> None:
    config = write_models(tmp_path, MODELS)
    with (
        Sim(config, tmp_path / "sim.log") as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log", extra=["--allow-config-reload"]) as sidecar,
    ):
        assert "(config reloads allowed)" in sidecar.output()
        with grpc.insecure_channel(sidecar.grpc) as channel:
            models = model_service_pb2_grpc.ModelServiceStub(channel)
            models.HandleReloadConfigRequest(reload_request(tmp_path), timeout=10)
        assert wait_for(lambda: states(sim) == [(3, AVAILABLE), (2, END), (1, END)])
        assert refused(sidecar) == {(guard.RELOAD_METHOD,): 0.0}
        # What the relay cannot read (TLS) is relayed too, uncounted, instead of closed.
        tls_handshake(sidecar.grpc_port)
        assert wait_for(lambda: "TLS handshake, which the relay cannot read): still relayed" in sidecar.output())
