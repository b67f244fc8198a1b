"""The stand-in TF Serving's model state: versions on disk, labels, resolution, and its counters.

This mirrors what TF Serving's `ServerCore`, `FileSystemStoragePathSource` and
`ServableStateMonitor` do for a `model_config_list`, minus the actual loading (a version is
AVAILABLE as soon as it is aspired):

- versions are the numeric children of each model's `base_path` (directories only); the version
  policy picks the latest N (default 1), all, or specific ones; a poll re-reads them;
- a version that leaves the aspired set goes to END, and GetModelStatus keeps listing it, as
  TF Serving's state monitor does;
- requests resolve by number, by label (`version_labels`) or to the latest AVAILABLE version, with
  TF Serving's error codes and messages;
- the patched metrics of docs/metrics.md are kept here: `model_call_count` +1 per inference
  request after resolution, its zero cell created when a version becomes AVAILABLE, and
  `model_version_available` 1/0; plus upstream's `request_count{model_name,status}`.

Version labels follow `ServerCore::UpdateModelVersionLabelMap` (`model_servers/server_core.cc`),
which `ReloadConfig` runs for the startup config and every reload *before* any model is added or
changed: every label must point at an AVAILABLE version, else FAILED_PRECONDITION and the previous
label map stays. With `--allow_version_labels_for_unavailable_models` a new label, or one that keeps
its version, may point anywhere; moving an existing label still needs the target AVAILABLE. At
startup nothing is AVAILABLE, so a startup config with labels is refused unless the flag is given.

Judged harmless: TF Serving stores a refused config as its current one (`config_ = new_config`
precedes the label check) but applies none of it; here the previous config stays whole. The only
difference a client could see is which config a later *identical* reload is compared with, and both
then run the same checks.
"""

import enum
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tfs_traffic import contract
from tfs_traffic.exposition import COUNTER, GAUGE, Family
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.stock_metrics import StockMetrics

_INT64_MAX = 2**63 - 1


class State(enum.IntEnum):
    """`ModelVersionStatus.State` values."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class Resolved:
    """The servable a request was resolved to (`handle.id()`)."""

    name: str
    version: int


def parse_version_dir(name: str) -> int | None:
    """`absl::SimpleAtoi` on a child of base_path: optional blanks and sign, digits, int64 range."""
    m = re.fullmatch(r"\s*([+-]?\d+)\s*", name)
    if not m:
        return None
    value = int(m.group(1))
    return value if -(2**63) <= value <= _INT64_MAX else None


def list_versions(base_path: str) -> dict[int, str] | None:
    """Numeric version directories under base_path (version -> child name); None if it is missing."""
    try:
        entries = list(os.scandir(base_path))
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    out: dict[int, str] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        version = parse_version_dir(entry.name)
        if version is not None and entry.is_dir():
            out[version] = entry.name
    return out


def aspired_versions(model: Any, on_disk: dict[int, str]) -> set[int]:
    """The versions the model's version policy asks for, among those on disk."""
    policy = model.model_version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    if kind == "all":
        return set(on_disk)
    if kind == "specific":
        return set(on_disk) & set(policy.specific.versions)
    n = max(policy.latest.num_versions, 1)
    return set(sorted(on_disk, reverse=True)[:n])


def validate_config(config: Any) -> None:
    """`ValidateModelConfigList`: unique names, absolute base paths (INVALID_ARGUMENT otherwise)."""
    seen: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in seen:
            raise SimError(Code.INVALID_ARGUMENT, f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
    for model in config.model_config_list.config:
        base = model.base_path
        if not base or not (base.startswith("/") or "://" in base):
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Expected model {model.name} to have an absolute path or URI; got base_path()={base}",
            )


