"""A passive HTTP/2 reader: both directions of one connection, read beside the relay's copy.

It never writes and never enforces the protocol (TF Serving and its client do that); it follows
just enough to see each call: the client's connection preface, every frame header, HEADERS and
PUSH_PROMISE with their CONTINUATION frames (padding and priority fields stripped), one HPACK
decoder per direction, SETTINGS and their ACKs, DATA of the streams an observer asks for (padding
stripped), RST_STREAM and GOAWAY. Everything else — PING, WINDOW_UPDATE, PRIORITY, unknown frame
types, DATA nobody wants — is skipped by its length without looking at the payload.

HPACK state must stay in step with the real peers, so every header block goes through its
direction's decoder, even on streams nobody counts. The limit on the decoder's table follows
SETTINGS_HEADER_TABLE_SIZE as the peers negotiate it: the setting a *server* sends bounds the
table that decodes the *client's* blocks (the server is that decoder), and takes hold when the
client acknowledges it; the client's setting likewise bounds the decoder of the server's blocks.
The size itself changes only through the table size updates the encoder puts in its blocks, which
hpack's decoder applies. Blocks that cannot change the table (`table_neutral`) have their decoded
form cached until the next block that may: the steady state of a connection repeats the same
request, response and trailer blocks on every call, so after the first calls decoding is a lookup.

Anything that is not HTTP/2 raises `ParseError`; the relay then stops reading that connection.
"""

import struct
from collections import deque
from typing import Any, Protocol

import hpack

from tfs_traffic.sidecar.errors import ParseError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20
SETTINGS_HEADER_TABLE_SIZE = 0x1
DEFAULT_TABLE_SIZE = 4096
MAX_HEADER_BLOCK = 1 << 20  # bytes of one compressed header block (TF Serving accepts far less)
MAX_CONTROL_PAYLOAD = 1 << 16  # SETTINGS, RST_STREAM and GOAWAY payloads we read
MAX_HEADER_LIST = 1 << 24  # decompressed; the real peers set the actual limit
_CACHE_ENTRIES = 64

_HEAD = struct.Struct(">BHBBL")
_SKIP, _DATA, _COLLECT, _PADLEN = 0, 1, 2, 3
_SKIPPED = (PRIORITY, PING, WINDOW_UPDATE)  # known types read by length only (PING: unless frame_hook)


class Fields(list[tuple[bytes, bytes]]):
    """A decoded header block. A cached block comes back as the same list: `memo` is the observer's
    place for what it made of it, so that is worked out once per distinct block too."""

    __slots__ = ("memo",)

    def __init__(self, fields: Any) -> None:
        super().__init__(fields)
        self.memo: Any = None


class DataSink(Protocol):
    def feed(self, data: bytes, pos: int, stop: int) -> None: ...


class Observer(Protocol):
    """What a connection's reader reports. `from_client` tells the direction."""

    def headers(self, from_client: bool, stream: int, fields: Fields, end_stream: bool) -> None: ...

    def data_sink(self, from_client: bool, stream: int) -> DataSink | None: ...

    def end_stream(self, from_client: bool, stream: int) -> None: ...

    def reset(self, from_client: bool, stream: int, code: int) -> None: ...

    def goaway(self, from_client: bool, last_stream: int, code: int) -> None: ...

    def frame(self, from_client: bool, kind: int, flags: int, stream: int, length: int, payload: bytes | None) -> None:
        """With `frame_hook`: each frame this reader reads, and each DATA frame's header (payload None)."""


def _skip_integer(block: bytes, i: int, mask: int) -> int:
    """The offset after an HPACK integer with a prefix of `mask` bits at block[i]."""
    value = block[i] & mask
    i += 1
    if value == mask:
        while block[i] >= 0x80:
            i += 1
        i += 1
    return i


