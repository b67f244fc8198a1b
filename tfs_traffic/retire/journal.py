"""The journal of `retire apply` and `retire rollback`: one JSON object per line, fsync'ed.

Every action writes its line (`"result": "start"`) and flushes it to disk *before* it acts, then a
line with its outcome; so after a crash the last `start` without an outcome names the action that
was under way. The first line of each run (`step` "begin") holds the models config's text before
the change: `retire rollback --journal` restores exactly that (README, "The journal").
"""

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tfs_traffic.errors import ToolError, UsageError

START, OK, FAILED = "start", "ok", "failed"


def timestamp(seconds: float | None = None) -> str:
    """RFC 3339 in UTC with milliseconds: steps a second apart must stay in order when read."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Journal:
    """Appends lines to FILE; each `write` returns once the line is on disk."""

    def __init__(self, path: str | os.PathLike[str], run: str | None = None) -> None:
        self.path = Path(path)
        self.run = run or uuid.uuid4().hex[:12]
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise UsageError(f"cannot write journal {self.path}: {e.strerror or e}") from None
        self._sync_directory()

    def _sync_directory(self) -> None:
        """A file created just now survives a crash only once its directory entry is on disk too."""
        try:
            fd = os.open(self.path.parent if str(self.path.parent) else ".", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def write(
        self,
        step: str,
        result: str,
        *,
        model: str | None = None,
        versions: Iterable[str] = (),
        targets: Iterable[str] = (),
        **details: Any,
    ) -> dict[str, Any]:
        """One line: time, run, step, model, versions, targets, result, then `details`."""
        entry: dict[str, Any] = {
            "time": timestamp(),
            "run": self.run,
            "step": step,
            "model": model,
            "versions": [str(v) for v in versions],
            "targets": list(targets),
            "result": result,
            **details,
        }
        data = (json.dumps(entry, sort_keys=False) + "\n").encode()
        try:
            os.write(self._fd, data)
            os.fsync(self._fd)
        except OSError as e:
            raise ToolError(f"cannot write journal {self.path}: {e.strerror or e}") from None
        return entry

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Run:
    """One run of `apply` as its journal lines tell it."""

    run: str
    begin: Mapping[str, Any]
    entries: list[dict[str, Any]]

    @property
    def previous_config(self) -> str:
        return str(self.begin["previous_config"])

    @property
    def models_config(self) -> str:
        return str(self.begin["models_config"])

    def written(self) -> list[dict[str, Any]]:
        """The `write` steps that completed: the changes a rollback undoes."""
        return [e for e in self.entries if e["step"] == "write" and e["result"] == OK]


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of a journal; UsageError for a file that is not one."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read journal {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"journal {path} is not text") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            # A crash can cut the last line short; any other bad line means this is not a journal.
            if number == len(text.splitlines()):
                break
            raise UsageError(f"{path}:{number}: not a journal line (JSON expected)") from None
        if not isinstance(entry, dict) or not {"step", "run", "result"} <= set(entry):
            raise UsageError(f"{path}:{number}: not a journal line (step, run and result expected)")
        entries.append(entry)
    return entries


def last_apply(path: str | os.PathLike[str]) -> Run:
    """The last run in the journal that began an apply (a `begin` line with the previous config)."""
    entries = read(path)
    begins = [e for e in entries if e["step"] == "begin" and "previous_config" in e]
    if not begins:
        raise UsageError(f"journal {path} records no apply (no begin step with the previous config)")
    begin = begins[-1]
    return Run(begin["run"], begin, [e for e in entries if e["run"] == begin["run"]])
