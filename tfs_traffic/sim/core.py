"""The stand-in TF Serving's `ServerCore`: its config, labels, request resolution and counters.

`model_servers/server_core.cc` over the source (`source`) and the manager (`manager`), minus
the actual loading (a load takes no time; every version is the stand-in's model).

`ReloadConfig` (the startup config, `HandleReloadConfigRequest`, each config-file poll), under one
lock so reloads never overlap:

1. it accepts a `model_config_list` (or the config it already has, or an empty config the first
   time); anything else is FAILED_PRECONDITION;
2. it validates before changing anything: unique names, absolute base paths
   (`ValidateModelConfigList`), no model changing platform (`ValidateNoModelsChangePlatforms`);
3. it **stores the new config** (`config_ = new_config`) — before the label check, so a config
   refused for its labels still becomes the one the next reload is compared with;
4. labels (`UpdateModelVersionLabelMap`): each must name an AVAILABLE version, unless
   `--allow_version_labels_for_unavailable_models` and the label is new or keeps its version; a
   refusal (FAILED_PRECONDITION) leaves the label map and everything served as they were;
5. every model needs the platform `tensorflow` (`CreateStoragePathRoutes`); the source gets the new
   list (models that left it are un-aspired now, policy changes wait for the next file-system
   poll) and the reload **waits for the model names that are new**, without a timeout. It returns
   before any version of a model it already had is loaded or unloaded.

At startup (`start`) the source is connected and the server waits until every model has a
version AVAILABLE (`ConnectAdaptersToManagerAndAwaitModelLoads`): with a missing base path it
waits, logging each poll, until the path appears.

Requests resolve (`ServerCore::GetServableHandle`) by number, by label or to the latest AVAILABLE
version, against the serving map current when they start, and hold that map until they end
(`request()`), which is what lets an unload wait for them. The patched metrics of docs/metrics.md
are kept here: `model_call_count` +1 per inference request after resolution, its zero cell created
when a version becomes AVAILABLE, `model_version_available` 1 while AVAILABLE; plus upstream's
`request_count{model_name,status}`.
"""

import contextlib
import contextvars
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tfs_traffic import contract
from tfs_traffic.exposition import COUNTER, GAUGE, Family
from tfs_traffic.sim import tflog
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.manager import Manager, Monitor, ServingMap, Snapshot, State
from tfs_traffic.sim.source import Servable, Source
from tfs_traffic.sim.stock_metrics import StockMetrics

TENSORFLOW_PLATFORM = "tensorflow"  # kTensorFlowModelPlatform, the one platform the server has

__all__ = ["Resolved", "ServerCore", "SimFatal", "State"]


@dataclass(frozen=True)
class Resolved:
    """The servable a request was resolved to (`handle.id()`), and where that version was loaded from."""

    name: str
    version: int
    path: str = ""


class SimFatal(Exception):
    """What TF Serving does with `LOG(FATAL)`: print and abort."""


def _is_relative(uri: str) -> bool:
    """`UriIsRelativePath`: no scheme and no leading slash."""
    return not uri.startswith("/") and "://" not in uri


def validate_config(config: Any) -> None:
    """`ValidateModelConfigList`: unique names, absolute base paths (INVALID_ARGUMENT otherwise)."""
    seen: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in seen:
            raise SimError(Code.INVALID_ARGUMENT, f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
    for model in config.model_config_list.config:
        if _is_relative(model.base_path):
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Expected model {model.name} to have an absolute path or URI; got base_path()={model.base_path}",
            )


def platform(model: Any) -> str:
    """`GetPlatform`: model_platform, or the deprecated model_type."""
    if model.model_type != 0:
        if model.model_platform:
            raise SimError(
                Code.INVALID_ARGUMENT,
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {model.name}",
            )
        if model.model_type != 1:  # TENSORFLOW
            raise SimError(
                Code.INVALID_ARGUMENT, f"ModelServerConfig::model_type choice {model.model_type} not supported."
            )
        return TENSORFLOW_PLATFORM
    if not model.model_platform:
        raise SimError(
            Code.INVALID_ARGUMENT,
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {model.name}",
        )
    return str(model.model_platform)


def validate_no_platform_changes(old: Any, new: Any) -> None:
    """`ValidateNoModelsChangePlatforms`."""
    old_platforms = {m.name: platform(m) for m in old.model_config_list.config}
    for model in new.model_config_list.config:
        if model.name not in old_platforms:
            continue
        new_platform = platform(model)
        if new_platform != old_platforms[model.name]:
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Illegal to change a model's platform. For model {model.name} platform was "
                f"{old_platforms[model.name]} and new platform requested is {new_platform}",
            )


_handles: contextvars.ContextVar[list[Snapshot] | None] = contextvars.ContextVar(
    "tfs_traffic_sim_handles", default=None
)


