"""`model_spec` from gRPC messages that arrive in pieces, read beside the relay's copy.

The relay sees a message as the DATA frames carry it: any number of pieces, split anywhere. A
`PredictResponse` puts `model_spec` (field 2) after `outputs` (field 1), so the spec of a large
response arrives in a later frame than its first byte. Buffering the message to parse it would
cost a copy of every tensor; instead `SpecScanner` walks the fields as they come: it keeps the few
bytes of a tag or length varint that a split cuts in two, counts its way past every field it does
not need (tensors included), and collects only the bytes of `model_spec` itself, which `wire`
then merges exactly as it does for a whole message (same rules, same results: tests feed both).

`MessageReader` handles gRPC's 5-byte message prefix and the first message of a stream; a message
that fits in one piece (the common small call) goes straight to `wire` — for a request, only when
its spec is asked for: a call that succeeds is counted from its response's spec alone.
"""

import struct

from tfs_traffic.sidecar import wire
from tfs_traffic.sidecar.wire import EGROUP, I64, LEN, MAX_DEPTH, SGROUP, VARINT

_PREFIX = struct.Struct(">BL")
_TAG, _VALUE, _LENGTH, _SKIP, _COLLECT = 0, 1, 2, 3, 4
_SKIP_FIELD, _SPEC_FIELD, _ELEMENT_FIELD = 0, 1, 2
MAX_SPEC_BYTES = 1 << 16  # names, a label and a number: anything longer is not a TF Serving model_spec
MAX_LAZY_BYTES = 1 << 16  # a whole message up to this size is kept unread until its spec is needed


class SpecScanner:
    """The merged ModelSpec(s) of one protobuf message of known length, fed in pieces.

    `outer` 0: the spec at top-level field `field` (requests: 1; Predict/Classify/Regress responses: 2).
    `outer` N: one spec per element of the repeated message field N, each at `field` inside it
    (MultiInference: tasks=1 / results=1, each with model_spec=1).
    """

    __slots__ = (
        "_action",
        "_buf",
        "_builder",
        "_element_end",
        "_end",
        "_field",
        "_groups",
        "_left",
        "_off",
        "_outer",
        "_shift",
        "_specs",
        "_state",
        "_value",
        "failed",
    )

    def __init__(self, length: int, field: int, outer: int = 0) -> None:
        self._end = length
        self._field = field
        self._outer = outer
        self._off = 0
        self._state = _TAG
        self._value = 0
        self._shift = 0
        self._action = _SKIP_FIELD
        self._left = 0
        self._buf = bytearray()
        self._groups: list[int] = []
        self._element_end = -1  # inside an element of `outer` until this offset
        self._builder = wire.SpecBuilder() if not outer else None
        self._specs: list[wire.ModelSpec] = []
        self.failed = False

    @property
    def complete(self) -> bool:
        return self._off == self._end

    def feed(self, data: bytes, pos: int, stop: int) -> None:
        """Read data[pos:stop], the next bytes of the message (never beyond its length)."""
        if self.failed:
            return
        try:
            self._feed(data, pos, stop)
        except (wire.Malformed, IndexError):
            self.failed = True

    def _limit(self) -> int:
        return self._element_end if self._element_end >= 0 else self._end

    def _feed(self, data: bytes, pos: int, stop: int) -> None:
        while pos < stop:
            state = self._state
            if state in (_SKIP, _COLLECT):
                take = min(self._left, stop - pos)
                if state == _COLLECT:
                    self._buf += data[pos : pos + take]
                pos += take
                self._off += take
                self._left -= take
                if self._left:
                    return
                if state == _COLLECT:
                    assert self._builder is not None
                    self._builder.merge(bytes(self._buf), 0, len(self._buf))
                    self._buf.clear()
                self._state = _TAG
                self._field_done()
                continue
            if self._off >= self._limit():
                raise wire.Malformed
            byte = data[pos]
            pos += 1
            self._off += 1
            if state == _VALUE:  # a varint we skip
                self._shift += 7
                if byte < 0x80:
                    self._shift = 0
                    self._state = _TAG
                    self._field_done()
                elif self._shift >= 70:
                    raise wire.Malformed
                continue
            self._value |= (byte & 0x7F) << self._shift
            self._shift += 7
            if byte >= 0x80:
                if self._shift >= 70:
                    raise wire.Malformed
                continue
            value = self._value & ((1 << 64) - 1)
            self._value = self._shift = 0
            if state == _TAG:
                self._tag(value)
            else:
                self._length(value)

    def _tag(self, key: int) -> None:
        if key > 0xFFFFFFFF:
            raise wire.Malformed
        number, wire_type = key >> 3, key & 7
        if number == 0 or wire_type > 5:
            raise wire.Malformed
        groups = self._groups
        if wire_type == EGROUP:
            if not groups or groups.pop() != number:
                raise wire.Malformed
            self._field_done()
        elif wire_type == SGROUP:
            if len(groups) >= MAX_DEPTH:
                raise wire.Malformed
            groups.append(number)
        elif wire_type == VARINT:
            self._state = _VALUE
        elif wire_type == LEN:
            self._state = _LENGTH
            self._action = _SKIP_FIELD
            if not groups:
                if self._outer and self._element_end < 0:
                    if number == self._outer:
                        self._action = _ELEMENT_FIELD
                elif number == self._field:
                    self._action = _SPEC_FIELD
        else:
            self._start(_SKIP, 8 if wire_type == I64 else 4)

    def _length(self, length: int) -> None:
        if length > self._limit() - self._off:
            raise wire.Malformed
        action = self._action
        if action == _ELEMENT_FIELD:
            self._element_end = self._off + length
            self._builder = wire.SpecBuilder()
            self._state = _TAG
            self._field_done()
        elif action == _SPEC_FIELD:
            if length > MAX_SPEC_BYTES:
                raise wire.Malformed
            self._start(_COLLECT, length)
        else:
            self._start(_SKIP, length)

    def _start(self, state: int, length: int) -> None:
        if length > self._limit() - self._off:
            raise wire.Malformed
        if length:
            self._state = state
            self._left = length
        else:
            self._state = _TAG
            if state == _COLLECT:
                assert self._builder is not None
                self._builder.merge(b"", 0, 0)
            self._field_done()

    def _field_done(self) -> None:
        """After a whole field: close the element of `outer` that it ended, if any."""
        if self._element_end == self._off:
            if self._groups:
                raise wire.Malformed
            assert self._builder is not None
            self._specs.append(self._builder.build())
            self._builder = None
            self._element_end = -1

    def _well_formed_so_far(self) -> bool:
        return not self.failed and (not self.complete or (self._state == _TAG and not self._shift and not self._groups))

    def spec(self) -> wire.ModelSpec | None:
        """The merged spec seen so far (all of it once `complete`); None for a malformed message."""
        if not self._well_formed_so_far() or self._builder is None:
            return None
        return self._builder.build()

    def specs(self) -> list[wire.ModelSpec] | None:
        """The spec of each element seen so far (`outer` mode); None for a malformed message."""
        if not self._well_formed_so_far():
            return None
        if self._builder is not None:
            return [*self._specs, self._builder.build()]
        return list(self._specs)


