"""One `retire apply` or `rollback` at a time per models config: two operators (or a retirement and
a GitOps sync run by hand) must not interleave their read-modify-write of one file (unload.md,
"Design implications" 12: the race upstream cited when it declined a get-config API).

The lock is `flock` on a file beside the config (`.NAME.retire-lock`), not on the config itself,
which every write replaces (a new inode each time). The kernel releases it when the process ends,
however it ends, so a crashed run never leaves it held.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from tfs_traffic.errors import ToolError, UsageError


class Busy(UsageError):
    """Another run holds the lock (exit status 2: nothing was changed)."""


def lock_path(models_config: str | os.PathLike[str]) -> Path:
    path = Path(models_config)
    return path.with_name(f".{path.name}.retire-lock")


@contextlib.contextmanager
def held(models_config: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of `models_config` for the block; Busy at once if another process holds it."""
    path = lock_path(models_config)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ToolError(f"cannot create the lock {path}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise Busy(
                f"another retire apply or rollback is changing {models_config} ({holder or 'lock ' + str(path)}): "
                "nothing was changed"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)
