"""The reload guard: TF Serving's config reload RPC refused before a byte of it is forwarded.

TF Serving serves `ModelService/HandleReloadConfigRequest` on the port of Predict, without
authentication: whoever can call a model can replace the models config and unload every version
(README, "Guarding the control plane"). In proxy mode the relay is the clients' way to that port,
so by default it refuses the call. Unlike counting, which parses later and in batches (`backlog`),
refusing must be decided before the request is forwarded: `ReloadGuard` reads what a client sends
as it arrives, ahead of the copy — frame headers, and header blocks through its own HPACK decoder —
and hands on everything but the frames of a refused stream. In a connection's steady state a client
sends the same table-neutral header block on every call, so a call costs a walk over its frame
headers and one in-place comparison of its block with the last one judged (`feed`).

When a header block's `:path` is the reload method (a new stream's; pseudo-headers in trailers are
malformed, and refused the same way), that stream and every later one are taken out of
the copy: the relay answers the refused call itself (`answer`: PERMISSION_DENIED, trailers-only)
and says with GOAWAY that no later stream was processed, so the client sends those again on a new
connection. The upstream never sees the refused stream. Its header block may have added entries to
the client's HPACK table that the upstream's table now lacks, so no later header block can be
forwarded safely: later streams are the client's to retry, and a header block on an earlier stream
(request trailers, which gRPC clients do not send) after such a block ends the connection. DATA
taken out of the copy is given back to the client's connection window (`credit`).

gRPC servers route a call by the exact bytes of `:path` (grpc-core looks a registered method up by
them), so an exact comparison is the match. Bytes the guard cannot read (not HTTP/2; TLS) raise
ParseError: the relay then closes the connection, as it cannot tell whether a reload is inside.
"""

import struct
import urllib.parse

from tfs_traffic.sidecar import http2
from tfs_traffic.sidecar.errors import ParseError
from tfs_traffic.sidecar.metrics import REFUSED_METHODS

RELOAD_METHOD = REFUSED_METHODS[0]
RELOAD_PATH = ("/" + RELOAD_METHOD).encode()
# The client's encoder may use as large a table as the *server* allows in its SETTINGS, which the guard does
# not read (they pass the other way, unparsed): allow this much. grpc-core's default is 4096.
TABLE_LIMIT = 1 << 16
PERMISSION_DENIED = 7

_HEAD = struct.Struct(">BHBBL")
_PASS, _DROP, _HOLD = 0, 1, 2
_HEADERS, _CONTINUATION, _PUSH_PROMISE = http2.HEADERS, http2.CONTINUATION, http2.PUSH_PROMISE
_END_HEADERS = http2.FLAG_END_HEADERS
_BLOCK_FLAGS = http2.FLAG_END_HEADERS | http2.FLAG_PADDED | http2.FLAG_PRIORITY


def _asks_reload(fields: http2.Fields) -> bool:
    return any(name == b":path" and value == RELOAD_PATH for name, value in fields)


