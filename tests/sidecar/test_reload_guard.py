"""The reload guard on exact byte streams: what it forwards, what it cuts out, and the relay's answer.

A client's side of a connection is laid out frame by frame (h2_support.py), so the bytes the guard
must forward are known exactly: everything, unchanged, when no stream asks for
HandleReloadConfigRequest, however the reads split it; else everything but the frames of the
refused stream and of every stream after it. The upstream's reader (`http2`) says where the relay
may put its answer between the upstream's frames.
"""

import itertools
import random

import hpack
import pytest
from h2_support import (
    CONTINUATION,
    DATA,
    GOAWAY,
    HEADER_TABLE_SIZE,
    HEADERS,
    PREFACE,
    PRIORITY,
    RST_STREAM,
    WINDOW_UPDATE,
    SilentObserver,
    data_frames,
    frame,
    header_frames,
    settings,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from tfs_api import METHODS, grpc_message, grpc_predict

from tfs_traffic.sidecar import guard, http2
from tfs_traffic.sidecar.errors import ParseError
from tfs_traffic.sidecar.guard import RELOAD_PATH, ReloadGuard

FUZZ = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREDICT = METHODS["predict"]
RELOAD = RELOAD_PATH.decode()


class Client:
    """A client's side of one connection, built frame by frame: each piece is kept or not by the guard."""

    def __init__(self, table: int | None = None) -> None:
        self.encoder = hpack.Encoder()
        if table is not None:
            self.encoder.header_table_size = table
        self.pieces: list[tuple[bytes, bool]] = [(PREFACE + settings({HEADER_TABLE_SIZE: 4096}), True)]

    def block(self, path: str, extra: tuple[tuple[str, str], ...] = (), index_path: bool = True) -> bytes:
        """A request's header block; `index_path` False: `:path` a literal never indexed, so that a block whose
        other fields are in the table already leaves the table unchanged."""
        path_field = (":path", path) if index_path else hpack.NeverIndexedHeaderTuple(":path", path)
        headers = [(":method", "POST"), (":scheme", "http"), path_field, (":authority", "a"), *extra]
        return bytes(self.encoder.encode([*headers, ("content-type", "application/grpc"), ("te", "trailers")]))

    def add(self, data: bytes, forwarded: bool = True) -> None:
        self.pieces.append((data, forwarded))

    @property
    def sent(self) -> bytes:
        return b"".join(data for data, _ in self.pieces)

    @property
    def forwarded(self) -> bytes:
        return b"".join(data for data, kept in self.pieces if kept)


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(data: bytes, cuts: list[int]) -> tuple[bytes, ReloadGuard]:
    reload_guard = ReloadGuard()
    return b"".join(reload_guard.feed(piece) for piece in _pieces(data, cuts)), reload_guard


def calls(rng: random.Random, client: Client, streams: range) -> None:
    """Predict calls on `streams` in every framing a client may choose, with frames read by length only."""
    for stream in streams:
        layout = {"pieces": rng.randint(1, 3), "pad": rng.choice([0, 0, 4]), "priority": rng.random() < 0.3}
        client.add(header_frames(stream, client.block(PREDICT, (("x-n", str(rng.randint(0, 3))),)), **layout))
        client.add(data_frames(stream, grpc_predict(x=[1.0] * rng.randint(1, 9000)), pad=rng.choice([0, 0, 3])))
        if rng.random() < 0.4:
            client.add(frame(WINDOW_UPDATE, 0, rng.choice([0, stream]), (1000).to_bytes(4, "big")))
        if rng.random() < 0.2:
            client.add(frame(6, 0, 0, bytes(8)) + frame(PRIORITY, 0, stream, bytes(5)) + frame(0x20, 0, stream, b"?"))


@FUZZ
@given(st.integers(0, 2**32), st.lists(st.integers(min_value=0), max_size=10))
def test_a_connection_without_a_reload_is_forwarded_unchanged_however_it_is_read(seed: int, cuts: list[int]) -> None:
    rng = random.Random(seed)
    client = Client(table=rng.choice([None, 0, 256]))
    calls(rng, client, range(1, 2 * rng.randint(1, 5), 2))
    client.add(header_frames(1, client.block("/tensorflow.serving.ModelService/GetModelStatus")))
    data = client.sent
    forwarded, reload_guard = run(data, cuts)
    assert forwarded == data
    assert (reload_guard.refused, reload_guard.credit, reload_guard.closing_from) == ([], 0, 0)


def test_whole_frames_of_a_steady_state_are_forwarded_without_a_copy() -> None:
    """What a gRPC client sends per call — HEADERS whole (no padding or priority), DATA, WINDOW_UPDATE — is
    handed on as the same bytes object: the guard only reads it."""
    client = Client()
    reload_guard = ReloadGuard()
    assert reload_guard.feed(client.sent) == client.sent
    for stream in (1, 3, 5):
        chunk = header_frames(stream, client.block(PREDICT)) + data_frames(stream, grpc_predict())
        chunk += frame(WINDOW_UPDATE, 0, 0, (5).to_bytes(4, "big"))
        assert reload_guard.feed(chunk) is chunk


def _refused_connection(rng: random.Random, table_changing: bool) -> tuple[Client, int]:
    """Calls on 1 and 3 (3 still sending), a reload on 5, and more after: (client, DATA bytes the guard drops)."""
    client = Client()
    calls(rng, client, range(1, 3, 2))
    client.add(header_frames(3, client.block(PREDICT)))
    message = grpc_predict(x=[2.0] * 5000)
    client.add(data_frames(3, message[:700], end_stream=False))
    reload_block = client.block(RELOAD, index_path=table_changing)
    assert http2.table_neutral(reload_block) is not table_changing
    reload_data = data_frames(5, grpc_message(b"\x0a\x02\x0a\x00" * 9000), size=16000, pad=rng.choice([0, 5]))
    client.add(header_frames(5, reload_block, pieces=rng.randint(1, 3), priority=rng.random() < 0.5), False)
    client.add(reload_data, False)
    after = frame(WINDOW_UPDATE, 0, 5, (9).to_bytes(4, "big")) + frame(RST_STREAM, 0, 5, (8).to_bytes(4, "big"))
    client.add(after, False)  # the client's own end of the refused stream
    client.add(frame(WINDOW_UPDATE, 0, 0, (1000).to_bytes(4, "big")))  # the connection's own frames go on
    later = data_frames(7, grpc_predict())
    client.add(header_frames(7, client.block(PREDICT)) + later, False)  # the client retries it after GOAWAY
    client.add(data_frames(3, message[700:]))  # the earlier call still open goes on to its end
    dropped = sum(int.from_bytes(d[:3], "big") for d in _frames(reload_data + later))
    return client, dropped


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        end = pos + 9 + int.from_bytes(data[pos : pos + 3], "big")
        out.append(data[pos:end])
        pos = end
    return out


@FUZZ
@given(st.integers(0, 2**32), st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_a_reload_and_every_stream_after_it_are_cut_out_exactly(seed: int, cuts: list[int], changing: bool) -> None:
    client, dropped = _refused_connection(random.Random(seed), changing)
    forwarded, reload_guard = run(client.sent, cuts)
    assert forwarded == client.forwarded
    assert (reload_guard.refused, reload_guard.closing_from, reload_guard.stale) == ([5], 5, changing)
    assert reload_guard.credit == dropped  # every byte of dropped DATA, padding included, given back


def test_after_a_refusal_that_changed_the_table_a_header_block_ends_the_connection() -> None:
    """Request trailers on an earlier stream would reach an upstream whose HPACK table lacks what the refused
    block added: the guard cannot forward them, so the relay closes the connection."""
    for changing in (True, False):
        client, _ = _refused_connection(random.Random(1), changing)
        trailers = header_frames(3, client.block("/x"), end_stream=True)
        reload_guard = ReloadGuard()
        reload_guard.feed(client.sent)
        if changing:
            with pytest.raises(ParseError, match="after a refused one that changed the HPACK table"):
                reload_guard.feed(trailers)
        else:
            assert reload_guard.feed(trailers) == trailers


def test_only_the_reload_methods_exact_path_is_refused_also_in_trailers() -> None:
    client = Client()
    client.add(header_frames(1, client.block(RELOAD + "x")) + header_frames(3, client.block(RELOAD.upper())))
    client.add(header_frames(5, client.block("/tensorflow.serving.ModelService/GetModelStatus")))
    client.add(header_frames(1, client.block(RELOAD), end_stream=True), False)  # malformed trailers: refused too
    forwarded, reload_guard = run(client.sent, [])
    assert forwarded == client.forwarded and reload_guard.refused == [1]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "TLS: the client started a TLS handshake"),
        (b"GET / HTTP/1.1\r\n\r\n", "not an HTTP/2 connection preface"),
        (PREFACE + frame(CONTINUATION, 4, 1, b""), "CONTINUATION without an open header block"),
        (PREFACE + frame(HEADERS, 0, 1, b"\x82") + frame(DATA, 0, 1, b""), "frame type 0 inside a header block"),
        (PREFACE + frame(5, 4, 1, bytes(4)), "PUSH_PROMISE from a client"),
        (PREFACE + frame(HEADERS, 4, 0, b"\x82"), "header block on stream 0"),
        (PREFACE + frame(HEADERS, 4, 1, b"\xbf"), "HPACK"),  # an index beyond both tables
    ],
)
def test_what_the_guard_cannot_read_is_a_parse_error(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        run(data, [])


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(out))
        if rng.random() < 0.6:
            out[i] = rng.randrange(256)
        else:
            out[i:i] = rng.randbytes(rng.randint(1, 12))
    return bytes(out)


