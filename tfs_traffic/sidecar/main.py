"""The sidecar's supervisor: status poller, metrics endpoint, and the relay worker processes.

One process polls the upstream's model status and serves `/metrics`. In relay mode it also starts
`--workers N` relay processes (spawned, not forked: the poller's gRPC does not survive fork) that share the
listen ports with SO_REUSEPORT, restarts any that die, and publishes the poller's view to them
through a file. Metrics of all processes go through prometheus_client's multiprocess mode, in a
private temporary directory, so one scrape shows their sum; before it is read, every worker is
asked to count what its backlog holds (`worker.FLUSH`), so the scrape misses no call already answered.
Nothing here wakes up on a timer but the status poll and the models config check.
"""

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.files import write_atomic
from tfs_traffic.sidecar import estimate, metrics, worker
from tfs_traffic.sidecar.estimate import Estimator
from tfs_traffic.sidecar.poller import ConfigWatcher, StatusPoller
from tfs_traffic.sidecar.view import View
from tfs_traffic.sidecar.worker import WorkerConfig

log = logging.getLogger("tfs_traffic.sidecar")

CONFIG_CHECK_SECONDS = 1.0
# After the models config changes the server applies it at its own next poll: ask again every second
# while it has not caught up, for at most this long, then fall back to --poll-interval.
SETTLE_SECONDS = 60.0
READY_TIMEOUT = 30.0
RESTART_BACKOFF_SECONDS = 1.0
FLUSH_TIMEOUT = 2.0  # a worker busier than this misses one scrape's flush, not the scrape


@dataclass(frozen=True)
class SidecarOptions:
    models_config: str
    upstream_grpc: str
    upstream_rest: str | None = None
    listen_grpc: str | None = None
    listen_rest: str | None = None
    metrics_addr: str = ":9102"
    poll_interval: float = 15.0
    workers: int = 1
    count_delay: float = 1.0
    estimate_max_files: int = estimate.MAX_FILES
    estimate_timeout: float = estimate.MAX_SECONDS
    log_level: int = logging.INFO
    allow_config_reload: bool = False