class ReloadGuard:
    """The client side of one gRPC connection, read before it is forwarded (`feed`)."""

    __slots__ = (
        "_block",
        "_block_stream",
        "_flags",
        "_head",
        "_hold",
        "_judged",
        "_kind",
        "_left",
        "_mode",
        "_payload",
        "_preface",
        "_steady",
        "_stream",
        "closing_from",
        "credit",
        "decoder",
        "refused",
        "stale",
    )

    def __init__(self) -> None:
        self.decoder = http2.HeaderDecoder()
        self.decoder.settings_sent(TABLE_LIMIT)
        self._preface = len(http2.PREFACE)
        self._steady = False  # between frames, nothing held, nothing refused: `feed`'s short loop applies
        self._head = bytearray()  # a frame header split across reads
        self._left = 0  # bytes of the current frame still to come ...
        self._mode = _PASS  # ... and whether they are forwarded, dropped or held
        self._hold = bytearray()  # the raw frames of a header block not decided yet
        self._payload = bytearray()  # the payload of a held frame split across reads
        self._block: bytearray | None = None  # the fragments of that header block
        self._block_stream = 0
        self._kind = self._flags = self._stream = 0
        self._judged: bytes | None = None  # the last header block judged, if it left the HPACK table alone
        self.closing_from = 0  # once a stream is refused: it, and every stream after it, is dropped
        self.stale = False  # a dropped header block changed the HPACK table
        self.refused: list[int] = []  # streams to answer (the relay takes them)
        self.credit = 0  # bytes of dropped DATA not yet given back to the client's connection window

    def feed(self, data: bytes) -> bytes:
        """What of `data` to forward now: all of it but the frames of refused streams and the bytes held
        until their header block ends. A refusal leaves its stream in `refused`."""
        if not self._steady:
            return self._read(data, 0)
        # A connection's steady state: whole frames, and every header block the same bytes as the last one judged
        # (a table-neutral block, so the same bytes mean the same fields). This loop runs for every chunk a client
        # sends, before it is forwarded, with caches cold from the sim, the client and the kernel in between: it
        # reads frame headers by index and compares a block in place, allocating nothing. Anything else goes to
        # `_read`, which starts where it stopped.
        pos, end = 0, len(data)
        judged = self._judged
        size = len(judged) if judged is not None else -1
        while end - pos >= 9:
            after = pos + 9 + (data[pos] << 16 | data[pos + 1] << 8 | data[pos + 2])
            if after > end:
                break
            kind = data[pos + 3]
            if kind == _HEADERS:
                if after - pos - 9 != size or data[pos + 4] & _BLOCK_FLAGS != _END_HEADERS:
                    break
                if not data.startswith(judged, pos + 9):  # type: ignore[arg-type]
                    break
            elif kind in (_CONTINUATION, _PUSH_PROMISE):
                break
            pos = after
        return data if pos == end else self._read(data, pos)

    def _read(self, data: bytes, pos: int) -> bytes:
        """`feed` from `pos` on, `data[:pos]` forwarded: every state, every framing."""
        end = len(data)
        if self._preface:
            pos = self._read_preface(data)
        out: list[bytes] = []  # the pieces to forward, once something was cut
        run = 0  # data[run:pos] is forwarded unless cut
        while pos < end:
            left = self._left
            if left:
                take = left if left <= end - pos else end - pos
                mode = self._mode
                if mode != _PASS:
                    if run < pos:
                        out.append(data[run:pos])
                    if mode == _HOLD:
                        piece = data[pos : pos + take]
                        self._hold += piece
                        self._payload += piece
                    run = pos + take
                pos += take
                self._left = left - take
                if left == take and mode == _HOLD:
                    out.append(self._held_frame_done(bytes(self._payload)))
                continue
            head = self._head
            if head or end - pos < 9:
                take = min(9 - len(head), end - pos)
                if run < pos:
                    out.append(data[run:pos])
                head += data[pos : pos + take]
                pos += take
                run = pos
                if len(head) < 9:
                    break
                whole_head = bytes(head)
                head.clear()
                high, low, kind, flags, stream = _HEAD.unpack(whole_head)
                length = high << 16 | low
                mode = self._begin(kind, flags, stream & 0x7FFFFFFF, length)
                if mode == _PASS:
                    out.append(whole_head)
                elif mode == _HOLD:
                    self._hold += whole_head
            else:
                high, low, kind, flags, stream = _HEAD.unpack_from(data, pos)
                length = high << 16 | low
                stream &= 0x7FFFFFFF
                if self._block is None and not self.closing_from and length <= end - pos - 9:
                    # A whole frame of a connection's steady state: decided in place, in one step.
                    if kind == http2.HEADERS:
                        if (
                            flags & (http2.FLAG_END_HEADERS | http2.FLAG_PADDED | http2.FLAG_PRIORITY)
                            == http2.FLAG_END_HEADERS
                            and stream
                            and length <= http2.MAX_HEADER_BLOCK
                        ):
                            start = pos
                            pos += 9 + length
                            if not self._decide(data[start + 9 : pos], stream):
                                if run < start:
                                    out.append(data[run:start])
                                run = pos
                            continue
                    elif kind not in (http2.CONTINUATION, http2.PUSH_PROMISE):
                        pos += 9 + length
                        continue
                mode = self._begin(kind, flags, stream, length)
                if mode != _PASS:
                    if run < pos:
                        out.append(data[run:pos])
                    if mode == _HOLD:
                        self._hold += data[pos : pos + 9]
                    run = pos + 9
                pos += 9
            self._left = length
            self._mode = mode
            if length == 0 and mode == _HOLD:
                out.append(self._held_frame_done(b""))
        self._steady = not (self._preface or self._head or self._left or self._block is not None or self.closing_from)
        if not out:
            return data if run == 0 else data[run:]
        if run < end:
            out.append(data[run:end])
        return b"".join(out)

    def _read_preface(self, data: bytes) -> int:
        done = len(http2.PREFACE) - self._preface
        take = min(self._preface, len(data))
        if data[:take] != http2.PREFACE[done : done + take]:
            if done == 0 and data[:1] == b"\x16":
                raise ParseError("TLS: the client started a TLS handshake, which the relay cannot read")
            raise ParseError("not an HTTP/2 connection preface")
        self._preface -= take
        return take

    def _begin(self, kind: int, flags: int, stream: int, length: int) -> int:
        """What becomes of a frame whose header was just read."""
        if self._block is not None:
            if kind != http2.CONTINUATION or stream != self._block_stream:
                raise ParseError(f"frame type {kind} inside a header block")
        elif kind == http2.HEADERS:
            if stream == 0:
                raise ParseError("header block on stream 0")
        elif kind == http2.CONTINUATION:
            raise ParseError("CONTINUATION without an open header block")
        elif kind == http2.PUSH_PROMISE:
            raise ParseError("PUSH_PROMISE from a client")
        else:
            if self.closing_from and stream >= self.closing_from:
                if kind == http2.DATA:
                    self.credit += length
                return _DROP
            return _PASS
        if length > http2.MAX_HEADER_BLOCK:
            raise ParseError(f"frame type {kind} of {length} bytes")
        self._kind, self._flags, self._stream = kind, flags, stream
        return _HOLD

    def _held_frame_done(self, payload: bytes) -> bytes:
        """A HEADERS or CONTINUATION frame was read whole: what to forward (the block's frames, once it ends)."""
        self._payload.clear()
        self._mode = _PASS
        kind, flags, stream = self._kind, self._flags, self._stream
        if kind == http2.HEADERS:
            start, stop = 0, len(payload)
            if flags & http2.FLAG_PADDED:
                if not payload:
                    raise ParseError("padded frame without its pad length")
                start, stop = 1, stop - payload[0]
            if flags & http2.FLAG_PRIORITY:
                start += 5
            if start > stop:
                raise ParseError("padding or priority longer than the frame")
            self._block = bytearray(payload[start:stop])
            self._block_stream = stream
        else:
            assert self._block is not None
            self._block += payload
            if len(self._block) > http2.MAX_HEADER_BLOCK:
                raise ParseError("header block too large")
        if not flags & http2.FLAG_END_HEADERS:
            return b""
        block = bytes(self._block)
        self._block = None
        held = bytes(self._hold)
        self._hold.clear()
        return held if self._decide(block, self._block_stream) else b""

    def _decide(self, block: bytes, stream: int) -> bool:
        """Whether a whole header block of `stream` is forwarded; a refused one leaves its stream in `refused`."""
        if self.closing_from:
            if stream >= self.closing_from:
                self.stale = self.stale or not http2.table_neutral(block)
                return False
            if self.stale:
                raise ParseError("a header block after a refused one that changed the HPACK table")
            return True
        decoder = self.decoder
        fields = decoder.decoded.get(block) or decoder.decode(block)
        asks = fields.memo
        if asks is None:
            asks = fields.memo = _asks_reload(fields)
        if not asks:
            # Cached: table-neutral, so these bytes keep meaning these fields until a block changes the table,
            # which comes here first and replaces it.
            self._judged = block if block in decoder.decoded else None
            return True
        self._judged = None
        self.closing_from = stream
        self.stale = not http2.table_neutral(block)
        self.refused.append(stream)
        return False


