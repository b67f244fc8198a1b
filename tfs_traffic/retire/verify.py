"""Step 4 of `retire apply` (and all of `retire verify`): the fleet serves what the plan says.

On every target, by TF Serving's own answers (README, "Retiring versions"): each retired version is
END, or unknown to the server (never loaded there); every other version of the policy is AVAILABLE;
a request without a version, and each version label, resolve to the same version as before
(`GetModelMetadata`). The reload RPC returns before the unload happens (at the server's next
file-system poll), so state is read back until it holds or `--timeout` passes, never assumed.

Without targets the same is read from Prometheus' availability gauges (both sources, docs/metrics.md),
counting only samples scraped after the change.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfs_traffic import contract
from tfs_traffic.durations import format_duration
from tfs_traffic.prometheus import promql
from tfs_traffic.prometheus.api import Querier
from tfs_traffic.retire.plan import ModelPlan
from tfs_traffic.retire.servers import Server, Unreachable
from tfs_traffic.sidecar import wire

STATE_UNLOADING = 40  # ModelVersionStatus.State
STATE_NAMES = {10: "START", 20: "LOADING", 30: "AVAILABLE", STATE_UNLOADING: "UNLOADING", 50: "END"}
POLL = 0.2  # between two rounds of GetModelStatus: a poll interval of TF Serving is 1 s at least
PROMETHEUS_POLL = 1.0
UNREACHABLE_GRACE = 10.0  # a target that answers nothing this long is unreachable, not busy


class VerifyFailed(Exception):
    """The fleet did not reach the expected state: unreachable, broken, or not within the timeout."""


class Reachability:
    """Since when each target has not answered (its gRPC port or one of its pages): one silent for
    UNREACHABLE_GRACE is unreachable, whichever check noticed, and ends the run."""

    def __init__(self, grace: float = UNREACHABLE_GRACE, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.clock = clock
        self._since: dict[tuple[str, str], float] = {}

    def failed(self, target: str, detail: str, way: str = "grpc") -> None:
        """`target` did not answer `way` (its gRPC port, a page's URL) now: VerifyFailed once that
        has lasted the grace."""
        first = self._since.setdefault((target, way), self.clock())
        if self.clock() - first >= self.grace:
            raise VerifyFailed(f"{target} unreachable for {self.grace:.0f}s ({detail})")

    def answered(self, target: str, way: str = "grpc") -> None:
        self._since.pop((target, way), None)


@dataclass(frozen=True)
class Expect:
    """What one model must look like on every target."""

    model: str
    available: tuple[int, ...]  # must be AVAILABLE
    gone: tuple[int, ...] = ()  # must be END, or unknown to the server
    latest: int | None = None  # what a request without a version resolves to (None: not checked)
    labels: Mapping[str, int] = field(default_factory=dict)  # what each label resolves to

    def as_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "available": list(self.available),
            "gone": list(self.gone),
            "latest": self.latest,
            "labels": dict(self.labels),
        }


def expectations(model: ModelPlan, retired: Sequence[int]) -> Expect:
    """What `model` must look like once `retired` are unloaded."""
    return Expect(
        model=model.model_name,
        available=tuple(v for v in model.available if v not in set(retired)),
        gone=tuple(sorted(retired)),
        latest=model.latest,
        labels=dict(model.labels),
    )


def restored(model: ModelPlan) -> Expect:
    """What `model` must look like once the previous config is back: as at plan time."""
    return Expect(model.model_name, tuple(model.available), (), model.latest, dict(model.labels))


def _state(value: int | None) -> str:
    return "unknown" if value is None else STATE_NAMES.get(value, str(value))


def check_server(server: Server, expect: Expect, strict: bool) -> tuple[str, bool]:
    """("", False) when `server` serves `expect`; else (what differs, whether it is broken rather
    than not there yet). `strict`: a version that must stay AVAILABLE and is not is broken (a
    retirement never touches it); otherwise (a restore) it is on its way back. Unreachable raises."""
    states = server.status(expect.model)
    for version in expect.gone:
        state = states.get(version)
        if state not in (None, wire.STATE_END):
            return f"{expect.model}:{version} is {_state(state)}", False
    for version in expect.available:
        state = states.get(version)
        if state != wire.STATE_AVAILABLE:
            broken = strict and state in (None, STATE_UNLOADING, wire.STATE_END)
            return f"{expect.model}:{version} is {_state(state)}", broken
    if expect.latest is not None:
        resolved = server.resolve(expect.model)
        if resolved != expect.latest:
            return f"{expect.model} without a version resolves to {resolved}, not {expect.latest}", strict
    for label, version in sorted(expect.labels.items()):
        resolved = server.resolve(expect.model, label)
        if resolved != version:
            return f"{expect.model} label {label!r} resolves to {resolved}, not {version}", strict
    return "", False


def on_targets(
    servers: Sequence[Server],
    expects: Sequence[Expect],
    timeout: float,
    *,
    strict: bool = True,
    between: Callable[[], None] = lambda: None,
    reach: Reachability | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Wait until every server serves every `expect`; the seconds it took. VerifyFailed at once for
    a broken state or an unreachable target (`reach`), else at the timeout. `between` runs after
    each round that is not done yet (the soak's watch: a client asking for a retired version stops
    the wait)."""
    reach = reach or Reachability()
    start = clock()
    while True:
        waiting: list[str] = []
        for server in servers:
            try:
                for expect in expects:
                    problem, broken = check_server(server, expect, strict)
                    if broken:
                        raise VerifyFailed(f"{server.address}: {problem}")
                    if problem:
                        waiting.append(f"{server.address}: {problem}")
                        break
            except Unreachable as e:
                reach.failed(server.address, str(e))
                waiting.append(str(e))
            else:
                reach.answered(server.address)
        if not waiting:
            return clock() - start
        if clock() - start >= timeout:
            raise VerifyFailed(f"not verified within {format_duration(timeout)}: {waiting[0]}")
        between()
        time.sleep(POLL)


# What the sidecar's status poller says "latest" and each label resolve to (docs/metrics.md): 1 for
# its current answer. A patched server without the poller has none: there only availability is read.
RESOLVED = (contract.SIDECAR_LATEST, contract.SIDECAR_LABEL)


def gauges_query(models: Sequence[str], since_seconds: float, selector: str = "") -> str:
    """The latest sample, scraped within the last `since_seconds`, of every availability gauge
    series (both sources) of `models`, and of the sidecar's answers for latest and the labels."""
    names = f"__name__=~{promql.any_of([*promql.AVAILABLE_SOURCES.values(), *RESOLVED])}"
    models_matcher = f"{contract.MODEL}=~{promql.any_of(list(models))}"
    return f"last_over_time({promql.select('', selector, names, models_matcher)}[{promql.duration(since_seconds)}])"


def check_gauges(samples: Sequence[Mapping[str, Any]], expect: Expect, instances: Sequence[str] = ()) -> str:
    """ "" when every instance with fresh samples of the model reports it as `expect` says (and each
    of `instances` has fresh samples); else what differs. "Latest" and the labels are checked where
    a sidecar answers for them."""
    available: dict[str, dict[str, float]] = {}  # instance -> version -> the gauge
    resolved: dict[tuple[str, str], set[str]] = {}  # (instance, label or "" for latest) -> versions at 1
    for sample in samples:
        labels = sample["metric"]
        if labels.get(contract.MODEL) != expect.model:
            continue
        value, instance = float(sample["value"][1]), str(labels.get("instance", ""))
        version, name = str(labels.get(contract.VERSION, "")), labels.get("__name__", "")
        if name in RESOLVED:
            answers = resolved.setdefault((instance, str(labels.get(contract.VERSION_LABEL, ""))), set())
            if value == 1:
                answers.add(version)
            continue
        versions = available.setdefault(instance, {})
        versions[version] = max(versions.get(version, 0.0), value)
    if not available:
        return f"{expect.model}: no availability gauge scraped since the change"
    for instance in instances:
        if instance not in available:
            return f"{expect.model}: no scrape of {instance} since the change"
    for instance, versions in sorted(available.items()):
        for gone in expect.gone:
            if versions.get(str(gone)) == 1:
                return f"{instance}: {expect.model}:{gone} is AVAILABLE"
        for kept in expect.available:
            if versions.get(str(kept)) != 1:
                return f"{instance}: {expect.model}:{kept} is not AVAILABLE"
    wanted = {"": expect.latest, **expect.labels}
    for (instance, label), answers in sorted(resolved.items()):
        if label in wanted and wanted[label] is not None and answers != {str(wanted[label])}:
            what = f"label {label!r}" if label else "without a version"
            found = ", ".join(sorted(answers)) or "nothing"
            return f"{instance}: {expect.model} {what} resolves to {found}, not {wanted[label]}"
    return ""


def on_prometheus(
    client: Querier,
    expects: Sequence[Expect],
    since: float,
    timeout: float,
    *,
    selector: str = "",
    instances: Mapping[str, Sequence[str]] | None = None,
    between: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.time,
) -> float:
    """`on_targets` from Prometheus' gauges: only samples scraped after `since` (Unix time) count.
    `instances`: per model, the targets that must have been scraped since (None: whoever reports)."""
    start = clock()
    models = sorted({e.model for e in expects})
    while True:
        now = clock()
        samples = client.query(gauges_query(models, max(0.001, now - since), selector), now)
        waiting = [
            problem
            for expect in expects
            if (problem := check_gauges(samples, expect, (instances or {}).get(expect.model, ())))
        ]
        if not waiting:
            return clock() - start
        if clock() - start >= timeout:
            raise VerifyFailed(f"not verified within {format_duration(timeout)} (Prometheus): {waiting[0]}")
        between()
        time.sleep(PROMETHEUS_POLL)
