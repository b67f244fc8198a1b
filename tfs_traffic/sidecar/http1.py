"""A passive HTTP/1.1 reader: requests one way, responses the other, beside the relay's copy.

It follows message framing as RFC 9112 section 6 gives it — Content-Length, chunked transfer
coding (extensions and trailers included), bodies that end with the connection — for keep-alive
and pipelined requests, matches each final response to the oldest request still waiting for one
(1xx interim responses do not count), and knows which responses have no body (HEAD, 1xx, 204,
304). After a `101 Switching Protocols` or a successful CONNECT the connection is a tunnel and is
no longer read. Bodies are skipped by their length, never copied.

Anything it cannot frame raises `ParseError`; the relay then stops reading that connection.
"""

from collections import deque
from typing import Any, Protocol

from tfs_traffic.sidecar.errors import ParseError

MAX_HEAD = 1 << 16  # request or status line plus headers (TF Serving's and aiohttp's limits are lower)
MAX_LINE = 1 << 12  # a chunk-size line or a trailer line
_HEADS_ENTRIES = 256  # distinct heads remembered per direction ...
_HEADS_MAX_BYTES = 2048  # ... each at most this long

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _TUNNEL = range(8)


class Observer(Protocol):
    def request(self, method: str, target: str) -> object:
        """A request's head was read; the value comes back with its response."""

    def response(self, token: object, status: int) -> None:
        """The final response to that request ended (its body included)."""


class Pending:
    """A request waiting for its final response."""

    __slots__ = ("answered", "complete", "head", "method", "token")

    def __init__(self, token: object, method: str) -> None:
        self.token = token
        self.method = method
        self.head = method == "HEAD"
        self.complete = False  # its body has been read
        self.answered = False  # response bytes of it have been seen


def _values(low: bytes, name: bytes) -> list[bytes]:
    """Every value of the header `name` (b"\\nname:") in a lower-cased head."""
    out = []
    i = low.find(name)
    while i >= 0:
        start = i + len(name)
        stop = low.find(b"\n", start)
        if stop < 0:
            stop = len(low)
        out.append(low[start:stop].strip(b" \t\r"))
        i = low.find(name, stop)
    return out


def _fields(head: bytes) -> tuple[list[bytes], dict[bytes, list[bytes]]]:
    """The start line's parts and the two headers that frame a body (all that is read of a head).

    Header syntax is TF Serving's to judge: the relay looks up only Transfer-Encoding and
    Content-Length, found with one lower-casing and a search instead of a dict of every field.
    """
    newline = head.find(b"\n")
    start = head[:newline].rstrip(b"\r").split(b" ", 2)
    low = head[newline:].lower()
    fields = {}
    for name in (b"transfer-encoding", b"content-length"):
        if name in low:
            fields[name] = _values(low, b"\n" + name + b":")
    return start, fields


def _body(fields: dict[bytes, list[bytes]], request: bool) -> tuple[int, int]:
    """(state, length) of the body the fields announce."""
    codings = fields.get(b"transfer-encoding")
    if codings:
        last = b",".join(codings).split(b",")[-1].strip().lower()
        if last == b"chunked":
            return _CHUNK_SIZE, 0
        if request:
            raise ParseError("request with a transfer coding other than chunked last")
        return _UNTIL_CLOSE, 0
    lengths = fields.get(b"content-length")
    if lengths:
        values = {v.strip() for value in lengths for v in value.split(b",")}
        if len(values) != 1:
            raise ParseError("conflicting Content-Length")
        (value,) = values
        if not value.isdigit() or len(value) > 18:
            raise ParseError("malformed Content-Length")
        return _BODY, int(value)
    return (_BODY, 0) if request else (_UNTIL_CLOSE, 0)


# What a head read as, by its bytes. A keep-alive connection repeats the same request head (and,
# within a second, the same response head: the Date changes) on every call, so a head is parsed
# once; only heads that parsed are kept, the rest raise again.
_REQUEST_HEADS: dict[bytes, tuple[str, str, int, int]] = {}
_RESPONSE_HEADS: dict[bytes, tuple[int, dict[bytes, list[bytes]], tuple[int, int] | None]] = {}


def _remember(heads: dict[bytes, Any], head: bytes, value: Any) -> None:
    if len(head) <= _HEADS_MAX_BYTES:
        if len(heads) >= _HEADS_ENTRIES:
            heads.clear()
        heads[head] = value


def _head_end(data: bytes | bytearray, start: int) -> int:
    """The offset just after the empty line that ends a head in data[start:], or -1."""
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start, crlf if crlf >= 0 else len(data))
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


