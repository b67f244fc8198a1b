"""The stand-in's `FileSystemStoragePathSource`: which versions of each model are aspired, from disk.

`sources/storage_path/file_system_storage_path_source.cc`, as `tensorflow_model_server` runs it:

- a poll looks at every model's `base_path` and emits, per model, the versions its version policy
  picks among the numeric children (latest N, all, specific). The poll is all or nothing
  (`PollFileSystemForConfig` returns at the first error): one missing base path means no model
  gets an update that round, and `FileSystemStoragePathSource encountered a filesystem access
  error: Could not find base path B for servable M with error NOT_FOUND: B not found` is logged;
- an existing base path without versions, or `specific {}`, emits an empty list: every version of
  that model is unloaded (each with a warning);
- `--file_system_poll_wait_seconds` N > 0 polls every N seconds (the first poll when the source is
  connected to the manager), 0 polls once, a negative value never (`SetAspiredVersionsCallback`);
- `UpdateConfig` (every `ReloadConfig`) stores the new list of models and immediately un-aspires
  the models that left it; a model that stays gets its new policy at the next poll, not before.

Judged harmless: base paths are local paths (TF Serving's file systems also read `gs://`, `s3://`,
... — here such a path is never found), and only directories count as versions (TF Serving would
also try, and fail, to load a file).
"""

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tfs_traffic.sim.tflog import Log

_INT64_MAX = 2**63 - 1

# (model name, {version: its directory}) -> the manager's aspired-versions callback
Callback = Callable[[str, dict[int, str]], None]


@dataclass(frozen=True)
class Servable:
    """`FileSystemStoragePathSourceConfig::ServableToMonitor`: one model of the config."""

    name: str
    base_path: str
    policy: Any  # FileSystemStoragePathSourceConfig.ServableVersionPolicy (the model's model_version_policy)


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
    except (FileNotFoundError, NotADirectoryError):
        return None
    out: dict[int, str] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        version = parse_version_dir(entry.name)
        if version is not None and entry.is_dir():
            out[version] = entry.name
    return out


def aspired_versions(policy: Any, on_disk: dict[int, str]) -> set[int]:
    """The versions a version policy (`model_version_policy`) asks for, among those on disk."""
    kind = policy.WhichOneof("policy_choice") or "latest"
    if kind == "all":
        return set(on_disk)
    if kind == "specific":
        return set(on_disk) & set(policy.specific.versions)
    n = max(policy.latest.num_versions, 1)
    return set(sorted(on_disk, reverse=True)[:n])


class PollError(Exception):
    """`PollFileSystemForServable` failed: the whole poll emits nothing."""


def poll_servable(servable: Servable, log: Log) -> dict[int, str]:
    """`PollFileSystemForServable`: the aspired {version: path}, or PollError for a missing base path."""
    if not os.path.exists(servable.base_path):
        raise PollError(
            f"Could not find base path {servable.base_path} for servable {servable.name} with error "
            f"NOT_FOUND: {servable.base_path} not found"
        )
    policy = servable.policy
    if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
        log("W", f"No specific versions requested for servable {servable.name}.")
        return {}
    on_disk = list_versions(servable.base_path) or {}
    chosen = aspired_versions(policy, on_disk)
    if policy.WhichOneof("policy_choice") == "specific":
        for version in sorted(set(policy.specific.versions) - chosen):
            log(
                "W",
                f"Version {version} of servable {servable.name}, which was requested to be served as a "
                "'specific' version in the servable's version policy, was not found in the file system",
            )
    if not chosen:
        log(
            "W",
            f"No versions of servable {servable.name} found under base path {servable.base_path}. "
            "Did you forget to name your leaf directory as a number (eg. '/1/')?",
        )
    return {version: os.path.join(servable.base_path, on_disk[version]) for version in sorted(chosen)}


class Source:
    """The source: its list of models, its poll thread and the manager's callback."""

    def __init__(self, poll_seconds: float, log: Log) -> None:
        self.poll_seconds = poll_seconds
        self._log = log
        self._lock = threading.Lock()
        self._servables: list[Servable] = []
        self._callback: Callback | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def servables(self) -> list[Servable]:
        with self._lock:
            return list(self._servables)

    def update_config(self, servables: list[Servable]) -> None:
        """`UpdateConfig`: keep the new list; un-aspire the models that left it, now."""
        with self._lock:
            gone = {s.name for s in self._servables} - {s.name for s in servables}
            self._servables = list(servables)
            if self._callback is not None:
                for name in sorted(gone):
                    self._callback(name, {})

    def poll(self) -> bool:
        """`PollFileSystemAndInvokeCallback`: one poll; False if it failed (logged)."""
        with self._lock:  # held through the callback, so a concurrent UpdateConfig cannot be undone
            found: dict[str, dict[int, str]] = {}
            try:
                for servable in self._servables:
                    found[servable.name] = poll_servable(servable, self._log)
            except PollError as e:
                self._log("E", f"FileSystemStoragePathSource encountered a filesystem access error: {e}")
                return False
            if self._callback is not None:
                for name, versions in found.items():
                    self._callback(name, versions)
        return True

    def connect(self, callback: Callback, threaded: bool = True) -> None:
        """`SetAspiredVersionsCallback`: start polling (periodically, once, or never)."""
        with self._lock:
            self._callback = callback
        if not threaded or self.poll_seconds < 0:
            return
        self._thread = threading.Thread(target=self._run, name="tfs-traffic-sim-fs-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            if self.poll_seconds == 0 or self._stop.wait(self.poll_seconds):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