def _string(value: bytes) -> bytes:
    """An HPACK string literal, not Huffman-coded (RFC 7541, 5.2)."""
    length = len(value)
    if length < 0x7F:
        return bytes((length,)) + value
    length -= 0x7F
    prefix = bytearray((0x7F,))
    while length >= 0x80:
        prefix.append(length & 0x7F | 0x80)
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + value


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3) + bytes((kind, flags)) + stream.to_bytes(4) + payload


MESSAGE = (
    "tfs-traffic sidecar: HandleReloadConfigRequest is refused from the relay's clients "
    "(the sidecar's --allow-config-reload lets it through)"
)


def answer(stream: int, message: str = MESSAGE) -> bytes:
    """The relay's answer to a refused stream: PERMISSION_DENIED, trailers-only, then GOAWAY naming it the last
    stream processed, so that the client retries later ones on a new connection.

    The header block is an indexed `:status: 200` and literals without indexing: it leaves the client's
    HPACK table (which the upstream's encoder owns) as it was.
    """
    fields = [
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(PERMISSION_DENIED).encode()),
        (b"grpc-message", urllib.parse.quote(message, safe=" :/.,()'-").encode()),
    ]
    block = b"\x88" + b"".join(b"\x00" + _string(name) + _string(value) for name, value in fields)
    headers = _frame(http2.HEADERS, http2.FLAG_END_HEADERS | http2.FLAG_END_STREAM, stream, block)
    debug = b"HandleReloadConfigRequest refused"
    return headers + _frame(http2.GOAWAY, 0, 0, stream.to_bytes(4) + bytes(4) + debug)


def window_update(increment: int) -> bytes:
    """Connection-level flow-control credit for `increment` bytes the upstream never received."""
    return _frame(http2.WINDOW_UPDATE, 0, 0, increment.to_bytes(4))
