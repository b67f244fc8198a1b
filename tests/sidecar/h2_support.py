"""Hand-built HTTP/2 for the relay's tests: frames laid out exactly as a test wants them.

A real gRPC client never splits a small header block across CONTINUATION frames, pads it, or
changes its HPACK table mid-connection; a peer may. `RawClient` speaks HTTP/2 over a real socket
with those choices in the test's hands (hpack encodes, everything else is written here), and reads
the server's frames back (acknowledging SETTINGS and PING, returning flow-control credit).
"""

import socket
import struct
from dataclasses import dataclass, field

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
HEADER_TABLE_SIZE, INITIAL_WINDOW_SIZE = 0x1, 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def settings(values: dict[int, int] | None = None, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HL", k, v) for k, v in (values or {}).items())
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def header_frames(
    stream: int, block: bytes, pieces: int = 1, pad: int = 0, priority: bool = False, end_stream: bool = False
) -> bytes:
    """HEADERS (+ CONTINUATION) carrying `block` in `pieces` fragments, the first padded/prioritised."""
    size = max(1, -(-len(block) // pieces))
    fragments = [block[i : i + size] for i in range(0, len(block), size)] or [b""]
    flags = END_STREAM if end_stream else 0
    first = fragments[0]
    if priority:
        flags |= PRIORITY_FLAG
        first = struct.pack(">LB", 0, 15) + first
    if pad:
        flags |= PADDED
        first = bytes((pad,)) + first + bytes(pad)
    if len(fragments) == 1:
        flags |= END_HEADERS
    out = [frame(HEADERS, flags, stream, first)]
    for i, fragment in enumerate(fragments[1:], start=2):
        out.append(frame(CONTINUATION, END_HEADERS if i == len(fragments) else 0, stream, fragment))
    return b"".join(out)


def data_frames(stream: int, data: bytes, size: int = 16384, end_stream: bool = True, pad: int = 0) -> bytes:
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    out = []
    for i, chunk in enumerate(chunks):
        flags = END_STREAM if end_stream and i == len(chunks) - 1 else 0
        if pad:
            flags |= PADDED
            chunk = bytes((pad,)) + chunk + bytes(pad)
        out.append(frame(DATA, flags, stream, chunk))
    return b"".join(out)


@dataclass
class Response:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: bytes = b""
    data_frames: list[bytes] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers + self.trailers:
            if k == name:
                return v
        return None


class RawClient:
    """An HTTP/2 client over a real socket whose frames the test lays out."""

    def __init__(self, host: str, port: int, local_settings: dict[int, int] | None = None, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.responses: dict[int, Response] = {}
        self.closed = False
        self.goaway: tuple[int, int] | None = None
        self._pending_tables: list[int | None] = []
        self.window = 65535  # what the server lets us send: the connection's window ...
        self.initial_window = 65535
        self.stream_windows: dict[int, int] = {}  # ... and each stream's
        values = {INITIAL_WINDOW_SIZE: 1 << 24, **(local_settings or {})}
        self._pending_tables.append(values.get(HEADER_TABLE_SIZE))
        self.sock.sendall(PREFACE + settings(values) + frame(WINDOW_UPDATE, 0, 0, (1 << 24).to_bytes(4, "big")))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_data(self, stream: int, data: bytes, size: int = 16384) -> None:
        """DATA frames carrying `data` (END_STREAM on the last), within the server's flow-control windows."""
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for i, chunk in enumerate(chunks):
            while min(self.window, self.stream_windows.setdefault(stream, self.initial_window)) < len(chunk):
                self._read_frame()
                if self.closed:
                    return
            self.window -= len(chunk)
            self.stream_windows[stream] -= len(chunk)
            self.send(frame(DATA, END_STREAM if i == len(chunks) - 1 else 0, stream, chunk))

    def block(self, headers: list[tuple[str, str]], huffman: bool = True) -> bytes:
        return bytes(self.encoder.encode(headers, huffman=huffman))

    def request_block(
        self, path: str, authority: str, extra: list[tuple[str, str]] = (), huffman: bool = True
    ) -> bytes:  # type: ignore[assignment]
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *extra,
        ]
        return self.block(headers, huffman=huffman)

    def read_until(self, stream: int, timeout: float = 10.0) -> Response:
        """Read frames until `stream` ends (or is reset, or the connection closes)."""
        self.sock.settimeout(timeout)
        response = self.responses.setdefault(stream, Response())
        while not (response.ended or response.reset is not None or self.closed):
            self._read_frame()
        return response

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                raise EOFError
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _read_frame(self) -> None:
        try:
            head = self._read_exact(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = self._read_exact(length)
        except EOFError:
            return
        if kind == SETTINGS:
            if flags & ACK:
                size = self._pending_tables.pop(0) if self._pending_tables else None
                if size is not None:
                    self.decoder.max_allowed_table_size = size
            else:
                for i in range(0, len(payload), 6):
                    key, value = struct.unpack_from(">HL", payload, i)
                    if key == HEADER_TABLE_SIZE:
                        self.encoder.header_table_size = min(value, 4096)
                    elif key == INITIAL_WINDOW_SIZE:
                        for s in self.stream_windows:
                            self.stream_windows[s] += value - self.initial_window
                        self.initial_window = value
                self.send(settings(ack=True))
        elif kind == PING and not flags & ACK:
            self.send(frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
            if stream:
                self.stream_windows[stream] = self.stream_windows.get(stream, self.initial_window) + increment
            else:
                self.window += increment
        elif kind == GOAWAY:
            self.goaway = struct.unpack_from(">LL", payload)
        elif kind == RST_STREAM:
            self.responses.setdefault(stream, Response()).reset = int.from_bytes(payload, "big")
        elif kind in (HEADERS, CONTINUATION):
            start, stop = 0, len(payload)
            if kind == HEADERS and flags & PADDED:
                start, stop = 1, stop - payload[0]
            if kind == HEADERS and flags & PRIORITY_FLAG:
                start += 5
            self._block = getattr(self, "_block", b"") + payload[start:stop]
            if flags & END_HEADERS:
                fields = [(bytes(k), bytes(v)) for k, v in self.decoder.decode(self._block, raw=True)]
                self._block = b""
                response = self.responses.setdefault(stream, Response())
                if response.headers:
                    response.trailers = fields
                else:
                    response.headers = fields
            if flags & END_STREAM:
                self.responses.setdefault(stream, Response()).ended = True
        elif kind == DATA:
            start, stop = 0, len(payload)
            if flags & PADDED:
                start, stop = 1, stop - payload[0]
            response = self.responses.setdefault(stream, Response())
            response.data += payload[start:stop]
            response.data_frames.append(payload[start:stop])
            if length:
                credit = length.to_bytes(4, "big")
                self.send(frame(WINDOW_UPDATE, 0, 0, credit) + frame(WINDOW_UPDATE, 0, stream, credit))
            if flags & END_STREAM:
                response.ended = True

    def close(self) -> None:
        self.sock.close()


class SilentObserver:
    """An `http2.Observer` that wants nothing: the reader only frames the bytes (subclasses pick what to hear)."""

    def headers(self, from_client: bool, stream: int, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None: ...

    def data_sink(self, from_client: bool, stream: int) -> None:
        return None

    def end_stream(self, from_client: bool, stream: int) -> None: ...

    def reset(self, from_client: bool, stream: int, code: int) -> None: ...

    def goaway(self, from_client: bool, last_stream: int, code: int) -> None: ...

    def frame(self, *args: object) -> None: ...
