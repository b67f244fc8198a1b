"""`tfs-traffic sim`: a stand-in TF Serving for tests, benchmarks and the demo.

A real TF Serving cannot run here, so this serves TF Serving's gRPC API (PredictionService,
ModelService), its REST API and its Prometheus page — with the patched per-version metrics of
docs/metrics.md — from a TF Serving model config file, for half_plus_two (y = 0.5x + 2) in every
version of every model. See `core` (versions, labels, resolution, counters), `service`
(service layer), `grpc_api`, `rest_api` and `half_plus_two`.

Use it as a subprocess (`tfs-traffic sim --models-config FILE --grpc-addr 127.0.0.1:0 ...` prints
`grpc=HOST:PORT rest=HOST:PORT` once it serves) or in-process:

    with Sim(config_path, latency_ms=2) as sim:
        stub = PredictionServiceStub(grpc.insecure_channel(sim.grpc_target))
        ...
        sim.call_counts()  # {("model", "1"): 3, ...}
"""

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfs_traffic import exposition, modelconfig
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.sim import protos
from tfs_traffic.sim.core import ServerCore
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.service import SimService

DEFAULT_GRPC = "127.0.0.1:8500"
DEFAULT_REST = "127.0.0.1:8501"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


class StartupError(ToolError):
    """TF Serving refused its startup config: `main.cc` prints `Failed to start server. Error: ...`
    and returns -1 (exit status 255)."""

    exit_code = 255