class _Direction:
    """Messages of one direction, fed in arbitrary pieces."""

    __slots__ = ("_buf", "_conn", "_left", "_state")

    def __init__(self, conn: "Connection") -> None:
        self._conn = conn
        self._buf = bytearray()
        self._state = _HEAD
        self._left = 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state in (_BODY, _CHUNK_DATA):
                take = min(self._left, end - pos)
                pos += take
                self._left -= take
                if not self._left:
                    if state == _BODY:
                        self._message_done()
                    else:
                        self._state = _CHUNK_END
                continue
            if state in (_UNTIL_CLOSE, _TUNNEL):
                return
            # line-oriented states: a head (ends with an empty line), a chunk size, CRLF, trailers
            buf = self._buf
            if state == _HEAD:
                if not buf:  # the usual case: the whole head in this piece, read in place
                    self._first_byte(data[pos])
                    stop = _head_end(data, pos)
                    if stop >= 0:
                        head = bytes(data[pos:stop])  # hashable, to look it up (free for bytes)
                        pos = stop
                        self._head(head)
                        continue
                    buf += data[pos:]
                else:
                    old = len(buf)
                    buf += data[pos:]
                    stop = _head_end(buf, max(0, old - 3))
                    if stop >= 0:
                        head = bytes(buf[:stop])
                        buf.clear()
                        pos += stop - old
                        self._head(head)
                        continue
                if len(buf) > MAX_HEAD:
                    raise ParseError("header section too long")
                return
            newline = data.find(b"\n", pos)
            if newline < 0:
                buf += data[pos:]
                if len(buf) > MAX_LINE:
                    raise ParseError("line too long")
                return
            buf += data[pos:newline]
            pos = newline + 1
            line = bytes(buf).rstrip(b"\r")
            buf.clear()
            if state == _CHUNK_SIZE:
                size = line.split(b";", 1)[0].strip()
                try:
                    self._left = int(size, 16)
                except ValueError:
                    raise ParseError("malformed chunk size") from None
                if self._left < 0 or len(size) > 15:
                    raise ParseError("malformed chunk size")
                self._state = _CHUNK_DATA if self._left else _TRAILERS
            elif state == _CHUNK_END:
                if line:
                    raise ParseError("chunk not followed by CRLF")
                self._state = _CHUNK_SIZE
            elif not line:  # _TRAILERS: the empty line ends the message
                self._message_done()

    def _head(self, head: bytes) -> None:
        raise NotImplementedError

    def _first_byte(self, byte: int) -> None:
        """Fail early on what cannot begin a message, instead of buffering it as a head."""
        if not (0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A or byte in b"\r\n"):
            if byte == 0x16:
                raise ParseError("TLS: the client started a TLS handshake, which the relay cannot read")
            raise ParseError("not an HTTP/1.x message")

    def _message_done(self) -> None:
        self._state = _HEAD

    def closed(self) -> None:
        """The sender closed the connection."""


class _Requests(_Direction):
    __slots__ = ()

    def _head(self, head: bytes) -> None:
        conn = self._conn
        known = _REQUEST_HEADS.get(head)
        if known is None:
            start, fields = _fields(head.lstrip(b"\r\n"))
            if len(start) != 3 or not start[2].startswith(b"HTTP/1.") or not start[0].isalpha():
                raise ParseError("malformed request line")
            method = start[0].decode("ascii")
            target = start[1].decode("latin-1")
            conn.pending.append(Pending(conn.observer.request(method, target), method))
            self._state, self._left = body = _body(fields, request=True)
            _remember(_REQUEST_HEADS, head, (method, target, *body))
        else:
            method, target, self._state, self._left = known
            conn.pending.append(Pending(conn.observer.request(method, target), method))
        if self._state == _BODY and not self._left:
            self._message_done()
        if method == "CONNECT":
            self._state = _TUNNEL  # whatever follows is the tunnel's, or the next request after a refusal

    def _message_done(self) -> None:
        self._state = _HEAD
        if self._conn.pending:
            self._conn.pending[-1].complete = True


class _Responses(_Direction):
    __slots__ = ("_status",)

    def __init__(self, conn: "Connection") -> None:
        super().__init__(conn)
        self._status = 0

    def feed(self, data: bytes) -> None:
        if data and self._conn.pending:
            self._conn.pending[0].answered = True
        super().feed(data)

    def _head(self, head: bytes) -> None:
        known = _RESPONSE_HEADS.get(head)
        if known is None:
            start, fields = _fields(head.lstrip(b"\r\n"))
            if len(start) < 2 or not start[0].startswith(b"HTTP/1.") or len(start[1]) != 3 or not start[1].isdigit():
                raise ParseError("malformed status line")
            try:  # the body is framed only if the status and request say there is one
                body: tuple[int, int] | None = _body(fields, request=False)
            except ParseError:
                body = None
            known = int(start[1]), fields, body
            _remember(_RESPONSE_HEADS, head, known)
        status, fields, body = known
        self._status = status
        pending = self._conn.pending
        request = pending[0] if pending else None
        if status == 101 or (request is not None and request.method == "CONNECT" and 200 <= status < 300):
            self._conn.tunnel()
            return
        if 100 <= status < 200:
            return  # interim
        if (request is not None and request.head) or status in (204, 304):
            self._state, self._left = _BODY, 0
        else:
            self._state, self._left = _body(fields, request=False) if body is None else body
        if self._state == _BODY and not self._left:
            self._message_done()

    def _message_done(self) -> None:
        self._state = _HEAD
        conn = self._conn
        if conn.pending:
            request = conn.pending.popleft()
            conn.observer.response(request.token, self._status)
            if request.method == "CONNECT":  # refused: the client's next bytes are a request again
                conn.requests._state = _HEAD

    def closed(self) -> None:
        if self._state == _UNTIL_CLOSE:
            self._message_done()


class Connection:
    """Both directions of one HTTP/1.1 connection, reporting to `observer`."""

    __slots__ = ("observer", "pending", "requests", "responses", "tunnelled")

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.pending: deque[Pending] = deque()
        self.requests = _Requests(self)
        self.responses = _Responses(self)
        self.tunnelled = False

    def client_data(self, data: bytes) -> None:
        if not self.tunnelled:
            self.requests.feed(data)

    def server_data(self, data: bytes) -> None:
        if not self.tunnelled:
            self.responses.feed(data)

    def server_closed(self) -> None:
        if not self.tunnelled:
            self.responses.closed()

    def tunnel(self) -> None:
        self.tunnelled = True
        self.pending.clear()
        self.requests._state = self.responses._state = _TUNNEL
