"""The observe-only relay: every client connection gets one upstream connection, bytes copied both ways.

Bytes are written on as they are read, unchanged; the connection's observer (`grpc_relay` or
`rest_relay`) reads the same bytes to count calls, later and in batches (`backlog`): a chunk is
only appended, with the time it arrived, to the connection's backlog once it was written on. So
flow control, SETTINGS, PING, GOAWAY, deadlines, metadata, compression and trailers are the
client's and TF Serving's own, and counting adds no parsing to any call's latency.
Backpressure passes through: while one side's socket cannot take more, the other side is not
read. An EOF is passed on as an EOF (half-close); when either side goes away, the other is closed
once what it was sent has been written. What a client sends while its upstream connection is
being made is held (up to EARLY_LIMIT, then its socket is not read) and passed on once it is.

A parse error never touches the copy: the connection keeps being relayed, its counting stops,
`tfserving_sidecar_parse_errors_total{protocol}` goes up and one line is logged (at most one per
second and protocol, with a count of those not logged). If the upstream cannot be reached, the
observer's `Refuser` answers the client itself (UNAVAILABLE / 503), counted like any failed call.

One thing is read before it is forwarded: on a gRPC listener without `--allow-config-reload`, a
`guard.ReloadGuard` reads what the client sends ahead of the copy and takes TF Serving's config
reload RPC out of it; the relay answers that call itself. Its answer must go to the client between
two of the upstream's frames, so it waits until the observer, made to parse everything relayed so
far, says the upstream's bytes are between frames (`Answering.answer_point`).
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol, runtime_checkable

from tfs_traffic.sidecar import guard
from tfs_traffic.sidecar.backlog import Backlog
from tfs_traffic.sidecar.errors import ParseError
from tfs_traffic.sidecar.metrics import CallMetrics

log = logging.getLogger("tfs_traffic.sidecar")

CONNECT_TIMEOUT = 5.0
REFUSER_IDLE_SECONDS = 1.0
EARLY_LIMIT = 1 << 20  # bytes held while the upstream connection is being made
LOG_INTERVAL = 1.0
PARSE_AT_ONCE_BYTES = 16 << 10  # a chunk this large is parsed as it passes, not held in the backlog


class Observer(Protocol):
    """What counts one relayed connection (`grpc_relay.GrpcObserver`, `rest_relay.RestObserver`)."""

    def client_data(self, data: bytes) -> None: ...

    def server_data(self, data: bytes) -> None: ...

    def closed(self, by_upstream: bool, upstream_ended: bool = False) -> None: ...

    def abandon(self) -> None: ...

    def unanswered(self) -> bool:
        """A request waits and no byte of its response was relayed: the relay may still answer it
        (`Listener.unavailable`) when the upstream goes away."""


class Refusing(Observer, Protocol):
    """An observer that answers the client itself while the upstream is unreachable (each `Refuser`)."""

    def idle(self, force: bool = False) -> None:
        """If no call is open, end the connection (`force`: also one that has made no call yet).

        The relay calls it once, REFUSER_IDLE_SECONDS after refusing, where `Listener.refuser_idle` says so.
        """


@runtime_checkable
class Answering(Observer, Protocol):
    """An observer that knows where the upstream's frames end (`grpc_relay.GrpcObserver`), so that the relay
    can put frames of its own between them."""

    def answer_point(self) -> int:
        """Bytes the upstream must still send before a frame of the relay's own may follow; 0: now."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection's upstream is unreachable, and how its `Refuser` answers the client."""

    reason: str
    write: Callable[[bytes], None]  # to the client (nothing once its socket is closing)
    close: Callable[[], None]


class ParseErrors:
    """Counts parse errors and refused calls and logs them, one line each, at most one a second per kind."""

    def __init__(self, metrics: CallMetrics) -> None:
        self.metrics = metrics
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def report(self, protocol: str, peer: Any, reason: str, closed: bool = False) -> None:
        """`closed`: the reload guard could not read the connection, so the relay closed it."""
        if closed:
            outcome = f"closed: the relay cannot tell whether it carries {guard.RELOAD_METHOD.split('/')[1]}"
        else:
            outcome = "still relayed, no longer counted"
        self._log(protocol, f"{protocol} connection from {_peer(peer)}: cannot parse ({reason}): {outcome}")
        self.metrics.parse_error(protocol)  # after the line: whoever sees the count can read the line

    def refused(self, peer: Any) -> None:
        """A client's HandleReloadConfigRequest was refused."""
        self._log(
            "refused",
            f"grpc connection from {_peer(peer)}: {guard.RELOAD_METHOD} refused (PERMISSION_DENIED; "
            "--allow-config-reload lets it through)",
        )
        self.metrics.refused_call(guard.RELOAD_METHOD)

    def _log(self, kind: str, line: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_INTERVAL) < LOG_INTERVAL:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._last[kind] = now
        quiet = self._quiet.pop(kind, 0)
        log.warning("%s%s", line, f" ({quiet} more such not logged)" if quiet else "")


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return str(peer)