def _monitoring_config_class() -> Any:
    """`tensorflow_serving/config/monitoring_config.proto`'s MonitoringConfig (tensorflow-serving-api
    does not ship it), built from the same two messages and field numbers."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="tfs_traffic_monitoring_config.proto", package="tfs_traffic.sim")
    file.syntax = "proto3"
    prom = file.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=8, label=1)  # bool
    prom.field.add(name="path", number=2, type=9, label=1)  # string
    mon = file.message_type.add(name="MonitoringConfig")
    mon.field.add(name="prometheus_config", number=1, type=11, label=1, type_name=".tfs_traffic.sim.PrometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tfs_traffic.sim.MonitoringConfig"))


def monitoring_path(config_file: str | Path) -> str | None:
    """The Prometheus page path a `--monitoring_config_file` turns on, or None when it stays off.

    `http_server.cc:CreateAndStartHttpServer` registers the exporter only when
    `prometheus_config.enable` is set, at `prometheus_config.path` or the default path.
    """
    from google.protobuf import text_format

    from tfs_traffic.files import read_user_text

    config = _monitoring_config_class()()
    try:
        text_format.Parse(read_user_text(config_file, "monitoring config"), config)
    except text_format.ParseError as e:
        raise UsageError(f"{config_file}: {e}") from None
    if not config.prometheus_config.enable:
        return None
    return str(config.prometheus_config.path) or PROMETHEUS_PATH


def split_addr(addr: str) -> tuple[str, int]:
    """HOST:PORT (or [v6]:PORT, or :PORT for all interfaces) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"bad address {addr!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Sim:
    """The stand-in server on its own event-loop thread: start(), the bound addresses, stop().

    `grpc_addr`/`rest_addr` may use port 0; `grpc_target`/`rest_url` then tell the real ports.
    `poll_seconds` is how often model base paths are re-read (TF Serving's
    `--file_system_poll_wait_seconds`); `config_poll_seconds` > 0 also re-reads the config file
    (`--model_config_file_poll_wait_seconds`) and reloads it every time, as
    `Server::PollFilesystemAndReloadConfig` does (a refused config is retried each period).
    `allow_labels_for_unavailable` is `--allow_version_labels_for_unavailable_models`.
    `prometheus_path` is where the metrics page is served (None: no page). TF Serving serves one
    only with a `--monitoring_config_file` that enables it; the sim serves it at the default path
    unless told otherwise, because every test, benchmark and demo scrapes it. `grpc_health` is
    `--enable_grpc_healthcheck_service`.
    """

    def __init__(
        self,
        models_config: str | Path,
        grpc_addr: str = "127.0.0.1:0",
        rest_addr: str | None = "127.0.0.1:0",
        latency_ms: float = 0.0,
        poll_seconds: float = 1.0,
        config_poll_seconds: float = 0.0,
        light_protos: bool = False,
        log: Callable[[str], None] | None = None,
        allow_labels_for_unavailable: bool = False,
        prometheus_path: str | None = PROMETHEUS_PATH,
        grpc_health: bool = False,
    ) -> None:
        self.models_config = Path(models_config)
        self.protos = protos.load(light=light_protos)
        self.prometheus_path = prometheus_path
        self.grpc_health = grpc_health
        config = modelconfig.load(self.models_config)
        try:
            self.core = ServerCore(config, log=log, allow_labels_for_unavailable=allow_labels_for_unavailable)
        except SimError as e:
            if e.code == Code.FAILED_PRECONDITION:
                raise StartupError(f"Failed to start server. Error: {e.code.name}: {e.message}") from None
            raise UsageError(f"{models_config}: {e.message}") from None
        self.service = SimService(self.core, self.protos)
        self.latency_s = max(0.0, latency_ms) / 1000.0
        self.poll_seconds = poll_seconds
        self.config_poll_seconds = config_poll_seconds
        self._grpc_host, self._grpc_port = split_addr(grpc_addr)
        self._rest = split_addr(rest_addr) if rest_addr else None
        self.grpc_port = 0
        self.rest_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.reload_error: str | None = None  # the last config poll's refusal, None once one succeeded

    # --- addresses ---

    @property
    def grpc_target(self) -> str:
        host = "127.0.0.1" if self._grpc_host in ("0.0.0.0", "::") else self._grpc_host
        return _join(host, self.grpc_port)

    @property
    def rest_url(self) -> str:
        if self._rest is None:
            raise ToolError("the sim was started without a REST address")
        host = "127.0.0.1" if self._rest[0] in ("0.0.0.0", "::") else self._rest[0]
        return f"http://{_join(host, self.rest_port)}"

    def ready_line(self) -> str:
        """`grpc=HOST:PORT rest=HOST:PORT`, printed by the command once it serves."""
        rest = f" rest={_join(self._rest[0], self.rest_port)}" if self._rest else ""
        return f"grpc={_join(self._grpc_host, self.grpc_port)}{rest}"

    # --- counters, for tests ---

    def call_counts(self) -> dict[tuple[str, str], int]:
        """`:tensorflow:serving:model_call_count` cells: (model, version) -> count, zero cells included."""
        return self.core.call_counts()

    def version_available(self) -> dict[tuple[str, str], int]:
        return self.core.version_available()

    def request_counts(self) -> dict[tuple[str, str], int]:
        return self.core.request_counts()

    def metrics_page(self) -> str:
        return exposition.render(self.core.families())

    def poll_now(self) -> None:
        """Re-read the version directories now instead of waiting for the next poll."""
        self.core.poll()

    # --- lifecycle ---

    async def serve(self, started: Callable[[], None] | None = None) -> None:
        """Serve until stop(); call `started` once both ports are bound."""
        import grpc
        from aiohttp import web

        from tfs_traffic.sim.grpc_api import add_servicers, health_handler
        from tfs_traffic.sim.rest_api import make_app

        self._stop_event = asyncio.Event()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=None,
        )
        add_servicers(server, self.service, self.latency_s)
        if self.grpc_health:
            server.add_generic_rpc_handlers((health_handler(),))
        port = server.add_insecure_port(_join(self._grpc_host, self._grpc_port))
        if port == 0:
            raise ToolError(f"cannot listen for gRPC on {_join(self._grpc_host, self._grpc_port)}")
        self.grpc_port = port
        await server.start()
        runner = None
        try:
            if self._rest is not None:
                runner = web.AppRunner(
                    make_app(self.service, self.latency_s, self.prometheus_path), access_log=None, handle_signals=False
                )
                await runner.setup()
                site = web.TCPSite(runner, self._rest[0], self._rest[1], backlog=1024)
                try:
                    await site.start()
                except OSError as e:
                    raise ToolError(f"cannot listen for REST on {_join(*self._rest)}: {e.strerror or e}") from None
                sockets = getattr(site._server, "sockets", None) or []
                self.rest_port = sockets[0].getsockname()[1] if sockets else self._rest[1]
            if started:
                started()
            poller = asyncio.ensure_future(self._poll_loop())
            await self._stop_event.wait()
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        finally:
            if runner is not None:
                await runner.cleanup()
            await server.stop(grace=0.5)

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        elapsed_config = 0.0
        step = self.poll_seconds if self.poll_seconds > 0 else 3600.0
        if self.config_poll_seconds > 0:
            step = min(step, self.config_poll_seconds)
        while True:
            await asyncio.sleep(step)
            if self.config_poll_seconds > 0:
                elapsed_config += step
                if elapsed_config >= self.config_poll_seconds:
                    elapsed_config = 0.0
                    await loop.run_in_executor(None, self.reload_now)
            if self.poll_seconds > 0:
                await loop.run_in_executor(None, self.core.poll)

    def reload_now(self) -> None:
        """One config poll: read the file and `ReloadConfig` it; a refusal is logged once per message."""
        try:
            self.core.reload_config(modelconfig.load(self.models_config))
        except (ToolError, SimError) as e:
            message = e.message if isinstance(e, SimError) else str(e)
            if message != self.reload_error:
                print(f"tfs-traffic sim: config reload failed: {message}", flush=True)
            self.reload_error = message
            return
        self.reload_error = None

    def start(self, timeout: float = 30.0) -> "Sim":
        """Serve on a background thread; returns once both ports are bound."""

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.serve(self._ready.set))
            except BaseException as e:
                self._error = e
                self._ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="tfs-traffic-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ToolError("the sim did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "Sim":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_forever(sim: Sim, out: Callable[[str], None]) -> int:
    """The command: serve in the foreground until SIGTERM or SIGINT, print the ready line."""

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            if sim._stop_event is not None:
                sim._stop_event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await sim.serve(lambda: out(sim.ready_line()))

    asyncio.run(main())
    return 0