def parse_addr(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, :PORT or PORT (all interfaces)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"{what}: invalid address {text!r}: use HOST:PORT, e.g. 127.0.0.1:8500") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"{what}: invalid port in {text!r}")
    return host, number


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _claim_port(host: str, port: int, what: str) -> int:
    """Check that the address is free (a clear error instead of a worker failing) and pick a port for 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ToolError(f"{what}: cannot listen on {_join(host, port)}: {e.strerror or e}") from None
        return int(s.getsockname()[1])


def validate(options: SidecarOptions) -> None:
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    if options.estimate_max_files < 1:
        raise UsageError("--estimate-max-files must be at least 1")
    if options.estimate_timeout <= 0:
        raise UsageError("--estimate-timeout must be positive")
    if options.listen_rest and not options.upstream_rest:
        raise UsageError("--listen-rest needs --upstream-rest (the upstream's REST address)")
    parse_addr(options.upstream_grpc, "--upstream-grpc")
    if options.upstream_rest:
        parse_addr(options.upstream_rest, "--upstream-rest")


class Supervisor:
    def __init__(self, options: SidecarOptions) -> None:
        self.options = options
        self.stop = threading.Event()
        self.workdir: Path | None = None
        self.processes: list[Any] = []
        self.controls: list[Any] = []  # the supervisor's end of each worker's control pipe
        self.configs: list[WorkerConfig] = []
        self._context = multiprocessing.get_context("spawn")
        self._control_lock = threading.Lock()  # scrapes (HTTP threads) and the main loop both send
        self._flushes = 0
        self._wake_read, self._wake_write = os.pipe()  # a signal wakes the main loop through it

    def run(self) -> int:
        options = self.options
        validate(options)
        watcher = ConfigWatcher(options.models_config)
        watcher.load()
        proxying = bool(options.listen_grpc or options.listen_rest)
        if proxying:
            self.workdir = Path(tempfile.mkdtemp(prefix="tfs-traffic-sidecar-"))
            (self.workdir / "metrics").mkdir()
            metrics.enable_multiprocess(str(self.workdir / "metrics"))
        try:
            return self._run(watcher, proxying)
        finally:
            self._stop_workers()
            os.close(self._wake_read)
            os.close(self._wake_write)
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self, watcher: ConfigWatcher, proxying: bool) -> int:
        import prometheus_client

        options = self.options
        status = metrics.StatusMetrics()
        host, port = parse_addr(options.metrics_addr, "--metrics-addr")
        try:
            registry = metrics.scrape_registry(before=self.flush_workers)
            httpd, _ = prometheus_client.start_http_server(port, host, registry=registry)
        except OSError as e:
            raise ToolError(f"--metrics-addr: cannot listen on {_join(host, port)}: {e.strerror or e}") from None
        metrics_port = httpd.server_address[1]
        view_path = self.workdir / "view.json" if self.workdir else None

        def publish(view: View) -> None:
            if view_path is not None:
                text = view.to_json()
                if not view_path.exists() or view_path.read_text() != text:
                    write_atomic(view_path, text)
                    self._tell_workers(worker.READ_VIEW)

        # At least a second per poll: a sub-second --poll-interval must not turn a busy upstream into "down".
        timeout = max(1.0, min(5.0, options.poll_interval))
        estimator = Estimator(options.estimate_max_files, options.estimate_timeout)
        poller = StatusPoller(watcher, options.upstream_grpc, status, publish, timeout=timeout, estimator=estimator)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_signal)
        try:
            poller.poll()
            if not poller.up:
                self._say_if_tls()
            described = [f"metrics http://{_join(host, metrics_port)}/metrics"]
            if proxying:
                assert view_path is not None
                described += self._start_workers(str(view_path))
            described.append(f"{len(watcher.models)} model(s) from {options.models_config}")
            log.info("ready: %s", "; ".join(described))
            self._loop(watcher, poller)
        finally:
            poller.close()
            httpd.shutdown()
        return 0

    def _stop_signal(self, *_: Any) -> None:
        self.stop.set()
        os.write(self._wake_write, b"x")

    def _tell_workers(self, message: bytes) -> None:
        with self._control_lock:
            self._send(message)

    def _send(self, message: bytes) -> list[Any]:
        """Send `message` to every worker (holding the control lock); the controls it reached."""
        reached = []
        for control in self.controls:
            try:
                control.send_bytes(message)
            except OSError:
                continue  # a worker that died: restarted by the main loop
            reached.append(control)
        return reached

    def flush_workers(self) -> None:
        """Have every worker count its backlog, and wait (a bounded time) until each has."""
        with self._control_lock:
            self._flushes += 1
            message = worker.FLUSH + str(self._flushes).encode()
            reached = self._send(message)
            deadline = time.monotonic() + FLUSH_TIMEOUT
            for control in reached:
                try:
                    # Answers to earlier flushes that timed out come first: skip them.
                    while control.poll(max(0.0, deadline - time.monotonic())):
                        if control.recv_bytes() == message:
                            break
                    else:
                        log.warning("a proxy worker did not count its backlog within %.0fs", FLUSH_TIMEOUT)
                except (EOFError, OSError):
                    continue

    def _say_if_tls(self) -> None:
        """One line when the upstream's gRPC port speaks TLS: then nothing can be counted or polled."""
        from tfs_traffic.sidecar import tls

        host, port = parse_addr(self.options.upstream_grpc, "--upstream-grpc")
        if tls.speaks_tls(host, port):
            log.warning(
                "upstream gRPC %s speaks TLS (TF Serving's --ssl_config_file): the relay cannot read TLS "
                "connections, so their calls are not counted and, unless --allow-config-reload, it closes them "
                "(it cannot see a HandleReloadConfigRequest inside); the status poller speaks plaintext gRPC only",
                self.options.upstream_grpc,
            )

    def _start_workers(self, view_path: str) -> list[str]:
        options = self.options
        assert self.workdir is not None
        listen_grpc = listen_rest = None
        described = []
        if options.listen_grpc:
            host, port = parse_addr(options.listen_grpc, "--listen-grpc")
            port = _claim_port(host, port, "--listen-grpc")
            listen_grpc = (host, port)
            reloads = "allowed" if options.allow_config_reload else "refused"
            described.append(f"gRPC {_join(host, port)} -> {options.upstream_grpc} (config reloads {reloads})")
        if options.listen_rest:
            host, port = parse_addr(options.listen_rest, "--listen-rest")
            port = _claim_port(host, port, "--listen-rest")
            listen_rest = (host, port)
            described.append(f"REST {_join(host, port)} -> {options.upstream_rest}")
        self.configs = [
            WorkerConfig(
                index=i,
                multiproc_dir=str(self.workdir / "metrics"),
                view_path=view_path,
                upstream_grpc=parse_addr(options.upstream_grpc, "--upstream-grpc"),
                upstream_rest=parse_addr(options.upstream_rest, "--upstream-rest") if options.upstream_rest else None,
                listen_grpc=listen_grpc,
                listen_rest=listen_rest,
                reuse_port=options.workers > 1,
                count_delay=options.count_delay,
                log_level=options.log_level,
                allow_config_reload=options.allow_config_reload,
            )
            for i in range(options.workers)
        ]
        pipes = [self._spawn(i) for i in range(options.workers)]
        deadline = time.monotonic() + READY_TIMEOUT
        for i, conn in enumerate(pipes):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise ToolError(f"proxy worker {i} did not start within {READY_TIMEOUT:.0f}s")
            try:
                state, detail = conn.recv()
            except EOFError:
                raise ToolError(f"proxy worker {i} exited while starting") from None
            if state != "ready":
                raise ToolError(f"proxy worker {i} failed to start: {detail}")
        described.append(f"{options.workers} worker(s) counting into {self.workdir / 'metrics'}")
        return described

    def _spawn(self, index: int) -> Any:
        """Start worker `index`; its control pipe, on which it first says whether it is ready."""
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker.main, args=(self.configs[index], child_end), name=f"sidecar-worker-{index}", daemon=True
        )
        process.start()
        child_end.close()
        with self._control_lock:
            if index < len(self.processes):
                self.controls[index].close()
                self.processes[index] = process
                self.controls[index] = parent_end
            else:
                self.processes.append(process)
                self.controls.append(parent_end)
        return parent_end

    def _loop(self, watcher: ConfigWatcher, poller: StatusPoller) -> None:
        interval = self.options.poll_interval
        next_poll = time.monotonic() + interval
        next_config = time.monotonic() + min(CONFIG_CHECK_SECONDS, interval)
        settle_until = 0.0
        restart_after = [0.0] * len(self.processes)
        while not self.stop.is_set():
            # Sleep until the next poll or config check, a worker's exit, or a signal.
            waiting = [self._wake_read] + [p.sentinel for p in self.processes if p.exitcode is None]
            restarting = [t for t in restart_after if t > time.monotonic()]
            wake = min([next_poll, next_config, *restarting]) if restarting else min(next_poll, next_config)
            multiprocessing.connection.wait(waiting, max(0.0, wake - time.monotonic()))
            now = time.monotonic()
            if now >= next_config:
                next_config = now + min(CONFIG_CHECK_SECONDS, interval)
                if watcher.refresh():
                    next_poll, settle_until = now, now + SETTLE_SECONDS
            if now >= next_poll:
                poller.poll()
                settling = poller.behind_file and time.monotonic() < settle_until
                next_poll = time.monotonic() + (min(interval, CONFIG_CHECK_SECONDS) if settling else interval)
            for i, process in enumerate(self.processes):
                if process.exitcode is not None and not self.stop.is_set() and now >= restart_after[i]:
                    log.warning("proxy worker %d (pid %s) exited with %s; restarting", i, process.pid, process.exitcode)
                    self._spawn(i)
                    restart_after[i] = now + RESTART_BACKOFF_SECONDS

    def _stop_workers(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + 5
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1)


def run(options: SidecarOptions) -> int:
    """Run the sidecar until SIGTERM or SIGINT."""
    logging.basicConfig(level=options.log_level, format="tfs-traffic sidecar: %(message)s")
    return Supervisor(options).run()