def _skip_string(block: bytes, i: int) -> int:
    """The offset after an HPACK string literal at block[i]."""
    length = block[i] & 0x7F
    i += 1
    if length == 0x7F:
        shift = 0
        while True:
            byte = block[i]
            i += 1
            length += (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
    return i + length


def table_neutral(block: bytes) -> bool:
    """True if decoding the block cannot change the dynamic table.

    That is a block of indexed fields and literals without indexing or never indexed only: no
    literal with incremental indexing, no table size update. Decoding such a block twice with
    the same table gives the same fields, so its decoded form can be reused until a block that
    is not neutral comes (or the allowed table size changes).
    """
    try:
        i, n = 0, len(block)
        while i < n:
            byte = block[i]
            if byte >= 0x80:
                i = _skip_integer(block, i, 0x7F)
            elif byte < 0x20:
                named = byte & 0x0F
                i = _skip_integer(block, i, 0x0F)
                if not named:
                    i = _skip_string(block, i)
                i = _skip_string(block, i)
            else:
                return False
        return i == n
    except IndexError:
        return False


class HeaderDecoder:
    """One direction's HPACK decoder, its table limit following the negotiated SETTINGS."""

    __slots__ = ("_acked", "_decoder", "_pending", "decoded")

    def __init__(self) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
        # The decoded form of recent table-neutral blocks, by their bytes: a reader looks a block up
        # here before it calls `decode` (the steady state's blocks are all found, without a call).
        self.decoded: dict[bytes, Fields] = {}
        self._acked = DEFAULT_TABLE_SIZE
        self._pending: deque[int | None] = deque()

    @property
    def table_size(self) -> int:
        return int(self._decoder.header_table_size)

    @property
    def allowed_table_size(self) -> int:
        return int(self._decoder.max_allowed_table_size)

    def decode(self, block: bytes) -> Fields:
        cached = self.decoded.get(block)
        if cached is not None:
            return cached
        try:
            fields = Fields(self._decoder.decode(block, raw=True))
        except Exception as e:  # hpack's errors, and whatever a hostile block provokes in it
            raise ParseError(f"HPACK: {type(e).__name__}: {e}") from None
        if table_neutral(block):
            if len(self.decoded) >= _CACHE_ENTRIES:
                self.decoded.clear()
            self.decoded[block] = fields
        elif self.decoded:
            self.decoded.clear()
        return fields

    def settings_sent(self, size: int | None) -> None:
        """The decoding side sent SETTINGS (with a HEADER_TABLE_SIZE, or without: None)."""
        self._pending.append(size)
        self._apply()

    def settings_acked(self) -> None:
        """The encoding side acknowledged the oldest of those SETTINGS."""
        if self._pending:
            size = self._pending.popleft()
            if size is not None:
                self._acked = size
            self._apply()

    def _apply(self) -> None:
        # Until acknowledged a new limit may or may not be in force: allow the larger of the two.
        allowed = max([self._acked, *(s for s in self._pending if s is not None)])
        if allowed != self._decoder.max_allowed_table_size:
            self._decoder.max_allowed_table_size = allowed
            self.decoded.clear()


class _Direction:
    """The frames of one direction, fed in arbitrary pieces."""

    __slots__ = (
        "_after",
        "_block",
        "_block_end_stream",
        "_block_stream",
        "_collect",
        "_conn",
        "_end_stream",
        "_flags",
        "_head",
        "_kind",
        "_left",
        "_mode",
        "_preface",
        "_sink",
        "_stream",
        "client",
        "decoder",
        "settings_seen",
    )

    def __init__(self, conn: "Connection", client: bool) -> None:
        self._conn = conn
        self.client = client
        self.decoder = HeaderDecoder()
        self._preface = len(PREFACE) if client else 0
        self._head = bytearray()
        self._left = 0
        self._mode = _SKIP
        self._collect = bytearray()
        self._kind = 0
        self._flags = 0
        self._stream = 0
        self._sink: DataSink | None = None
        self._after = 0  # DATA padding to skip after the data
        self._end_stream = False
        self._block: bytearray | None = None  # an open header block awaiting CONTINUATION
        self._block_stream = 0
        self._block_end_stream = False
        self.settings_seen = False  # this side sent SETTINGS: its connection preface is done

    def to_boundary(self) -> int:
        """How many more bytes this direction must read before a frame could be put into it by someone else
        (the relay's answer to a refused call): 0 between two frames, outside a header block (no frame may
        come between HEADERS and its CONTINUATION), and once the peer's preface, a SETTINGS frame, was read.
        Read that many, then ask again."""
        if self._head:
            return 9 - len(self._head)
        if self._left or self._after:
            return self._left + self._after
        if self._block is not None or not self.settings_seen or self._preface:
            return self._preface or 9
        return 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        if self._preface:
            pos = self._read_preface(data)
        plain = self._conn.frame_hook is None  # no observer wants every frame: the fast paths below apply
        while pos < end:
            left = self._left
            if left:
                take = left if left <= end - pos else end - pos
                mode = self._mode
                if mode == _DATA:
                    assert self._sink is not None
                    self._sink.feed(data, pos, pos + take)
                elif mode == _COLLECT:
                    self._collect += data[pos : pos + take]
                elif mode == _PADLEN:
                    self._start_padded_data(data[pos])
                    pos += 1
                    continue
                pos += take
                self._left = left - take
                if left == take:
                    self._payload_done()
                continue
            head = self._head
            if head or end - pos < 9:
                take = min(9 - len(head), end - pos)
                head += data[pos : pos + take]
                pos += take
                if len(head) < 9:
                    return
                high, low, kind, flags, stream = _HEAD.unpack(head)
                head.clear()
            else:
                high, low, kind, flags, stream = _HEAD.unpack_from(data, pos)
                pos += 9
            length = high << 16 | low
            stream &= 0x7FFFFFFF
            if self._block is not None and kind != CONTINUATION:
                raise ParseError(f"frame type {kind} inside a header block")
            if plain and length <= end - pos:
                # The frames of a call's steady state, whole in this piece, read in place in one step.
                # Each does what the general path below does in several (tests feed both).
                if kind == DATA and stream and not flags & FLAG_PADDED:
                    observer = self._conn.observer
                    sink = observer.data_sink(self.client, stream) if length else None
                    if sink is not None:
                        sink.feed(data, pos, pos + length)
                    pos += length
                    if flags & FLAG_END_STREAM:
                        observer.end_stream(self.client, stream)
                    continue
                if (
                    kind == HEADERS
                    and stream
                    and flags & (FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY) == FLAG_END_HEADERS
                    and length <= MAX_HEADER_BLOCK
                ):
                    self._end_block(data[pos : pos + length], stream, bool(flags & FLAG_END_STREAM))
                    pos += length
                    continue
                if kind in _SKIPPED or kind > CONTINUATION:
                    pos += length
                    continue
            self._kind, self._flags, self._stream = kind, flags, stream
            if kind == DATA:
                self._begin_data(length, flags, stream)
            elif kind in (HEADERS, CONTINUATION, PUSH_PROMISE, SETTINGS, RST_STREAM, GOAWAY):
                if length > (
                    MAX_HEADER_BLOCK if kind in (HEADERS, CONTINUATION, PUSH_PROMISE) else MAX_CONTROL_PAYLOAD
                ):
                    raise ParseError(f"frame type {kind} of {length} bytes")
                if length <= end - pos:  # the whole payload is here: no copy into our buffer
                    self._frame(data[pos : pos + length])
                    pos += length
                    continue
                self._mode = _COLLECT
                self._left = length
            elif kind == PING and self._conn.frame_hook is not None:  # answered by the refusing observer
                if length > MAX_CONTROL_PAYLOAD:
                    raise ParseError("PING too large")
                self._mode = _COLLECT
                self._left = length
            else:
                self._mode = _SKIP
                self._left = length
            if self._left == 0:
                self._payload_done()

    def _read_preface(self, data: bytes) -> int:
        done = len(PREFACE) - self._preface
        take = min(self._preface, len(data))
        if data[:take] != PREFACE[done : done + take]:
            if done == 0 and data[:1] == b"\x16":
                raise ParseError("TLS: the client started a TLS handshake, which the relay cannot read")
            raise ParseError("not an HTTP/2 connection preface")
        self._preface -= take
        return take

    def _begin_data(self, length: int, flags: int, stream: int) -> None:
        if stream == 0:
            raise ParseError("DATA on stream 0")
        self._end_stream = bool(flags & FLAG_END_STREAM)
        self._sink = self._conn.observer.data_sink(self.client, stream) if length else None
        if self._conn.frame_hook is not None:
            self._conn.frame_hook(self.client, DATA, flags, stream, length, None)
        self._after = 0
        if self._sink is None:
            self._mode = _SKIP
            self._left = length
        elif flags & FLAG_PADDED:
            self._mode = _PADLEN
            self._left = length
        else:
            self._mode = _DATA
            self._left = length

    def _start_padded_data(self, pad: int) -> None:
        length = self._left - 1
        if pad > length:
            raise ParseError("DATA padding longer than the frame")
        self._mode = _DATA
        self._left = length - pad
        self._after = pad
        if self._left == 0:
            self._payload_done()

    def _payload_done(self) -> None:
        mode = self._mode
        if mode == _COLLECT:
            payload = bytes(self._collect)
            self._collect.clear()
            self._mode = _SKIP
            self._frame(payload)
            return
        if self._kind == DATA:
            if self._after:
                self._mode = _SKIP
                self._left, self._after = self._after, 0
                return
            self._sink = None
            self._mode = _SKIP
            if self._end_stream:
                self._conn.observer.end_stream(self.client, self._stream)
        self._mode = _SKIP

    def _frame(self, payload: bytes) -> None:
        """A whole frame of a kind we read (not DATA)."""
        kind, flags, stream = self._kind, self._flags, self._stream
        conn = self._conn
        if conn.frame_hook is not None:
            conn.frame_hook(self.client, kind, flags, stream, len(payload), payload)
        if kind in (HEADERS, PUSH_PROMISE):
            if stream == 0:
                raise ParseError("header block on stream 0")
            start, stop = 0, len(payload)
            if flags & FLAG_PADDED:
                if not payload:
                    raise ParseError("padded frame without its pad length")
                start, stop = 1, stop - payload[0]
            if kind == HEADERS and flags & FLAG_PRIORITY:
                start += 5
            elif kind == PUSH_PROMISE:
                start += 4
            if start > stop:
                raise ParseError("padding or priority longer than the frame")
            # A PUSH_PROMISE block is decoded for the table's sake and reported to nobody.
            self._block_stream = stream if kind == HEADERS else -stream
            self._block_end_stream = kind == HEADERS and bool(flags & FLAG_END_STREAM)
            fragment = payload if start == 0 and stop == len(payload) else payload[start:stop]
            if flags & FLAG_END_HEADERS:
                self._end_block(fragment, self._block_stream, self._block_end_stream)
            else:
                self._block = bytearray(fragment)
        elif kind == CONTINUATION:
            if self._block is None or stream != abs(self._block_stream):
                raise ParseError("CONTINUATION without an open header block on its stream")
            self._block += payload
            if len(self._block) > MAX_HEADER_BLOCK:
                raise ParseError("header block too large")
            if flags & FLAG_END_HEADERS:
                block = bytes(self._block)
                self._block = None
                self._end_block(block, self._block_stream, self._block_end_stream)
        elif kind == SETTINGS:
            if flags & FLAG_ACK:
                if payload:
                    raise ParseError("SETTINGS ACK with a payload")
                self.decoder.settings_acked()
                return
            if len(payload) % 6:
                raise ParseError("SETTINGS payload not a multiple of 6 bytes")
            self.settings_seen = True
            size = None
            for i in range(0, len(payload), 6):
                key, value = struct.unpack_from(">HL", payload, i)
                if key == SETTINGS_HEADER_TABLE_SIZE:
                    size = value
            conn.directions[not self.client].decoder.settings_sent(size)
        elif kind == RST_STREAM:
            if len(payload) != 4 or stream == 0:
                raise ParseError("malformed RST_STREAM")
            conn.observer.reset(self.client, stream, int.from_bytes(payload))
        elif kind == GOAWAY:
            if len(payload) < 8:
                raise ParseError("GOAWAY shorter than 8 bytes")
            last, code = struct.unpack_from(">LL", payload)
            conn.observer.goaway(self.client, last & 0x7FFFFFFF, code)

    def _end_block(self, block: bytes, stream: int, end_stream: bool) -> None:
        """A whole header block of `stream` (negative: a PUSH_PROMISE's, reported to nobody)."""
        decoder = self.decoder
        fields = decoder.decoded.get(block) or decoder.decode(block)
        if stream > 0:
            observer = self._conn.observer
            observer.headers(self.client, stream, fields, end_stream)
            if end_stream:
                observer.end_stream(self.client, stream)


class Connection:
    """Both directions of one HTTP/2 connection, reporting to `observer`."""

    __slots__ = ("directions", "frame_hook", "observer")

    def __init__(self, observer: Observer, frame_hook: bool = False) -> None:
        self.observer = observer
        self.frame_hook = observer.frame if frame_hook else None
        # directions[True] reads what the client sends, directions[False] what the server sends.
        self.directions = {True: _Direction(self, True), False: _Direction(self, False)}

    def client_data(self, data: bytes) -> None:
        self.directions[True].feed(data)

    def server_data(self, data: bytes) -> None:
        self.directions[False].feed(data)