@FUZZ
@given(st.integers(0, 2**32), st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_mutated_streams_raise_only_parse_errors_and_never_forward_more_than_came(
    seed: int, cuts: list[int]
) -> None:
    rng = random.Random(seed)
    client, _ = _refused_connection(rng, rng.random() < 0.5)
    data = _mutate(client.sent, rng)
    reload_guard = ReloadGuard()
    forwarded = b""
    for piece in _pieces(data, cuts):
        try:
            forwarded += reload_guard.feed(piece)
        except ParseError:
            break
    assert len(forwarded) <= len(data)
    assert reload_guard.closing_from == (reload_guard.refused[0] if reload_guard.refused else 0)


def test_the_answer_is_permission_denied_trailers_only_then_goaway_and_leaves_the_table_alone() -> None:
    decoder = hpack.Decoder()
    decoder.decode(hpack.Encoder().encode([("x-kept", "1")]))  # an entry the upstream's encoder put there
    table = list(decoder.header_table.dynamic_entries)
    headers, goaway = _frames(guard.answer(5))
    assert headers[3:9] == bytes((HEADERS, 0x5)) + (5).to_bytes(4, "big")  # END_HEADERS | END_STREAM
    fields = decoder.decode(headers[9:], raw=True)
    assert fields == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"7"),
        (b"grpc-message", guard.MESSAGE.encode()),  # nothing in it needs percent-encoding
    ]
    assert list(decoder.header_table.dynamic_entries) == table
    assert goaway == frame(GOAWAY, 0, 0, (5).to_bytes(4, "big") + bytes(4) + b"HandleReloadConfigRequest refused")
    assert guard.window_update(70_000) == frame(WINDOW_UPDATE, 0, 0, (70_000).to_bytes(4, "big"))
    long_headers, _ = _frames(guard.answer(1, "m" * 300 + "%"))  # a length past HPACK's 7-bit prefix
    assert hpack.Decoder().decode(long_headers[9:])[-1] == ("grpc-message", "m" * 300 + "%25")