class ServerCore:
    """Model versions, labels and counters; every method is thread-safe."""

    def __init__(
        self,
        config: Any,
        log: Callable[[str], None] | None = None,
        allow_labels_for_unavailable: bool = False,
    ) -> None:
        validate_config(config)
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self._lock = threading.Lock()
        self._log = log or (lambda msg: print(f"tfs-traffic sim: {msg}", file=sys.stderr, flush=True))
        self._config = config
        self._states: dict[str, dict[int, State]] = {}
        self._available: dict[str, list[int]] = {}  # sorted ascending
        self._labels: dict[str, dict[str, int]] = {}
        self._calls: dict[tuple[str, str], int] = {}
        self._version_available: dict[tuple[str, str], int] = {}
        self.stock = StockMetrics()
        self._missing_warned: set[str] = set()
        self._labels = self._label_map(config)  # `ReloadConfig` of the startup config: before any load
        self.poll()

    # --- versions ---

    @property
    def config(self) -> Any:
        with self._lock:
            return self._config

    def model_names(self) -> list[str]:
        with self._lock:
            return [m.name for m in self._config.model_config_list.config]

    def poll(self) -> None:
        """Re-read every model's base_path and load/unload versions as its policy says."""
        with self._lock:
            models = list(self._config.model_config_list.config)
        found: dict[str, set[int] | None] = {}
        for model in models:
            on_disk = list_versions(model.base_path)
            if on_disk is None:
                if model.name not in self._missing_warned:
                    self._missing_warned.add(model.name)
                    self._log(f"could not find base path {model.base_path} for servable {model.name}")
                found[model.name] = None
                continue
            self._missing_warned.discard(model.name)
            found[model.name] = aspired_versions(model, on_disk)
        with self._lock:
            for name, aspired in found.items():
                if aspired is not None:
                    self._set_aspired(name, aspired)
            configured = {m.name for m in self._config.model_config_list.config}
            for name in list(self._states):
                if name not in configured:
                    self._set_aspired(name, set())

    def _set_aspired(self, name: str, aspired: set[int]) -> None:
        states = self._states.setdefault(name, {})
        for version in aspired:
            if states.get(version) != State.AVAILABLE:
                states[version] = State.AVAILABLE
                key = (name, str(version))
                self._version_available[key] = 1
                self._calls.setdefault(key, 0)
        for version, state in list(states.items()):
            if state == State.AVAILABLE and version not in aspired:
                states[version] = State.END
                self._version_available[(name, str(version))] = 0
        self._available[name] = sorted(v for v, s in states.items() if s == State.AVAILABLE)

    def _label_map(self, config: Any) -> dict[str, dict[str, int]]:
        """`UpdateModelVersionLabelMap`: the new label map, or FAILED_PRECONDITION.

        Called under the lock, or from `__init__`, before any version of the config is (re)loaded.
        """
        new_labels: dict[str, dict[str, int]] = {}
        for model in config.model_config_list.config:
            old = self._labels.get(model.name, {})
            available = set(self._available.get(model.name, ()))
            for label, version in model.version_labels.items():
                allowed = self.allow_labels_for_unavailable and old.get(label, version) == version
                if not allowed and version not in available:
                    raise SimError(
                        Code.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference",
                    )
                new_labels.setdefault(model.name, {})[label] = version
        return new_labels

    def reload_config(self, new_config: Any) -> None:
        """`ServerCore::ReloadConfig` for a model_config_list: validate, relabel, then load/unload.

        A refused label leaves the label map, the models and their policies as they were.
        """
        validate_config(new_config)
        with self._lock:
            new_labels = self._label_map(new_config)
            self._config = new_config
            self._labels = new_labels
        self.poll()

    # --- resolution and status ---

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Resolved:
        """`ServerCore::GetServableHandle`: the version a ModelSpec names, or TF Serving's error."""
        if not name:
            raise SimError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
        with self._lock:
            if label is not None:
                mapped = self._labels.get(name, {}).get(label)
                if mapped is None:
                    raise SimError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
                version = mapped
            available = self._available.get(name, [])
            if version is not None:
                if version in available:
                    return Resolved(name, version)
                raise SimError(Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
            if available:
                return Resolved(name, available[-1])
        raise SimError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")

    def version_states(self, name: str, version: int | None = None) -> list[tuple[int, State]]:
        """`GetModelStatusWithModelSpec`: (version, state) newest first, or NOT_FOUND."""
        with self._lock:
            states = dict(self._states.get(name, {}))
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
        """For ReloadConfigResponse.metric: the first cell's value of each named metric (0 if none)."""
        families = {f.tf_name: f for f in self.families()}
        out: dict[str, int] = {}
        for name in names:
            family = families.get(name)
            cells = sorted(family.points.items(), key=lambda kv: kv[0]) if family else []
            value = cells[0][1] if cells else 0
            out[name] = int(value) if isinstance(value, int) else 0
        return out
