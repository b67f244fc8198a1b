"""The config before the change, restored and verified: `apply`'s way back and `retire rollback`.

The file gets its previous text back (atomically, journal first), every `--reload` server gets it
pushed, and then each target must serve every version it served before — AVAILABLE again, which is
a cold load from disk (unload.md §1.6) — with "latest" and the labels resolving as before. Each
target is verified on its own, so one that cannot be reached does not hide the others' state.
"""

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfs_traffic import modelconfig
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.prometheus.api import Querier
from tfs_traffic.retire import lock, push, verify
from tfs_traffic.retire.journal import FAILED, OK, START, Journal, last_apply
from tfs_traffic.retire.outcome import EXIT, FAILED_STATUS, RESTORED, ModelOutcome, Outcome
from tfs_traffic.retire.servers import Refused, Server, Unreachable


@dataclass
class Restored:
    """What a restore did: the file written, the pushes and verifications that failed."""

    verified: list[str] = field(default_factory=list)  # targets (or "Prometheus") serving the old config
    problems: list[str] = field(default_factory=list)  # short: the journal holds each one's details

    @property
    def complete(self) -> bool:
        return not self.problems

    def summary(self, total: int) -> str:
        if self.complete:
            return "previous config restored and verified"
        return f"previous config restored, verified on {len(self.verified)} of {total} target(s); " + "; ".join(
            self.problems
        )


def restore(
    journal: Journal,
    path: str,
    previous_text: str,
    expects: Sequence[verify.Expect],
    *,
    reload: Sequence[Server] = (),
    servers: Sequence[Server] = (),
    client: Querier | None = None,
    selector: str = "",
    timeout: float,
    reach: verify.Reachability | None = None,
) -> Restored:
    """Write `previous_text` back, push it to `reload`, and verify `expects` on `servers` (or, with
    none, on Prometheus' gauges scraped after the write). `reach`: what the run knows of silent
    targets (one silent for the whole grace already fails at once, if it still does not answer)."""
    out = Restored()
    models = sorted({e.model for e in expects})
    push.write_config(journal, path, previous_text, None, [], "restore")
    written_at = time.time()
    config = modelconfig.parse_text(previous_text, path)
    for server in reload:
        try:
            push.push(journal, server, config, None, [], "restore")
        except (Unreachable, Refused):
            out.problems.append(f"the push to {server.address} failed")
    checks: list[tuple[str, Callable[[], float]]] = [
        (server.address, functools.partial(verify.on_targets, [server], expects, timeout, strict=False, reach=reach))
        for server in servers
    ]
    if not checks and client is not None:
        checks = [("prometheus", lambda: verify.on_prometheus(client, expects, written_at, timeout, selector=selector))]
    for where, check in checks:
        line: dict[str, Any] = {"model": ",".join(models), "targets": [where], "role": "restore"}
        journal.write("verify", START, **line)
        try:
            seconds = check()
        except (verify.VerifyFailed, ToolError) as e:
            journal.write("verify", FAILED, **line, message=str(e))
            out.problems.append(f"not on {where}")
            continue
        journal.write("verify", OK, **line, seconds=round(seconds, 3))
        out.verified.append(where)
    return out


def from_journal(path: str, reload: Sequence[str], timeout: float, say: Callable[[str], None]) -> Outcome:
    """`retire rollback`: the config before the journal's last apply, restored and verified.

    Refused (UsageError) when the models config is neither that config nor one the apply wrote:
    someone changed it since, and writing the old text back would undo their change too."""
    from tfs_traffic.files import read_user_text
    from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
    from tfs_traffic.retire.plan import sha256_text

    run = last_apply(path)
    begin = run.begin
    file = run.models_config
    try:
        expects = [_expect(m["expect_restored"]) for m in begin["models"]]
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path}: the begin line of run {run.run} has no complete models: {e}") from None
    addresses = list(reload) or [str(a) for a in begin.get("reload", [])]
    targets = [str(t) for t in begin.get("targets", [])] or addresses
    pushed = [Server(a) for a in addresses]
    servers = [Server(a) for a in targets]
    client = None if servers else PrometheusClient(PrometheusAccess(url=str(begin["prometheus"])))
    started = time.time()
    try:
        with lock.held(file):
            current = sha256_text(read_user_text(file, "models config"))
            known = {str(begin.get("previous_sha256"))} | {
                str(e.get("sha256")) for e in run.entries if e["step"] == "write" and e["result"] == START
            }
            if current not in known:
                raise UsageError(
                    f"{file} changed since the apply of {begin['time']} (sha256 {current[:12]} is neither the config "
                    f"before it nor one it wrote): restore it by hand from the begin line of {path}"
                )
            say(f"restoring {file} as it was before the apply of {begin['time']} (run {run.run})")
            with Journal(path) as journal:
                journal.write("rollback", START, targets=targets, of_run=run.run)
                back = restore(
                    journal,
                    file,
                    run.previous_config,
                    expects,
                    reload=pushed,
                    servers=servers,
                    client=client,
                    selector=str(begin.get("selector", "")),
                    timeout=timeout,
                )
                status = RESTORED if back.complete else FAILED_STATUS
                message = back.summary(len(servers) or 1)
                result = OK if back.complete else FAILED
                journal.write("end", result, status=status, exit_status=EXIT[status], message=message)
    finally:
        for server in [*pushed, *servers]:
            server.close()
    models = [ModelOutcome(e.model, restored=list(e.available)) for e in expects]
    return Outcome(
        status,
        message if back.complete else f"could not complete: {message}",
        models,
        path,
        started_at=started,
        seconds=time.time() - started,
    )


def _expect(data: Mapping[str, Any]) -> verify.Expect:
    return verify.Expect(
        model=str(data["model"]),
        available=tuple(int(v) for v in data["available"]),
        gone=tuple(int(v) for v in data.get("gone", [])),
        latest=None if data.get("latest") is None else int(data["latest"]),
        labels={str(k): int(v) for k, v in dict(data.get("labels", {})).items()},
    )