class MessageReader:
    """The first gRPC message of one direction of a stream: its 5-byte prefix, then its fields.

    Bytes after the first message are ignored (TF Serving's counted methods are unary). A
    compressed message (flag 1, `grpc-encoding`) is not inflated: its spec reads as unknown.
    """

    __slots__ = ("_field", "_lazy", "_outer", "_prefix", "_raw", "done", "result", "scanner")

    def __init__(self, field: int, outer: int = 0, lazy: bool = False) -> None:
        self._field = field
        self._outer = outer
        self._lazy = lazy
        self._prefix = b""  # a 5-byte prefix split across pieces, as far as it came
        self._raw: bytes | None = None
        self.scanner: SpecScanner | None = None
        self.done = False
        self.result: object = None  # whole-message fast path: ModelSpec | list[ModelSpec] | None

    def feed(self, data: bytes, pos: int, stop: int) -> None:
        if self.done:
            return
        scanner = self.scanner
        if scanner is None:
            prefix = self._prefix
            if not prefix and stop - pos >= 5:
                flag, length = _PREFIX.unpack_from(data, pos)
                pos += 5
                if flag == 0 and stop - pos >= length:  # all of it in this piece
                    if self._lazy and length <= MAX_LAZY_BYTES:
                        self._raw = data[pos : pos + length]  # read only if it is ever needed
                    else:
                        self.result = self._whole(data, pos, pos + length)
                    self.done = True
                    return
            else:
                take = min(5 - len(prefix), stop - pos)
                prefix = self._prefix = prefix + data[pos : pos + take]
                pos += take
                if len(prefix) < 5:
                    return
                flag = prefix[0]
                length = int.from_bytes(prefix[1:5])
            if flag != 0:
                self.done = True  # compressed (or not a gRPC message): unknown
                return
            scanner = self.scanner = SpecScanner(length, self._field, self._outer)
        take = min(stop, pos + scanner._end - scanner._off)
        scanner.feed(data, pos, take)
        if scanner.complete or scanner.failed:
            self.done = True

    def _whole(self, data: bytes, pos: int, end: int) -> object:
        """The spec(s) of the whole message in data[pos:end], read in place."""
        if self._outer:
            try:
                return wire.repeated_specs(data, self._outer, self._field, pos, end)
            except (wire.Malformed, IndexError):
                return None
        return wire.model_spec(data, self._field, pos, end)

    def _read_raw(self) -> None:
        raw = self._raw
        if raw is not None:
            self.result = self._whole(raw, 0, len(raw))
            self._raw = None

    def spec(self) -> wire.ModelSpec | None:
        """Single-spec messages: what was read (partial if the stream ended early), None if unreadable."""
        self._read_raw()
        if self.scanner is not None:
            return self.scanner.spec()
        return self.result if isinstance(self.result, wire.ModelSpec) else None

    def specs(self) -> list[wire.ModelSpec] | None:
        """MultiInference messages: the spec of each task or result read."""
        self._read_raw()
        if self.scanner is not None:
            return self.scanner.specs()
        return self.result if isinstance(self.result, list) else None