class ServerCore:
    """Config, labels, resolution and counters over a source and a manager; thread-safe.

    Built from the startup config (the synchronous part of `ServerCore::Create`: validation,
    labels, platforms). `start()` then connects the source and waits for the models, with the
    file-system poll and the manager on threads; without it, `settle()` polls and manages once
    until nothing is left to do (for tests that want no threads).
    """

    def __init__(
        self,
        config: Any,
        log: tflog.Log | None = None,
        allow_labels_for_unavailable: bool = False,
        file_system_poll_seconds: float = 1.0,
    ) -> None:
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self._log = log or tflog.to_stderr
        self._lock = threading.Lock()  # labels and counters
        self._config_lock = threading.Lock()  # ServerCore::config_mu_: one ReloadConfig at a time
        self._config = type(config)()
        self._labels: dict[str, dict[str, int]] = {}
        self._calls: dict[tuple[str, str], int] = {}
        self._version_available: dict[tuple[str, str], int] = {}
        self.stock = StockMetrics()
        self.monitor = Monitor()
        self.serving = ServingMap()
        self.manager = Manager(self.monitor, self.serving, self._on_state)
        self.source = Source(file_system_poll_seconds, self._log)
        self._connected = False
        self._threaded = False
        self._stop = threading.Event()
        self.reload_config(config)

    # --- config ---

    @property
    def config(self) -> Any:
        """The stored config (`config_`), a copy."""
        with self._config_lock:
            out = type(self._config)()
            out.CopyFrom(self._config)
            return out

    def model_names(self) -> list[str]:
        """The models the source watches (the last config that got that far)."""
        return [s.name for s in self.source.servables()]

    def reload_config(self, new_config: Any) -> None:
        """`ServerCore::ReloadConfig`: see the module docstring; SimError on a refusal."""
        with self._config_lock:
            old_case = self._config.WhichOneof("config")
            new_case = new_config.WhichOneof("config")
            is_first = old_case is None
            is_same = self._config == new_config
            if not (is_first or is_same or (old_case == new_case == "model_config_list")):
                raise SimError(
                    Code.FAILED_PRECONDITION,
                    "Cannot transition to requested config. It is only legal to transition from one "
                    "ModelConfigList to another.",
                )
            if new_case is None:
                self._log("I", "Taking no action for empty config.")
                return
            if new_case == "model_config_list":
                validate_config(new_config)
                if old_case == "model_config_list":
                    validate_no_platform_changes(self._config, new_config)
            self._config = type(new_config)()
            self._config.CopyFrom(new_config)
            self._update_labels()
            if new_case != "model_config_list":
                raise SimFatal("ModelServer does not yet support custom model config.")
            self._add_models()

    def _update_labels(self) -> None:
        """`UpdateModelVersionLabelMap`: swap in the new label map, or FAILED_PRECONDITION."""
        new_labels: dict[str, dict[str, int]] = {}
        for model in self._config.model_config_list.config:
            states = self.monitor.versions(model.name)
            with self._lock:
                old = self._labels.get(model.name, {})
            for label, version in model.version_labels.items():
                allowed = self.allow_labels_for_unavailable and old.get(label, version) == version
                if not allowed and states.get(version) != State.AVAILABLE:
                    raise SimError(
                        Code.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference",
                    )
                new_labels.setdefault(model.name, {})[label] = version
        with self._lock:
            self._labels = new_labels

    def _add_models(self) -> None:
        """`AddModelsViaModelConfigList`."""
        servables = []
        for model in self._config.model_config_list.config:
            model_platform = platform(model)
            if model_platform != TENSORFLOW_PLATFORM:
                raise SimError(
                    Code.INVALID_ARGUMENT, f"Model {model.name} requests unsupported platform {model_platform}"
                )
            servables.append(Servable(model.name, model.base_path, model.model_version_policy))
        old = {s.name for s in self.source.servables()}
        new_models = [s.name for s in servables if s.name not in old]
        mark = self.monitor.events()
        self.source.update_config(servables)
        if self._connected and self._threaded and new_models:
            self._await(new_models, mark, "model(s)")

    def _await(self, names: list[str], since: int, what: str) -> None:
        """`WaitUntilModelsAvailable` / the startup wait: no timeout; UNKNOWN if one reached END."""
        ended = self.monitor.wait_latest(names, since, self._stop)
        if ended:
            listed = "".join(f"{{{{name: {n} version: {v}}}}}, " for n, v in ended)
            raise SimError(Code.UNKNOWN, f"{len(ended)} {what} did not become available: {{{listed}}}")

    # --- running ---

    def start(self) -> None:
        """Connect the source and start managing; return once every model has a version AVAILABLE
        (or `stop()` was called)."""
        self._threaded = True
        self._connected = True
        mark = self.monitor.events()
        self.source.connect(self.manager.set_aspired_versions)
        self.manager.start()
        self._await(self.model_names(), mark, "servable(s)")

    def settle(self) -> None:
        """Without threads: one file-system poll, then manager rounds until nothing is left to do."""
        if not self._connected:
            self._connected = True
            self.source.connect(self.manager.set_aspired_versions, threaded=False)
        self.source.poll()
        while self.manager.tick() or not self.manager.idle():
            pass

    def poll(self) -> None:
        """One file-system poll now (the manager acts on it at its next round)."""
        self.source.poll()

    def stop(self) -> None:
        self._stop.set()
        self.source.stop()
        self.manager.stop()

    def _on_state(self, name: str, version: int, state: State) -> None:
        """The patch's listener on the event bus: the gauge, and the zero cell of the counter."""
        key = (name, str(version))
        with self._lock:
            if state == State.AVAILABLE:
                self._version_available[key] = 1
                self._calls.setdefault(key, 0)
            elif state in (State.UNLOADING, State.END) and key in self._version_available:
                self._version_available[key] = 0

    # --- resolution and status ---

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """One request's servable handles: the serving maps it resolved against, held until it ends."""
        token = _handles.set([])
        try:
            yield
        finally:
            for snapshot in _handles.get() or []:
                self.serving.release(snapshot)
            _handles.reset(token)

    def resolve(self, name: str, version: int | None = None, label: str | None = None, hold: bool = True) -> Resolved:
        """`ServerCore::GetServableHandle`: the version a ModelSpec names, or TF Serving's error.

        Inside `request()` with `hold`, the request keeps the serving map until it ends."""
        if not name:
            raise SimError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        if label is not None:
            with self._lock:
                mapped = self._labels.get(name, {}).get(label)
            if mapped is None:
                raise SimError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
            version = mapped
        snapshot = self.serving.acquire()
        held = _handles.get() if hold else None
        try:
            versions = snapshot.versions.get(name, {})
            if version is None:
                if name not in snapshot.latest:
                    raise SimError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
                version = snapshot.latest[name]
            elif version not in versions:
                raise SimError(Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
            resolved = Resolved(name, version, versions[version])
        except SimError:
            self.serving.release(snapshot)
            raise
        if held is None:
            self.serving.release(snapshot)
        else:
            held.append(snapshot)
        return resolved

    def version_states(self, name: str, version: int | None = None) -> list[tuple[int, State]]:
        """`GetModelStatusWithModelSpec`: (version, state) newest first, or NOT_FOUND."""
        states = self.monitor.versions(name)
        if version is not None:
            if version not in states:
                raise SimError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        if not states:
            raise SimError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
        return sorted(states.items(), reverse=True)

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            return dict(self._labels.get(name, {}))

    # --- counters ---

    def count_call(self, resolved: Resolved) -> None:
        """The patch's +1: one inference request served by this resolved version."""
        key = (resolved.name, str(resolved.version))
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1

    def count_request(self, model_name: str, code: Code) -> None:
        """Upstream's `RecordModelRequestCount(model_name, status)`."""
        self.stock.count_request(model_name, code.name)

    def call_counts(self) -> dict[tuple[str, str], int]:
        """`model_call_count` cells: (model_name, model_version) -> count (zero cells included)."""
        with self._lock:
            return dict(self._calls)

    def version_available(self) -> dict[tuple[str, str], int]:
        """`model_version_available` cells: (model_name, model_version) -> 1 or 0."""
        with self._lock:
            return dict(self._version_available)

    def request_counts(self) -> dict[tuple[str, str], int]:
        """`request_count` cells: (model_name, status name) -> count."""
        return dict(self.stock.requests)

    def families(self) -> list[Family]:
        """The metric families this server exports, for `exposition.render`."""
        with self._lock:
            patched = [
                Family(contract.TF_CALLS, COUNTER, (contract.MODEL, contract.VERSION), dict(self._calls)),
                Family(contract.TF_AVAILABLE, GAUGE, (contract.MODEL, contract.VERSION), dict(self._version_available)),
            ]
        return [*patched, *self.stock.families()]

    def metric_first_values(self, names: Iterable[str]) -> dict[str, int]:
        """For ReloadConfigResponse.metric (`ModelServiceImpl::GetMetrics`): each named metric's first
        cell (`points[0]->int64_value`, cells in label order), 0 if there is none."""
        families = {f.tf_name: f for f in self.families()}
        out: dict[str, int] = {}
        for name in names:
            family = families.get(name)
            cells = sorted(family.points.items(), key=lambda kv: kv[0]) if family else []
            value = cells[0][1] if cells else 0
            out[name] = int(value) if isinstance(value, int) else 0
        return out
