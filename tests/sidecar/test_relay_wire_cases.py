"""The relay on the wire: framings real clients rarely choose, large responses, dying upstreams, TLS.

Hand-built HTTP/2 (h2_support.py) goes through the sidecar to the stand-in server over real
sockets on 127.0.0.1: header blocks split across CONTINUATION frames with priority fields, a
client that shrinks and grows its HPACK table and forbids the server's, a response whose
`model_spec` comes frames after its first byte; then upstreams that die in the middle of a call
and clients that speak TLS. (Padded frames are covered by test_relay_parsers.py only: grpc-core,
in TF Serving as in the stand-in, refuses padded HEADERS and DATA from a client.)
"""

import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from h2_support import HEADER_TABLE_SIZE, RawClient, data_frames, header_frames
from sidecar_support import Endpoints, Sidecar, Sim, delta, tls_handshake, write_models
from tcp_server import tcp_server
from tensorflow_serving.apis import predict_pb2
from tfs_api import METHODS, grpc_predict, predict_request
from waiting import wait_for

from tfs_traffic.prometheus.local import free_port
from tfs_traffic.sidecar import tls

PREDICT = METHODS["predict"]
MODELS = {"m": [1, 2, 3]}
LABELS = {"m": {"stable": 1}}


def parse_errors(sidecar: Sidecar) -> dict[tuple[str, ...], float]:
    return sidecar.gauge("tfserving_sidecar_parse_errors_total")


def test_continuation_padding_priority_and_hpack_table_changes(stack: tuple[Sim, Sidecar]) -> None:
    sim, sidecar = stack
    sim_before, before = sim.call_counts(), sidecar.calls(code="OK")
    # The client allows the server no dynamic table at all: its blocks must shrink to 0 first.
    client = RawClient("127.0.0.1", sidecar.grpc_port, local_settings={HEADER_TABLE_SIZE: 0})
    authority = sidecar.grpc
    try:
        layouts: list[tuple[dict[str, Any], bytes, int | None]] = [
            ({}, grpc_predict(version=2), None),
            ({"pieces": 3, "priority": True}, grpc_predict(version_label="stable"), None),
            ({"pieces": 7}, grpc_predict(), 256),  # after shrinking its table to 256 bytes
            ({"pieces": 2, "priority": True}, grpc_predict(version=2), 4096),  # ... and growing it back
            ({}, grpc_predict(version=1), 0),  # no table at all
        ]
        for i, (layout, message, table) in enumerate(layouts):
            stream = 2 * i + 1
            if table is not None:
                client.encoder.header_table_size = table
            block = client.request_block(PREDICT, authority, extra=[("x-call", f"call-{i}"), ("x-fixed", "same")])
            client.send(header_frames(stream, block, **layout) + data_frames(stream, message, size=11))
            response = client.read_until(stream)
            assert response.ended and response.header(b"grpc-status") == b"0", response
            reply = predict_pb2.PredictResponse.FromString(response.data[5:])
            assert reply.model_spec.version.value == {0: 2, 1: 1, 2: 3, 3: 2, 4: 1}[i]
    finally:
        client.close()
    expected = {("m", "2"): 2.0, ("m", "1"): 2.0, ("m", "3"): 1.0}
    assert delta(sim.call_counts(), sim_before) == expected
    assert wait_for(lambda: delta(sidecar.calls(code="OK"), before) == expected)
    assert parse_errors(sidecar) == {("grpc",): 0.0, ("rest",): 0.0}


def test_a_response_spec_in_a_later_data_frame_than_its_first_byte(stack: tuple[Sim, Sidecar]) -> None:
    _, sidecar = stack
    before = sidecar.calls(code="OK")
    client = RawClient("127.0.0.1", sidecar.grpc_port)
    try:
        client.send(header_frames(1, client.request_block(PREDICT, sidecar.grpc)))
        client.send_data(1, grpc_predict(x=[1.0] * 30000))
        response = client.read_until(1)
    finally:
        client.close()
    assert response.header(b"grpc-status") == b"0"
    reply = predict_pb2.PredictResponse.FromString(response.data[5:])
    spec_bytes = len(reply.model_spec.SerializeToString()) + 2
    assert response.data.endswith(reply.model_spec.SerializeToString())  # model_spec comes after outputs
    first = len(response.data_frames[0])
    assert len(response.data) - spec_bytes > first  # ... and starts beyond the first DATA frame
    assert reply.model_spec.version.value == 3
    assert delta(sidecar.calls(code="OK"), before) == {("m", "3"): 1.0}