@pytest.mark.parametrize("step", [1, 5, 9, 1000])
def test_the_upstreams_reader_says_exactly_where_its_frames_end(step: int) -> None:
    """`to_boundary` is 0 exactly after the server's SETTINGS and between later frames outside a header block."""
    encoder = hpack.Encoder()
    data = b"".join(
        [
            settings({HEADER_TABLE_SIZE: 1024}),
            frame(WINDOW_UPDATE, 0, 0, (99).to_bytes(4, "big")),
            header_frames(1, encoder.encode([(":status", "200"), ("content-type", "application/grpc")]), pieces=3),
            data_frames(1, b"x" * 40000, size=16384, end_stream=False, pad=7),
            header_frames(1, encoder.encode([("grpc-status", "0")]), end_stream=True, pad=2, pieces=2),
            settings(ack=True),
        ]
    )
    allowed, pos = set(), 0
    for f in _frames(data):
        pos += len(f)
        if f[3] not in (HEADERS, CONTINUATION) or f[4] & 0x4:  # not inside a header block
            allowed.add(pos)
    reader = http2.Connection(SilentObserver()).directions[False]
    assert reader.to_boundary() == 9  # nothing yet: the server's preface (SETTINGS) comes first
    points, pos = set(), 0
    while pos < len(data):
        take = min(reader.to_boundary() or 9, step)
        reader.feed(data[pos : pos + take])
        pos += take
        if reader.to_boundary() == 0:
            points.add(pos)
    assert points == allowed
