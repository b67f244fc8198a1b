"""Each loaded version's RAM, by TF Serving's own estimate (docs/metrics.md, "Estimated memory").

TF Serving reserves RAM for a version before loading it with the number its resource tracker gets from
`servables/tensorflow/util.cc` `EstimateResourceFromPathUsingDiskState`: the total size of the version
directory's files times `kResourceEstimateRAMMultiplier` (1.2) plus `kResourceEstimateRAMPadBytes` (0).
The same constants and the same walk are in `util.cc` on every release line `patches/` supports
(2.4.4, 2.5.4, 2.6.5, 2.7.4, 2.10.1, 2.13.1, 2.14.1, 2.16.1, 2.17.1, 2.18.1, 2.19.1, 2.20.0); the open-source
`oss/resource_estimator.cc` `EstimateMainRamBytesFromPath` calls it for SavedModel and TFRT alike.

The walk (`GetModelDiskSize`): a breadth-first walk from the version directory over `GetChildren`
(every entry, hidden ones too), recursing into every child `IsDirectory` accepts (it follows symlinks),
adding `GetFileSize` (stat: also through symlinks) of every other child. Any error fails the estimate.

The arithmetic: `uint64 total * double 1.2 + int 0` is computed in double and truncated back to uint64,
so 9 bytes estimate 10 (10.8, truncated), and past 2**52 or so the double rounding shows
(`ram_estimate` does exactly that arithmetic).

The walk runs on one worker thread, never on the poller's: a huge or slow directory delays only other
estimates, and gives up past a file count or a time budget with a log line.
"""

import logging
import os
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from tfs_traffic.sim.source import list_versions

log = logging.getLogger("tfs_traffic.sidecar")

RAM_MULTIPLIER = 1.2  # kResourceEstimateRAMMultiplier (static constexpr double)
RAM_PAD_BYTES = 0  # kResourceEstimateRAMPadBytes (static constexpr int)
MAX_FILES = 100_000
MAX_SECONDS = 30.0
# A URI scheme: TF's file systems (gs://, s3://, hdfs://, ...) the sidecar does not read.
_REMOTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def ram_estimate(total_file_size: int) -> int:
    """`total_file_size * kResourceEstimateRAMMultiplier + kResourceEstimateRAMPadBytes` as C++ does it:
    uint64 to double (round to nearest), the product and sum in double, truncated to uint64."""
    return int(float(total_file_size) * RAM_MULTIPLIER + RAM_PAD_BYTES)


def is_remote(base_path: str) -> bool:
    return _REMOTE.match(base_path) is not None


class GaveUp(Exception):
    """The walk passed its file count or time budget."""


def disk_size(path: str, max_files: int = MAX_FILES, deadline: float | None = None) -> int:
    """`GetModelDiskSize`: the total size of the files under `path`, walked breadth first.

    OSError as TF Serving fails (a child it cannot stat, a directory it cannot list); GaveUp past
    `max_files` entries or the `deadline` (time.monotonic()).
    """
    os.stat(path)  # FileExists(path)
    total = 0
    seen = 0
    pending = deque([path])
    while pending:
        with os.scandir(pending.popleft()) as entries:
            for entry in entries:
                seen += 1
                if seen > max_files:
                    raise GaveUp(f"more than {max_files} files")
                if deadline is not None and time.monotonic() > deadline:
                    raise GaveUp("out of time")
                if entry.is_dir():  # follows symlinks, as IsDirectory's stat does
                    pending.append(entry.path)
                else:
                    total += entry.stat().st_size  # GetFileSize: stat, through symlinks
    return total


@dataclass(frozen=True)
class Job:
    model: str
    version: int
    base_path: str
    load: int  # which load of the version this is: a result for an earlier load is dropped


class Estimator:
    """Estimates versions on one daemon thread; the poller submits and collects, never waits."""

    def __init__(self, max_files: int = MAX_FILES, max_seconds: float = MAX_SECONDS) -> None:
        self.max_files = max_files
        self.max_seconds = max_seconds
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._done: list[tuple[Job, int | None]] = []
        self._lock = threading.Lock()
        self._unreadable: set[str] = set()  # models whose base path could not be read, said once
        self._thread = threading.Thread(target=self._work, name="ram-estimate", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def collect(self) -> list[tuple[Job, int | None]]:
        """The estimates finished since the last call (None: not estimated, already logged)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            result = self._estimate(job)
            with self._lock:
                self._done.append((job, result))

    def _estimate(self, job: Job) -> int | None:
        try:
            versions = list_versions(job.base_path)
        except OSError as e:
            versions, reason = None, e.strerror or str(e)
        else:
            reason = "no such directory"
        if versions is None or job.version not in versions:
            if job.model not in self._unreadable:
                self._unreadable.add(job.model)
                what = reason if versions is None else f"no directory for version {job.version}"
                log.warning(
                    "model %s: cannot read base path %s (%s): its versions' memory is not estimated "
                    "(the sidecar needs the models volume mounted read-only)",
                    job.model,
                    job.base_path,
                    what,
                )
            return None
        self._unreadable.discard(job.model)
        path = os.path.join(job.base_path, versions[job.version])
        started = time.monotonic()
        try:
            total = disk_size(path, self.max_files, started + self.max_seconds)
        except GaveUp as e:
            log.warning(
                "model %s version %d: memory not estimated, gave up walking %s after %.1fs: %s",
                job.model,
                job.version,
                path,
                time.monotonic() - started,
                e,
            )
            return None
        except OSError as e:
            log.warning(
                "model %s version %d: memory not estimated (TF Serving's estimate fails too): %s: %s",
                job.model,
                job.version,
                e.filename or path,
                e.strerror or e,
            )
            return None
        return ram_estimate(total)
