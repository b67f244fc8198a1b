"""`tfs-traffic sim`: a stand-in TF Serving for tests, benchmarks and the demo.

A real TF Serving cannot run here, so this serves TF Serving's gRPC API (PredictionService,
ModelService), its REST API and its Prometheus page — with the patched per-version metrics of
docs/metrics.md — from a TF Serving model config (a file, or `--model_name`/`--model_base_path`).
See `core` (config, labels, resolution, counters), `source` and `manager` (versions on disk,
loads and unloads), `service` (service layer), `grpc_api`, `rest_api` and `half_plus_two`.

Startup follows `Server::BuildAndStart` (`model_servers/server.cc`): the config is parsed and
applied (`ServerCore::Create`, which waits until every model has a version AVAILABLE), then the
config-file poller starts, then gRPC (TCP and/or a UNIX socket), then REST. A refusal is a
`StartupError` (`main.cc` prints `Failed to start server. Error: ...` and exits 255). Once
everything loaded at startup is AVAILABLE it calls `started` — the command prints
`grpc=HOST:PORT rest=HOST:PORT` then.

Use it as a subprocess (`tfs-traffic sim --models-config FILE --grpc-addr 127.0.0.1:0 ...`) or
in-process:

    with Sim(config_path, latency_ms=2) as sim:
        stub = PredictionServiceStub(grpc.insecure_channel(sim.grpc_target))
        ...
        sim.call_counts()  # {("model", "1"): 3, ...}
"""

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tfs_traffic import exposition
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.sim import protofile, protos, tflog
from tfs_traffic.sim.core import ServerCore, SimFatal
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.service import SimService, in_thread

DEFAULT_GRPC = "127.0.0.1:8500"
DEFAULT_REST = "127.0.0.1:8501"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


class StartupError(ToolError):
    """TF Serving refused to start: `main.cc` prints `Failed to start server. Error: STATUS` on stdout
    and returns -1 (exit status 255)."""

    exit_code = 255

    def __init__(self, error: SimError) -> None:
        super().__init__(f"Failed to start server. Error: {error.code.name}: {error.message}")
        self.error = error


def monitoring_path(config_file: str | Path, log: tflog.Log = tflog.to_stderr) -> str | None:
    """The Prometheus page path a `--monitoring_config_file` turns on, or None when it stays off.

    `http_server.cc:CreateAndStartHttpServer` registers the exporter only when
    `prometheus_config.enable` is set, at `prometheus_config.path` or the default path.
    """
    try:
        config = protofile.parse_proto_text_file(config_file, protofile.message_class("MonitoringConfig"), log)
    except SimError as e:
        raise StartupError(e) from None
    if not config.prometheus_config.enable:
        return None
    return str(config.prometheus_config.path) or PROMETHEUS_PATH


def single_model_config(model_name: str, model_base_path: str) -> Any:
    """`BuildSingleModelConfig`: one model, platform tensorflow (`--model_name`/`--model_base_path`)."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=model_name, base_path=model_base_path, model_platform="tensorflow")
    return config


def split_addr(addr: str) -> tuple[str, int]:
    """HOST:PORT (or [v6]:PORT, or :PORT for all interfaces) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"bad address {addr!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def model_server_config_class() -> Any:
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2.ModelServerConfig


