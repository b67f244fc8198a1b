"""The status poller: which versions the upstream has AVAILABLE, and what its labels resolve to.

TF Serving has no API that lists its models or their labels, so the names and the label *names* come
from its models config file, re-read whenever the file changes (no restart). Status comes from
`ModelService.GetModelStatus`. What each label (and "latest") resolves to comes from the server, never
the file: TF Serving refuses a label whose version is not AVAILABLE and keeps its previous label map
(`ServerCore::UpdateModelVersionLabelMap`), so the file can name a version the server does not use.
Each poll asks `PredictionService.GetModelMetadata` with the label (or no version) in its
`model_spec`: it resolves exactly like inference (`GetServableHandle`) and answers with the resolved
number, and upstream counts it neither in `request_count` (`prediction_service_impl.cc` records only
Predict, Classify and Regress) nor in the patched `model_call_count`. All over gRPC — never REST,
whose GETs count in `request_count` — as raw bytes with `wire.py`, so no TensorFlow is needed.

The file is not the server's config, only what it will read next: TF Serving applies it at start,
then only every `--model_config_file_poll_wait_seconds` (0, the default: never) or when a
`HandleReloadConfigRequest` pushes it. So the poller follows the *server* (docs/metrics.md): a model
the file no longer names is still polled, and still counted under its name, until `GetModelStatus`
says the server has no version of it short of END, or NOT_FOUND. An unload leaves END entries for
the process lifetime (`core/servable_state_monitor.cc` keeps them; `ForgetUnloadedServableStates` is
never called by the model server), so END everywhere is how a model removed from the config looks.
A version keeps its number once `GetModelStatus` has listed it in any state: calls to a version the
server has unloaded (NOT_FOUND) count under its number, even for a sidecar started after the unload.
"""

import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfs_traffic import modelconfig
from tfs_traffic.errors import UsageError
from tfs_traffic.sidecar import wire
from tfs_traffic.sidecar.estimate import Estimator, Job, is_remote
from tfs_traffic.sidecar.metrics import StatusMetrics
from tfs_traffic.sidecar.view import ModelView, View

log = logging.getLogger("tfs_traffic.sidecar")

STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"
METADATA_METHOD = "/tensorflow.serving.PredictionService/GetModelMetadata"
# basic_manager.cc: NotFound("Servable not found for request: ", ServableRequest::DebugString())
SPECIFIC_NOT_FOUND = re.compile(r"Servable not found for request: Specific\(.*, (-?\d+)\)")

# Options for every channel to the upstream: no message size limit (TF Serving sets none either),
# and quick reconnects so service resumes within a second or so when the upstream comes back.
UPSTREAM_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


@dataclass(frozen=True)
class ConfiguredModel:
    name: str
    labels: dict[str, int]
    base_path: str = ""


class ConfigWatcher:
    """Re-reads the models config when its metadata or content changes."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._digest = b""
        self.models: list[ConfiguredModel] = []

    def _read(self) -> list[ConfiguredModel]:
        return [
            ConfiguredModel(e.name, dict(e.version_labels), e.base_path) for e in modelconfig.load_entries(self.path)
        ]

    def load(self) -> list[ConfiguredModel]:
        """First read: a missing or malformed file is a usage error."""
        self.refresh(strict=True)
        return self.models

    def refresh(self, strict: bool = False) -> bool:
        """True when the models or labels changed. A broken file keeps the last good config."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            if strict:
                raise UsageError(f"cannot read models config {self.path}: {e.strerror or e}") from None
            return False
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return False
        try:
            digest = hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return False
        self._stamp = stamp
        if digest == self._digest:
            return False
        try:
            models = self._read()
        except UsageError as e:
            if strict:
                raise
            log.warning("models config unchanged in memory: %s", e)
            return False
        self._digest = digest
        changed = models != self.models
        if changed and not strict:
            log.info("models config reloaded: %d model(s)", len(models))
        self.models = models
        return changed