@dataclass
class Listener:
    """What one listen address relays to, and how its connections are observed."""

    protocol: str  # "grpc" or "rest": the parse error label
    upstream: tuple[str, int]
    observer: Callable[[Callable[[], float]], Observer]  # given the clock it is to count with
    refuser: Callable[[Refusal], Refusing]
    errors: ParseErrors
    backlog: Backlog
    refuser_idle: bool = False  # close a refusing connection that makes no call (gRPC clients keep them)
    # REST: the relay's own answer to a request whose response the upstream never began
    unavailable: Callable[[str], bytes] | None = None
    refuse_reload: bool = False  # gRPC: refuse TF Serving's config reload RPC (`guard.ReloadGuard`)


class _Upstream(asyncio.Protocol):
    """The upstream half of a relayed connection."""

    __slots__ = ("client", "transport")

    def __init__(self, client: "ClientSide") -> None:
        self.client = client
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.client.upstream_made(self)  # before any of its bytes can arrive

    def data_received(self, data: bytes) -> None:
        client = self.client
        arrived = perf_counter()
        if client.answer is not None:
            client.answer_between(arrived, data)
            return
        if not client.transport.is_closing():
            client.transport.write(data)
        if client.observer is not None:
            client.seen(arrived, False, data)

    def eof_received(self) -> bool:
        self.client.upstream_finished()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_finished()
        self.client.close()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