class Forwarder:
    """A TCP forwarder in front of the stand-in (the connections of a `tcp_server`) that can cut a
    connection in the middle of a response.

    A request carrying `marker` (plain, in a header the test sends without Huffman coding) gets the
    first `cut_after` bytes of what the server sends next, then both connections are reset.
    """

    def __init__(self, upstream_port: int, marker: bytes, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.marker = marker
        self.cut_after = cut_after
        self.cuts = 0

    def handle(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        state = {"armed": False, "sent": 0}
        threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, state: dict[str, Any], upward: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    return
                if upward and self.marker in data:
                    state["armed"] = True
                if not upward and state["armed"]:
                    room = self.cut_after - state["sent"]
                    target.sendall(data[:room])
                    state["sent"] += min(room, len(data))
                    if state["sent"] >= self.cut_after:
                        self.cuts += 1
                        for s in (source, target):  # shutdown wakes the other pump, blocked in recv
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                            s.shutdown(socket.SHUT_RDWR)
                            s.close()
                        return
                    continue
                target.sendall(data)
        except OSError:
            for s in (source, target):
                s.close()


def test_an_upstream_that_dies_mid_response(tmp_path: Path) -> None:
    config = write_models(tmp_path, MODELS, LABELS)
    sim = Sim(config, tmp_path / "sim.log")
    forwarder = Forwarder(sim.grpc_port, marker=b"cut-this-response", cut_after=3000)
    with (
        sim,
        tcp_server(forwarder.handle) as port,
        # the sidecar's upstream is the forwarder; REST goes to the sim itself
        Sidecar(config, Endpoints(port, sim.rest_port), tmp_path / "sidecar.log") as sidecar,
    ):
        client = RawClient("127.0.0.1", sidecar.grpc_port)
        block = client.request_block(PREDICT, sidecar.grpc, extra=[("x-test", "cut-this-response")], huffman=False)
        client.send(header_frames(1, block))
        client.send_data(1, grpc_predict(version=2, x=[1.0] * 30000))
        response = client.read_until(1, timeout=10)
        client.close()
        assert forwarder.cuts == 1
        assert client.closed and not response.ended  # the client saw its connection go, mid-response
        assert response.headers and len(response.data) < 30000 * 4
        assert wait_for(lambda: sidecar.calls(code="UNAVAILABLE") == {("m", "2"): 1.0})
        # Other calls, on new connections, go on.
        with grpc.insecure_channel(sidecar.grpc) as channel:
            assert channel.unary_unary(PREDICT)(predict_request(version=1).SerializeToString(), timeout=10)
        assert wait_for(lambda: sidecar.calls(code="OK") == {("m", "1"): 1.0})
        assert sidecar.alive() and "Traceback" not in sidecar.output()


def test_an_upstream_killed_with_calls_in_flight(tmp_path: Path) -> None:
    config = write_models(tmp_path, MODELS, LABELS)
    with (
        Sim(config, tmp_path / "sim.log", extra=["--latency-ms", "3000"]) as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log") as sidecar,
    ):
        with grpc.insecure_channel(sidecar.grpc) as channel:
            stub = channel.unary_unary(PREDICT)
            futures = [stub.future(predict_request(version=v).SerializeToString(), timeout=30) for v in (1, 2, 2)]
            time.sleep(1.0)  # all three are in the model's 3 s
            sim.stop(9)
            codes = [f.exception().code() if f.exception() else grpc.StatusCode.OK for f in futures]
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 3
        assert wait_for(lambda: sidecar.calls(code="UNAVAILABLE") == {("m", "1"): 1.0, ("m", "2"): 2.0})
        assert sidecar.alive() and "Traceback" not in sidecar.output()


def test_tls_clients_are_uncounted_and_said_so_closed_by_the_reload_guard(stack: tuple[Sim, Sidecar]) -> None:
    """REST is relayed; gRPC is closed, since the relay cannot see a HandleReloadConfigRequest inside
    (test_sidecar_reload_guard.py: with --allow-config-reload it is relayed)."""
    _, sidecar = stack
    before = parse_errors(sidecar)
    tls_handshake(sidecar.grpc_port)
    tls_handshake(sidecar.rest_port)
    assert wait_for(
        lambda: delta(parse_errors(sidecar), before) == {("grpc",): 1.0, ("rest",): 1.0}  # type: ignore[arg-type]
    )
    reason = re.escape("cannot parse (TLS: the client started a TLS handshake, which the relay cannot read): ")
    output = sidecar.output()
    assert len(re.findall(r"grpc connection from 127\.0\.0\.1:\d+: " + reason + "closed: the relay cannot tell "
                          "whether it carries HandleReloadConfigRequest\n", output)) == 1  # fmt: skip
    assert len(re.findall(r"rest connection from 127\.0\.0\.1:\d+: " + reason + "still relayed", output)) == 1


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """A TLS-only server (a self-signed certificate from openssl) standing for TF Serving with --ssl_config_file."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def handshake(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(1)
        except (ssl.SSLError, OSError):
            pass

    with tcp_server(handshake) as port:
        yield port


def test_the_sidecar_says_at_start_when_the_upstream_speaks_tls(tmp_path: Path, tls_server: int) -> None:
    assert tls.speaks_tls("127.0.0.1", tls_server) is True
    config = write_models(tmp_path, MODELS)
    with Sidecar(config, Endpoints(tls_server, free_port()), tmp_path / "sidecar.log", poll="30s") as sidecar:
        lines = [line for line in sidecar.output().splitlines() if "speaks TLS" in line]
    assert len(lines) == 1 and f"127.0.0.1:{tls_server}" in lines[0]


def test_a_plaintext_upstream_is_not_taken_for_tls(stack: tuple[Sim, Sidecar]) -> None:
    sim, sidecar = stack
    assert tls.speaks_tls("127.0.0.1", sim.grpc_port) is False
    assert tls.speaks_tls("127.0.0.1", free_port()) is None
    assert "speaks TLS" not in sidecar.output()