class StatusPoller:
    """Polls GetModelStatus for every configured model and exports the gauges."""

    def __init__(
        self,
        watcher: ConfigWatcher,
        upstream_grpc: str,
        metrics: StatusMetrics,
        publish: Callable[[View], None] = lambda view: None,
        timeout: float = 5.0,
        estimator: Estimator | None = None,
    ) -> None:
        import grpc

        self._grpc = grpc
        self.watcher = watcher
        self.metrics = metrics
        self.publish = publish
        self.timeout = timeout
        self._channel = grpc.insecure_channel(upstream_grpc, options=UPSTREAM_CHANNEL_OPTIONS)
        self._status = self._channel.unary_unary(STATUS_METHOD)
        self._metadata = self._channel.unary_unary(METADATA_METHOD)
        self._labels: dict[str, dict[str, int]] = {}  # what the server resolves each label to, per model
        self._latest: dict[str, int | None] = {}  # what it resolves a request with no version to
        self._exported: dict[str, set[int]] = {}  # versions with a gauge series, per model
        self._seen: dict[str, set[int]] = {}  # versions GetModelStatus has listed, in any state, per model
        self._followed: dict[str, ConfiguredModel] = {}  # the models of the last view
        self._beyond: set[str] = set()  # those of them the file no longer names (still served)
        self._available: dict[str, frozenset[int]] = {}
        self._estimator = estimator if estimator is not None else Estimator()
        self._loads: dict[tuple[str, int], int] = {}  # how many times each version became AVAILABLE
        self._ram_exported: dict[str, set[int]] = {}  # versions with an estimated-RAM series, per model
        self._remote: set[str] = set()  # models whose remote base path was logged
        self.up: bool | None = None
        self.view = View()

    def close(self) -> None:
        self._channel.close()

    def _ask(self, names: list[str]) -> dict[str, list[wire.VersionStatus] | None]:
        """GetModelStatus for each name, concurrently. None for a model whose poll failed."""
        grpc = self._grpc
        futures = [(name, self._status.future(wire.status_request(name), timeout=self.timeout)) for name in names]
        out: dict[str, list[wire.VersionStatus] | None] = {}
        for name, future in futures:
            try:
                out[name] = wire.model_status(future.result())
            except grpc.RpcError as e:
                # NOT_FOUND is an answer: the upstream has no version of it (yet).
                out[name] = [] if e.code() == grpc.StatusCode.NOT_FOUND else None
                if out[name] is None:
                    log.debug("GetModelStatus(%s) failed: %s %s", name, e.code(), e.details())
        return out

    def _resolve(self, models: list[ConfiguredModel], answers: dict[str, Any]) -> None:
        """Ask the server what each configured label, and "latest", of each answering model resolves to.

        OK: the response's `model_spec.version`. NOT_FOUND `Specific(m, N)`: the server maps the label to
        N but N is not loaded (a call by it fails; failed calls count under N). INVALID_ARGUMENT: the
        server has no such label. Anything else (the server not answering): keep the last answer.
        """
        grpc = self._grpc
        jobs = [
            (m.name, label, self._metadata.future(wire.metadata_request(m.name, label), timeout=self.timeout))
            for m in models
            if answers.get(m.name) is not None
            for label in (None, *m.labels)
        ]
        for name, label, future in jobs:
            labels = self._labels.setdefault(name, {})
            try:
                spec = wire.model_spec(future.result(), 1)
                version = spec.version if spec is not None else None
            except grpc.RpcError as e:
                code, found = e.code(), SPECIFIC_NOT_FOUND.fullmatch(e.details() or "")
                if code == grpc.StatusCode.NOT_FOUND:
                    version = int(found.group(1)) if found else None
                elif code == grpc.StatusCode.INVALID_ARGUMENT:
                    version = None
                else:
                    log.debug("GetModelMetadata(%s, %s) failed: %s %s", name, label, code, e.details())
                    continue
            if label is None:
                self._latest[name] = version
            elif version is None:
                labels.pop(label, None)
            else:
                labels[label] = version
        for m in models:  # labels no longer in the config are no longer asked about
            if m.name in self._labels:
                self._labels[m.name] = {k: v for k, v in self._labels[m.name].items() if k in m.labels}

    @property
    def behind_file(self) -> bool:
        """True while the server has not caught up with the file: a model it names has no AVAILABLE version,
        or a label it names resolves elsewhere. TF Serving applies a config at its next poll (or never, with
        its config poll off), so right after an edit this is the normal state, not an error."""
        for m in self.watcher.models:
            if not self._available.get(m.name):
                return True
            if any(self._labels.get(m.name, {}).get(label) != version for label, version in m.labels.items()):
                return True
        return False

    def _probe(self) -> bool:
        """With no models configured, the upstream is up if it answers at all."""
        grpc = self._grpc
        try:
            self._status(wire.status_request(""), timeout=self.timeout)
        except grpc.RpcError as e:
            return e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        return True

    def _follow(self, models: list[ConfiguredModel], answers: dict[str, Any]) -> list[ConfiguredModel]:
        """The models of the new view: the file's, and those it no longer names whose last answer lists a
        version short of END (or that did not answer: the last answer stands)."""
        named = {m.name for m in self.watcher.models}
        kept = []
        for m in models:
            statuses = answers.get(m.name)
            if m.name not in named:
                if statuses is not None and all(s.state == wire.STATE_END for s in statuses):
                    log.info("model %s: the server serves no version of it; its calls count as __other__", m.name)
                    continue
                if m.name not in self._beyond:
                    log.info("model %s left the models config; still counted while the server serves it", m.name)
            kept.append(m)
        self._beyond = {m.name for m in kept if m.name not in named}
        self._followed = {m.name: m for m in kept}
        return kept

    def _loaded(self, name: str, base_path: str, available: frozenset[int], before: frozenset[int]) -> None:
        """Start estimating each version that became AVAILABLE; an unloaded one's estimate drops to 0, as
        its availability gauge does (docs/metrics.md, "Estimated memory")."""
        ram = self.metrics.estimated_ram
        for version in before - available:
            if version in self._ram_exported.get(name, ()):
                ram.labels(name, str(version)).set(0)
        if is_remote(base_path):
            if name not in self._remote:
                self._remote.add(name)
                log.info("model %s: base path %s is remote; its versions' memory is not estimated", name, base_path)
            return
        for version in sorted(available - before):
            load = self._loads[(name, version)] = self._loads.get((name, version), 0) + 1
            self._estimator.submit(Job(name, version, base_path, load))

    def _collect_estimates(self) -> None:
        """Export the estimates finished since the last poll, of versions still in the load they were made for."""
        for job, ram_bytes in self._estimator.collect():
            current = self._loads.get((job.model, job.version)) == job.load
            if ram_bytes is None or not current or job.version not in self._available.get(job.model, ()):
                continue
            self.metrics.estimated_ram.labels(job.model, str(job.version)).set(ram_bytes)
            self._ram_exported.setdefault(job.model, set()).add(job.version)

    def poll(self) -> View:
        """One round: ask, update the gauges and the view, export what it resolved, publish it."""
        models = list(self.watcher.models)
        named = {m.name for m in models}
        models += [m for name, m in self._followed.items() if name not in named]
        names = [m.name for m in models]
        answers = self._ask(names) if names else {}
        up = all(a is not None for a in answers.values()) if names else self._probe()
        self._resolve(models, answers)
        gauge = self.metrics.available
        self._collect_estimates()
        base_paths = {m.name: m.base_path for m in models}
        for name, statuses in answers.items():
            if statuses is None:
                continue  # keep the last known state while the upstream does not answer
            available = frozenset(s.version for s in statuses if s.available)
            self._loaded(name, base_paths.get(name, ""), available, self._available.get(name, frozenset()))
            self._available[name] = available
            self._seen.setdefault(name, set()).update(s.version for s in statuses)
            exported = self._exported.setdefault(name, set())
            for status in statuses:
                gauge.labels(name, str(status.version)).set(1 if status.available else 0)
                exported.add(status.version)
            for version in exported - {s.version for s in statuses}:
                gauge.labels(name, str(version)).set(0)
        for name in set(self._exported) - set(names):  # no longer followed: kept at 0
            for version in self._exported[name]:
                gauge.labels(name, str(version)).set(0)
            if name in self._available:
                self._loaded(name, "", frozenset(), self._available.pop(name))
        self.metrics.up.set(1 if up else 0)
        if up != self.up:
            log.info("upstream %s", "up" if up else "down (status poll failed)")
        self.up = up
        self.view = View(
            {
                m.name: ModelView(
                    labels=dict(self._labels.get(m.name, {})),
                    available=self._available.get(m.name, frozenset()),
                    seen=set(self._seen.get(m.name, ())),
                    latest_version=self._latest.get(m.name),
                )
                for m in self._follow(models, answers)
            }
        )
        self.metrics.resolved(self.view)
        self.publish(self.view)
        return self.view