class ClientSide(asyncio.Protocol):
    """The client half of a relayed connection; it opens the upstream half."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: Any = None
        self.upstream: _Upstream | None = None
        self.observer: Observer | None = None
        self.peer: Any = None
        self.client_eof = False
        self.upstream_done = False
        self.lost = False
        self._connecting: asyncio.Task[Any] | None = None
        self._early: list[bytes] | None = []  # what the client sent while the upstream was connecting
        self._backlog: list[tuple[float, bool, bytes]] = []  # (arrival, from client, chunk) not yet parsed
        self._now = 0.0  # the arrival time of the chunk being parsed: the observer's clock
        self.reload_guard: guard.ReloadGuard | None = None
        self.answer: bytes | None = None  # the relay's own frames for the client, waiting for a frame boundary

    # --- the client's socket ------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.listener.upstream
        try:
            await asyncio.wait_for(loop.create_connection(lambda: _Upstream(self), host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            if self.upstream is None:
                self._refuse(getattr(e, "strerror", None) or str(e) or type(e).__name__)
        finally:
            self._connecting = None

    def upstream_made(self, upstream: _Upstream) -> None:
        """The upstream connection is there: what the client sent meanwhile goes to it first."""
        if self.lost:
            upstream.transport.close()
            return
        self.upstream = upstream
        self.observer = self.listener.observer(self._clock)
        if self.listener.refuse_reload:
            self.reload_guard = guard.ReloadGuard()
        self._replay()

    def _refuse(self, reason: str) -> None:
        if self.lost:
            return
        self.upstream_done = True
        refuser = self.listener.refuser(Refusal(reason, self._write, self.close))
        self.observer = refuser
        if self.listener.refuser_idle:
            asyncio.get_running_loop().call_later(REFUSER_IDLE_SECONDS, refuser.idle, True)
        self._replay()

    def _replay(self) -> None:
        """Pass on what came while connecting; from now on data goes straight through."""
        early, self._early = self._early, None
        for data in early or ():
            self.data_received(data)
        if self.client_eof:
            self.eof_received()
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self._early is not None:
            self._early.append(data)
            if sum(map(len, self._early)) > EARLY_LIMIT:
                self.transport.pause_reading()
            return
        arrived = perf_counter()
        upstream = self.upstream
        reload_guard = self.reload_guard
        if reload_guard is not None:
            try:
                data = reload_guard.feed(data)
            except ParseError as e:
                self._unguardable(e)
                return
            if reload_guard.refused or reload_guard.credit:
                self._refuse_calls(reload_guard, arrived)
            if not data:
                return
        if upstream is not None and not upstream.transport.is_closing():
            upstream.transport.write(data)
        observer = self.observer
        if observer is None:
            return
        if upstream is not None:
            self.seen(arrived, True, data)
        else:  # no upstream: a `Refuser` answers what it reads, at once
            self._backlog.append((arrived, True, data))
            self.observe_backlog()

    def eof_received(self) -> bool:
        self.client_eof = True
        if self._early is not None:
            return True  # passed on once connected
        upstream = self.upstream
        if upstream is not None and not upstream.transport.is_closing() and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        if self.upstream_done:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._connecting is not None:
            self._connecting.cancel()
        self.observe_backlog()
        self._observer_closed(by_upstream=False)
        if self.upstream is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()

    # --- the reload guard -----------------------------------------------------------------------

    def _unguardable(self, error: ParseError) -> None:
        """The guard cannot read what the client sends: nothing more of it is forwarded."""
        self.reload_guard = None
        self.listener.errors.report(self.listener.protocol, self.peer, str(error), closed=True)
        self.close()

    def _refuse_calls(self, reload_guard: guard.ReloadGuard, arrived: float) -> None:
        """Answer the streams the guard refused, and give back the flow-control credit of what it dropped."""
        frames = []
        for stream in reload_guard.refused:
            frames.append(guard.answer(stream))
            self.listener.errors.refused(self.peer)
        reload_guard.refused.clear()
        if reload_guard.credit:
            frames.append(guard.window_update(reload_guard.credit))
            reload_guard.credit = 0
        self.answer = (self.answer or b"") + b"".join(frames)
        self.answer_between(arrived, b"")

    def answer_between(self, arrived: float, data: bytes) -> None:
        """Relay the upstream's `data` to the client with `answer` put in at the first frame boundary.

        The observer is made to parse everything relayed so far, then `data` up to each point where it
        might end a frame, so its reader is always where the client's is.
        """
        self.observe_backlog()
        pos, end = 0, len(data)
        while True:
            observer = self.observer
            if not isinstance(observer, Answering):  # counting stopped (a parse error): no frame boundary known
                log.warning(
                    "%s connection from %s: closed: a refused call cannot be answered",
                    self.listener.protocol,
                    _peer(self.peer),
                )
                self.answer = None
                self.close()
                return
            step = observer.answer_point()
            if step == 0:
                assert self.answer is not None
                self._write(self.answer)
                self.answer = None
                break
            if pos == end:
                return
            piece = data[pos : pos + step]
            pos += len(piece)
            self._write(piece)
            self._now = arrived
            try:
                observer.server_data(piece)
            except Exception as e:
                self.parse_failed(e)
        if pos < end:
            rest = data[pos:] if pos else data
            self._write(rest)
            self.seen(arrived, False, rest)

    # --- called by the upstream half ------------------------------------------------------------

    def upstream_finished(self) -> None:
        """The upstream sent its last byte (EOF, or the connection is gone)."""
        if self.upstream_done:
            return
        self.upstream_done = True
        self.observe_backlog()
        observer = self.observer
        unavailable = self.listener.unavailable
        if observer is not None and unavailable is not None and not self.client_eof and observer.unanswered():
            self._write(unavailable("the upstream closed the connection"))
        self._observer_closed(by_upstream=not self.client_eof, upstream_ended=True)
        transport = self.transport
        if self.client_eof:
            self.close()
        elif not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()

    # --- counting, off the data path ----------------------------------------------------------

    def _clock(self) -> float:
        return self._now

    def seen(self, arrived: float, from_client: bool, data: bytes) -> None:
        """A chunk went on: it waits in the backlog until the worker parses it, unless it is large.

        A large chunk (a tensor's bytes) is parsed at once, after what waits: its parse costs little
        for its size, and holding it would keep memory from being reused while the next ones arrive.
        """
        backlog = self._backlog
        if len(data) >= PARSE_AT_ONCE_BYTES:
            backlog.append((arrived, from_client, data))
            self.observe_backlog()
            return
        if not backlog:
            self.listener.backlog.wait(self)
        backlog.append((arrived, from_client, data))
        self.listener.backlog.grew(len(data))

    def observe_backlog(self) -> None:
        """Parse the waiting chunks, each at the time it arrived."""
        backlog = self._backlog
        if not backlog:
            return
        self._backlog = []
        self.listener.backlog.done(self)
        observer = self.observer
        if observer is None:
            return
        try:
            for self._now, from_client, data in backlog:
                if from_client:
                    observer.client_data(data)
                else:
                    observer.server_data(data)
        except Exception as e:
            self.parse_failed(e)

    def _observer_closed(self, by_upstream: bool, upstream_ended: bool = False) -> None:
        observer, self.observer = self.observer, None
        self._now = perf_counter()
        if observer is not None:
            try:
                observer.closed(by_upstream, upstream_ended)
            except Exception as e:
                log.warning(
                    "%s connection from %s: counting failed at close: %s", self.listener.protocol, _peer(self.peer), e
                )

    def parse_failed(self, error: Exception) -> None:
        observer, self.observer = self.observer, None
        self._backlog = []
        if observer is not None:
            observer.abandon()
        reason = str(error) if isinstance(error, ParseError) else f"{type(error).__name__}: {error}"
        self.listener.errors.report(self.listener.protocol, self.peer, reason)
        if self.upstream is None and self.upstream_done:  # a refusing connection that is not the protocol
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(listener: Listener, host: str, port: int, reuse_port: bool) -> asyncio.Server:
    """Accept connections on host:port and relay each to the listener's upstream."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: ClientSide(listener), host, port, reuse_port=reuse_port or None, backlog=1024
    )