class Sim:
    """The stand-in server on its own event-loop thread: start(), the bound addresses, stop().

    `models_config` is the ModelServerConfig file (`--model_config_file`; `config`, if given, is its
    content already parsed, and the file is read again only by the config poll); without it the server
    serves one model, `model_name` at `model_base_path` (`--model_name`/`--model_base_path`).
    `grpc_addr`/`rest_addr` may use port 0; `grpc_target`/`rest_url` then tell the real ports;
    `grpc_addr` None serves gRPC only on `grpc_socket_path` (`--grpc_socket_path`), `rest_addr` None
    serves no REST. `poll_seconds` is `--file_system_poll_wait_seconds` (0: once, negative: never);
    `config_poll_seconds` > 0 re-reads and re-applies the config file that often
    (`--model_config_file_poll_wait_seconds`). `prometheus_path` is where the metrics page is (None:
    no page; TF Serving serves one only with a `--monitoring_config_file` that enables it, the sim
    serves it at the default path unless told otherwise because every test and demo scrapes it).
    The other keywords are the flags of the same names (see `flags`).
    """

    def __init__(
        self,
        models_config: str | Path | None = None,
        grpc_addr: str | None = "127.0.0.1:0",
        rest_addr: str | None = "127.0.0.1:0",
        latency_ms: float = 0.0,
        poll_seconds: float = 1.0,
        config_poll_seconds: float = 0.0,
        light_protos: bool = False,
        log: tflog.Log | None = None,
        allow_labels_for_unavailable: bool = False,
        prometheus_path: str | None = PROMETHEUS_PATH,
        grpc_health: bool = False,
        config: Any = None,
        model_name: str = "default",
        model_base_path: str | None = None,
        grpc_socket_path: str | None = None,
        rest_timeout_ms: int = 30000,
        cors: bool = False,
        tensor_content: bool = False,
        grpc_channel_args: Sequence[tuple[str, int | str]] = (),
        ssl_config: Any = None,
    ) -> None:
        self.models_config = Path(models_config) if models_config is not None else None
        self.protos = protos.load(light=light_protos)
        self.log = log or tflog.to_stderr
        self.prometheus_path = prometheus_path
        self.grpc_health = grpc_health
        self.grpc_socket_path = grpc_socket_path
        self.grpc_channel_args = list(grpc_channel_args)
        self.ssl_config = ssl_config
        if not grpc_addr and not grpc_socket_path:
            raise StartupError(
                SimError(
                    Code.INVALID_ARGUMENT,
                    "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set.",
                )
            )
        if config is not None:
            pass  # parsed by the caller
        elif self.models_config is not None:
            config = self._read_config(startup=True)
        elif model_base_path:
            config = single_model_config(model_name, model_base_path)
        else:
            raise StartupError(
                SimError(
                    Code.INVALID_ARGUMENT,
                    "Both server_options.model_base_path and server_options.model_config_file are empty!",
                )
            )
        try:
            self.core = ServerCore(
                config,
                log=self.log,
                allow_labels_for_unavailable=allow_labels_for_unavailable,
                file_system_poll_seconds=poll_seconds,
            )
        except SimError as e:
            raise StartupError(e) from None
        self.service = SimService(self.core, self.protos, tensor_content=tensor_content)
        self.latency_s = max(0.0, latency_ms) / 1000.0
        self.rest_timeout_s = rest_timeout_ms / 1000.0 if rest_timeout_ms > 0 else None
        self.cors = cors
        self.poll_seconds = poll_seconds
        self.config_poll_seconds = config_poll_seconds
        self._grpc = split_addr(grpc_addr) if grpc_addr else None
        self._rest = split_addr(rest_addr) if rest_addr else None
        self.grpc_port = 0
        self.rest_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.reload_error: str | None = None  # the last config poll's refusal, None once one succeeded

    def _read_config(self, startup: bool) -> Any:
        """`ParseProtoTextFile<ModelServerConfig>` of the config file."""
        assert self.models_config is not None
        try:
            return protofile.parse_proto_text_file(self.models_config, model_server_config_class(), self.log)
        except SimError as e:
            if startup:
                raise StartupError(e) from None
            raise

    # --- addresses ---

    @property
    def grpc_target(self) -> str:
        if self._grpc is None:
            return f"unix:{self.grpc_socket_path}"
        host = "127.0.0.1" if self._grpc[0] in ("0.0.0.0", "::") else self._grpc[0]
        return _join(host, self.grpc_port)

    @property
    def rest_url(self) -> str:
        if self._rest is None or not self.rest_port:
            raise ToolError("the sim serves no REST")
        host = "127.0.0.1" if self._rest[0] in ("0.0.0.0", "::") else self._rest[0]
        return f"http://{_join(host, self.rest_port)}"

    def ready_line(self) -> str:
        """`grpc=HOST:PORT rest=HOST:PORT` (and `unix=PATH`), printed by the command once it serves."""
        parts = []
        if self._grpc is not None:
            parts.append(f"grpc={_join(self._grpc[0], self.grpc_port)}")
        if self.grpc_socket_path:
            parts.append(f"unix={self.grpc_socket_path}")
        if self._rest is not None and self.rest_port:
            parts.append(f"rest={_join(self._rest[0], self.rest_port)}")
        return " ".join(parts)

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
        """Look at the version directories now instead of at the next poll."""
        self.core.poll()

    # --- lifecycle ---

    async def serve(self, started: Callable[[], None] | None = None) -> None:
        """Serve until stop(); call `started` once both ports are bound and the startup loads are done."""
        import grpc
        from aiohttp import web

        from tfs_traffic.sim.grpc_api import add_servicers, health_handler
        from tfs_traffic.sim.rest_api import make_app

        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        stop_waiter = asyncio.ensure_future(self._stop_event.wait())
        # ServerCore::Create: wait (without a timeout) until every model has a version AVAILABLE
        try:
            await in_thread(self.core.start)
        except SimError as e:
            raise StartupError(e) from None
        if self._stopping.is_set() or self._stop_event.is_set():
            self.core.stop()
            return
        poller = server = runner = None
        try:
            if self.config_poll_seconds > 0 and self.models_config is not None:
                poller = threading.Thread(
                    target=self._config_poll_loop, name="tfs-traffic-sim-config-poll", daemon=True
                )
                poller.start()
            server = await self._start_grpc(grpc, add_servicers, health_handler)
            if self._rest is not None:
                runner = web.AppRunner(
                    make_app(self.service, self.latency_s, self.prometheus_path, self.rest_timeout_s, self.cors),
                    access_log=None,
                    handle_signals=False,
                )
                await runner.setup()
                site = web.TCPSite(runner, self._rest[0], self._rest[1], backlog=1024)
                try:
                    await site.start()
                except OSError:  # TF Serving logs it and serves on without REST
                    self.log("E", f"Failed to start HTTP Server at localhost:{self._rest[1]}")
                else:
                    sockets = getattr(site._server, "sockets", None) or []
                    self.rest_port = sockets[0].getsockname()[1] if sockets else self._rest[1]
            await loop.run_in_executor(None, self._settled)
            if started:
                started()
            await stop_waiter
        finally:
            self._stopping.set()
            self.core.stop()
            if runner is not None:
                await runner.cleanup()
            if server is not None:
                await server.stop(grace=0.5)
            if poller is not None:
                poller.join(timeout=5)

    async def _start_grpc(self, grpc: Any, add_servicers: Any, health_handler: Any) -> Any:
        """The gRPC server on the TCP address and/or the UNIX socket; StartupError if a bind fails
        (`ServerBuilder::BuildAndStart` returns null: `Failed to BuildAndStart gRPC server`)."""
        server = grpc.aio.server(
            options=[  # ServerBuilder applies the channel arguments first, SetMaxMessageSize after
                ("grpc.so_reuseport", 0),
                *self.grpc_channel_args,
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
            ],
            maximum_concurrent_rpcs=None,
        )
        add_servicers(server, self.service, self.latency_s)
        if self.grpc_health:
            server.add_generic_rpc_handlers((health_handler(),))
        credentials = self._server_credentials()
        targets = [_join(*self._grpc)] if self._grpc is not None else []
        if self.grpc_socket_path:
            targets.append(f"unix:{self.grpc_socket_path}")
        for target in targets:
            try:
                if credentials is not None:
                    port = server.add_secure_port(target, credentials)
                else:
                    port = server.add_insecure_port(target)
            except RuntimeError:
                port = 0
            if port == 0:
                raise StartupError(SimError(Code.INVALID_ARGUMENT, "Failed to BuildAndStart gRPC server"))
            if not target.startswith("unix:"):
                self.grpc_port = port
        await server.start()
        return server

    def _settled(self) -> None:
        """Until the manager has loaded everything the first polls asked for (or the sim stops)."""
        while not self.core.manager.idle() and not self._stopping.wait(0.02):
            pass

    def _server_credentials(self) -> Any:
        """`BuildServerCredentials` from `--ssl_config_file`'s SSLConfig, or None (insecure)."""
        if self.ssl_config is None:
            return None
        import grpc

        ssl = self.ssl_config
        return grpc.ssl_server_credentials(
            [(ssl.server_key.encode(), ssl.server_cert.encode())],
            root_certificates=ssl.custom_ca.encode() or None,
            require_client_auth=ssl.client_verify,
        )

    def _config_poll_loop(self) -> None:
        """`Server::PollFilesystemAndReloadConfig` every `config_poll_seconds`, the first time now."""
        while not self._stopping.is_set():
            self.reload_now()
            if self._stopping.wait(self.config_poll_seconds):
                return

    def reload_now(self) -> None:
        """One config poll: read the file and `ReloadConfig` it, logging a failure."""
        try:
            config = self._read_config(startup=False)
        except SimError as e:
            self.log("E", f"Failed to read ModelServerConfig file: {e.message}")
            self.reload_error = e.message
            return
        try:
            self.core.reload_config(config)
        except SimError as e:
            self.log("E", f"config reload failed: {e.message}")
            self.reload_error = e.message
            return
        self.reload_error = None

    def start(self, timeout: float = 30.0) -> "Sim":
        """Serve on a background thread; returns once it serves (see `serve`)."""

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
            self.stop()
            raise ToolError("the sim did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        self._stopping.set()
        self.core.stop()
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
            sim._stopping.set()
            sim.core.stop()
            if sim._stop_event is not None:
                sim._stop_event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await sim.serve(lambda: out(sim.ready_line()))

    asyncio.run(main())
    return 0


__all__ = ["Sim", "SimFatal", "StartupError", "monitoring_path", "run_forever", "single_model_config"]
