"""Step 3 of `retire apply`: the models config written, and pushed to servers that do not poll it.

The file is always written (atomically, `tfs_traffic.files`): a server restarted later reads it,
and one that polls it applies it within its poll interval. A push (`HandleReloadConfigRequest`)
carries the same whole config: a reload replaces everything, and a server that also polls its file
would revert a config that differs from it at its next tick (unload.md §2). Each action is in the
journal before it happens.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfs_traffic.files import write_atomic
from tfs_traffic.retire.journal import FAILED, OK, START, Journal
from tfs_traffic.retire.plan import sha256_text
from tfs_traffic.retire.servers import Refused, Server, Unreachable


def write_config(journal: Journal, path: str, text: str, model: str | None, versions: Sequence[int], step: str) -> None:
    """Write `text` to `path` atomically, with the journal's line first."""
    details = {"file": str(Path(path)), "sha256": sha256_text(text), "config": text}
    journal.write(step, START, model=model, versions=[str(v) for v in versions], **details)
    try:
        write_atomic(path, text)
    except Exception as e:
        journal.write(step, FAILED, model=model, versions=[str(v) for v in versions], message=str(e))
        raise
    journal.write(step, OK, model=model, versions=[str(v) for v in versions], file=str(Path(path)))


def push(journal: Journal, server: Server, config: Any, model: str | None, versions: Sequence[int], role: str) -> None:
    """HandleReloadConfigRequest to `server`; the journal says which `role` (canary, rest, restore)."""
    names = [str(v) for v in versions]
    journal.write("push", START, model=model, versions=names, targets=[server.address], role=role)
    try:
        server.reload(config)
    except (Unreachable, Refused) as e:
        journal.write("push", FAILED, model=model, versions=names, targets=[server.address], role=role, message=str(e))
        raise
    journal.write("push", OK, model=model, versions=names, targets=[server.address], role=role)
