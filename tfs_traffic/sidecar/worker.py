"""A relay worker process: the gRPC and REST relays on one event loop (uvloop's).

The supervisor (`main.py`) starts N of these; they share the listen ports through SO_REUSEPORT,
count into prometheus_client's multiprocess files, and follow the poller's view through a JSON file
that the supervisor replaces atomically whenever it changes. A pipe from the supervisor (`control`)
says when to read that file again and when a scrape wants every waiting backlog counted; an idle
worker therefore sleeps until a connection or the supervisor has something for it.
"""

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tfs_traffic.sidecar import metrics
from tfs_traffic.sidecar.backlog import Backlog
from tfs_traffic.sidecar.view import View, ViewHolder

log = logging.getLogger("tfs_traffic.sidecar")

# What the supervisor sends over the control pipe.
READ_VIEW = b"view"  # the view file changed
FLUSH = b"flush"  # + a sequence number: parse every backlog, then answer with the same bytes


@dataclass(frozen=True)
class WorkerConfig:
    index: int
    multiproc_dir: str
    view_path: str
    upstream_grpc: tuple[str, int]
    upstream_rest: tuple[str, int] | None
    listen_grpc: tuple[str, int] | None
    listen_rest: tuple[str, int] | None
    reuse_port: bool
    count_delay: float = 1.0
    log_level: int = logging.INFO
    allow_config_reload: bool = False


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the supervisor dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)


def read_view(path: str) -> View:
    try:
        return View.from_json(Path(path).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return View()


def _tell(control: Connection | None, message: tuple[str, Any]) -> None:
    """Report to the supervisor, which may no longer listen (a restarted worker)."""
    if control is not None:
        with contextlib.suppress(OSError):
            control.send(message)


def listeners(
    config: WorkerConfig, holder: ViewHolder, calls: metrics.CallMetrics, backlog: Backlog
) -> list[tuple[Any, Any]]:
    """(listener, listen address) of each relay the worker runs."""
    from tfs_traffic.sidecar import grpc_relay, relay, rest_relay

    errors = relay.ParseErrors(calls)

    def listener(
        protocol: str,
        upstream: tuple[str, int],
        observer: Callable[[ViewHolder, metrics.CallMetrics, Callable[[], float]], relay.Observer],
        refuser: Callable[[ViewHolder, metrics.CallMetrics, relay.Refusal], relay.Refusing],
        refuser_idle: bool = False,
        unavailable: Callable[[str], bytes] | None = None,
        refuse_reload: bool = False,
    ) -> relay.Listener:
        """A relay whose connections count into `calls`, under the view `holder` has at the time."""
        counting, refusing = functools.partial(observer, holder, calls), functools.partial(refuser, holder, calls)
        return relay.Listener(
            protocol, upstream, counting, refusing, errors, backlog, refuser_idle, unavailable, refuse_reload
        )

    out = []
    if config.listen_grpc:
        grpc = listener(
            "grpc",
            config.upstream_grpc,
            grpc_relay.GrpcObserver,
            grpc_relay.Refuser,
            refuser_idle=True,
            refuse_reload=not config.allow_config_reload,
        )
        out.append((grpc, config.listen_grpc))
    if config.listen_rest and config.upstream_rest:
        rest = listener(
            "rest",
            config.upstream_rest,
            rest_relay.RestObserver,
            rest_relay.Refuser,
            unavailable=rest_relay.unavailable_response,
        )
        out.append((rest, config.listen_rest))
    return out


def _follow(control: Connection, holder: ViewHolder, backlog: Backlog, path: str, stop: asyncio.Event) -> None:
    """One message from the supervisor; its end (EOF) means the supervisor is gone."""
    try:
        message = control.recv_bytes()
    except (EOFError, OSError):
        stop.set()
        return
    if message == READ_VIEW:
        backlog.flush()  # what arrived under the old view is counted under it
        _follow_view(holder, path)
    elif message.startswith(FLUSH):
        backlog.flush()
        with contextlib.suppress(OSError):
            control.send_bytes(message)


async def serve(config: WorkerConfig, control: Connection | None) -> None:
    """Run the relays until SIGTERM or until the supervisor goes away."""
    from tfs_traffic.sidecar import relay

    holder = ViewHolder(read_view(config.view_path))
    calls = metrics.CallMetrics()
    backlog = Backlog(config.count_delay, batch=calls.batch)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    servers: list[asyncio.Server] = []
    try:
        for listener, (host, port) in listeners(config, holder, calls, backlog):
            servers.append(await relay.serve(listener, host, port, config.reuse_port))
    except Exception as e:
        _tell(control, ("error", f"{type(e).__name__}: {e}"))
        raise SystemExit(1) from None
    _tell(control, ("ready", os.getpid()))
    if control is not None:
        loop.add_reader(control.fileno(), _follow, control, holder, backlog, config.view_path, stop)
        # The view may have changed between the spawn and the reader: read it once more.
        backlog.flush()
        _follow_view(holder, config.view_path)
    await stop.wait()
    for server in servers:
        server.close()
    backlog.flush()


def _follow_view(holder: ViewHolder, path: str) -> None:
    view = read_view(path)
    view.carry_learned(holder.view)
    holder.view = view


def main(config: WorkerConfig, control: Connection | None = None) -> None:
    """Process entry point (spawned by the supervisor)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    logging.basicConfig(level=config.log_level, format="tfs-traffic sidecar[worker %(process)d]: %(message)s")
    metrics.enable_multiprocess(config.multiproc_dir)
    import uvloop  # measured: less CPU per relayed call than asyncio's own loop (README, Overhead)

    uvloop.run(serve(config, control))
