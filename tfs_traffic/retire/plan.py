"""`retire plan`: the report's verdicts turned into a change of the models config, or refused.

The report says which versions are idle (docs/verdicts.md). A plan retires only versions whose
removal from the config changes nothing else, so beyond the verdict a version is refused when
(README, "Retiring versions"):

- its model's policy is not `specific`: under `latest {N}` an older version would be loaded in its
  place, under `all` nothing but deleting the directory unloads it (unload.md §5). With
  `convert_policy` the policy becomes the explicit list of the versions AVAILABLE now, and the
  plan says so;
- it is the model's last version (an empty `specific` list unloads every version), its latest
  (unversioned requests move to another version) or the target of a version label (the label
  would dangle, and every later reload carrying it fails);
- it was called within the lookback (the report's note: a weekly or monthly client);
- the fleet and the config disagree for its model: a version of the policy AVAILABLE nowhere, one
  AVAILABLE but not in the policy, or one AVAILABLE on only some of the targets serving the model.

The plan is JSON (docs/json.md, "The retire plan"); `apply` reads it back with `load`.
"""

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfs_traffic import modelconfig
from tfs_traffic.durations import format_duration, parse_time, rfc3339
from tfs_traffic.errors import UsageError
from tfs_traffic.report.display import display_calls, display_coverage, redact_url, version_key
from tfs_traffic.report.model import RETIRE, Report, VersionReport

KIND = "tfs-traffic retire plan"
FORMAT = 1
RETIRE_ACTION, KEEP_ACTION, REFUSED_ACTION = "retire", "keep", "refused"
MEMORY_NOTE = (
    "unloading frees each retired version's memory inside TF Serving at the unload; the process returns it "
    "to the OS only when it runs with jemalloc (LD_PRELOAD), else only at its next restart: resident memory "
    "may not drop before (tensorflow/serving#1664, #2142)"
)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class VersionPlan:
    """One version AVAILABLE now: retire, keep (the report's reason) or refused (and why)."""

    model_version: str
    action: str
    reason: str
    detail: str = ""
    calls: int | None = None
    coverage: float = 0.0
    last_call_at: float | None = None
    labels: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    calls_by_source: dict[str, int | None] = field(default_factory=dict)
    estimated_ram_bytes: int | None = None  # TF Serving's estimate (README "What retiring frees")

    def as_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "action": self.action,
            "reason": self.reason,
            "detail": self.detail,
            "calls": self.calls,
            "coverage": self.coverage,
            "last_call_at": None if self.last_call_at is None else rfc3339(self.last_call_at),
            "labels": self.labels,
            "instances": self.instances,
            "calls_by_source": self.calls_by_source,
            "estimated_ram_bytes": self.estimated_ram_bytes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "VersionPlan":
        last = data.get("last_call_at")
        return cls(
            model_version=str(data["model_version"]),
            action=str(data["action"]),
            reason=str(data["reason"]),
            detail=str(data.get("detail", "")),
            calls=data.get("calls"),
            coverage=float(data.get("coverage", 0.0)),
            last_call_at=None if last is None else parse_time(str(last)),
            labels=list(data.get("labels", [])),
            instances=list(data.get("instances", [])),
            calls_by_source=dict(data.get("calls_by_source", {})),
            estimated_ram_bytes=data.get("estimated_ram_bytes"),
        )


@dataclass
class ModelPlan:
    """One model of the config: its policy, what the fleet serves, and the change (if any)."""

    model_name: str
    policy: str  # latest | all | specific, as in the models config
    policy_versions: list[int]  # specific: the list; latest: [N]; all: []
    available: list[int]  # AVAILABLE now on some target
    instances: list[str]  # the targets reporting a version of it AVAILABLE now
    latest: int | None  # what a request without a version resolves to: the highest AVAILABLE
    labels: dict[str, int]  # version_labels of the config
    versions: list[VersionPlan]
    converted: bool = False  # --convert-policy turned the policy into `specific`
    drift: list[str] = field(default_factory=list)
    refused: str = ""  # why the whole model is refused ("" when it is not)
    new_versions: list[int] | None = None  # the `specific` list after the change; None: no change

    @property
    def retire(self) -> list[int]:
        return [int(v.model_version) for v in self.versions if v.action == RETIRE_ACTION]

    def kept_after(self, retired: Iterable[int]) -> list[int]:
        """The `specific` list once `retired` leave it: the policy's list, or (converted) the
        versions AVAILABLE at plan time."""
        base = self.available if self.converted else self.policy_versions
        gone = set(retired)
        return sorted(v for v in base if v not in gone)

    def as_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "policy": self.policy,
            "policy_versions": self.policy_versions,
            "converted": self.converted,
            "available": self.available,
            "instances": self.instances,
            "latest": self.latest,
            "labels": self.labels,
            "drift": self.drift,
            "refused": self.refused,
            "retire": [str(v) for v in self.retire],
            "new_versions": self.new_versions,
            "versions": [v.as_json() for v in self.versions],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelPlan":
        return cls(
            model_name=str(data["model_name"]),
            policy=str(data["policy"]),
            policy_versions=[int(v) for v in data.get("policy_versions", [])],
            available=[int(v) for v in data.get("available", [])],
            instances=list(data.get("instances", [])),
            latest=None if data.get("latest") is None else int(data["latest"]),
            labels={str(k): int(v) for k, v in dict(data.get("labels", {})).items()},
            versions=[VersionPlan.from_json(v) for v in data.get("versions", [])],
            converted=bool(data.get("converted", False)),
            drift=list(data.get("drift", [])),
            refused=str(data.get("refused", "")),
            new_versions=None if data.get("new_versions") is None else [int(v) for v in data["new_versions"]],
        )


@dataclass
class Plan:
    """What `apply` changes, and the evidence: the file's sha256, the report's window and thresholds."""

    created_at: float
    evaluated_at: float
    window_seconds: float
    lookback_seconds: float
    selector: str
    thresholds: dict[str, Any]
    prometheus: str
    models_config: str
    models_config_sha256: str
    convert_policy: bool
    allow_recent_caller: bool
    models: list[ModelPlan]
    new_config: str
    diff: str
    values: dict[str, str | None] | None = None  # with --values: {"input": path, "output": path or None}

    def changed(self) -> list[ModelPlan]:
        return [m for m in self.models if m.new_versions is not None]

    def counts(self) -> dict[str, int]:
        out = {RETIRE_ACTION: 0, KEEP_ACTION: 0, REFUSED_ACTION: 0}
        for m in self.models:
            for v in m.versions:
                out[v.action] += 1
        return out

    def frees(self) -> tuple[int, int, int]:
        """(versions to retire, their TF Serving estimates added up in bytes, how many have none):
        what each server that loads them all gives back to its allocator."""
        retire = [v for m in self.models for v in m.versions if v.action == RETIRE_ACTION]
        known = [v.estimated_ram_bytes for v in retire if v.estimated_ram_bytes is not None]
        return len(retire), sum(known), len(retire) - len(known)

    def model(self, name: str) -> ModelPlan:
        for m in self.models:
            if m.model_name == name:
                return m
        raise KeyError(name)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format": FORMAT,
            "created_at": rfc3339(self.created_at),
            "evaluated_at": rfc3339(self.evaluated_at),
            "window_seconds": int(self.window_seconds),
            "lookback_seconds": int(self.lookback_seconds),
            "selector": self.selector,
            "thresholds": self.thresholds,
            "prometheus": self.prometheus,
            "models_config": self.models_config,
            "models_config_sha256": self.models_config_sha256,
            "convert_policy": self.convert_policy,
            "allow_recent_caller": self.allow_recent_caller,
            "summary": self.counts(),
            "retire_estimated_ram_bytes": self.frees()[1],
            "retire_without_estimate": self.frees()[2],
            "memory": MEMORY_NOTE,
            "models": [m.as_json() for m in self.models],
            "new_config": self.new_config,
            "diff": self.diff,
            "values": self.values,
        }

    def to_text(self) -> str:
        return json.dumps(self.as_json(), indent=2) + "\n"


def load(path: str, text: str) -> Plan:
    """A plan written by `retire plan`; UsageError (a refused plan) for anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not a retire plan: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise UsageError(f'{path} is not a retire plan (no "kind": "{KIND}")')
    if data.get("format") != FORMAT:
        raise UsageError(f"{path}: plan format {data.get('format')!r} is not {FORMAT}: make the plan again")
    try:
        return Plan(
            created_at=parse_time(str(data["created_at"])),
            evaluated_at=parse_time(str(data["evaluated_at"])),
            window_seconds=float(data["window_seconds"]),
            lookback_seconds=float(data["lookback_seconds"]),
            selector=str(data.get("selector", "")),
            thresholds=dict(data.get("thresholds", {})),
            prometheus=str(data["prometheus"]),
            models_config=str(data["models_config"]),
            models_config_sha256=str(data["models_config_sha256"]),
            convert_policy=bool(data.get("convert_policy", False)),
            allow_recent_caller=bool(data.get("allow_recent_caller", False)),
            models=[ModelPlan.from_json(m) for m in data["models"]],
            new_config=str(data["new_config"]),
            diff=str(data.get("diff", "")),
            values=data.get("values"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path} is not a complete retire plan: {type(e).__name__}: {e}") from None


# --- building a plan ---


def _policy_text(entry: modelconfig.ModelEntry) -> str:
    if entry.policy == "latest":
        return f"latest {{ num_versions: {entry.policy_versions[0]} }}"
    if entry.policy == "all":
        return "all {}"
    return f"specific {{ versions: {list(entry.policy_versions)} }}"


def _drift(entry: modelconfig.ModelEntry, judged: Sequence[VersionReport]) -> list[str]:
    """How the fleet disagrees with the config for this model (empty: it agrees)."""
    out: list[str] = []
    available = {int(v.model_version) for v in judged if v.model_version.isdigit()}
    if entry.policy == "specific":
        for version in sorted(set(entry.policy_versions) - available):
            out.append(f"version {version} is in the policy but AVAILABLE on no target")
        for version in sorted(available - set(entry.policy_versions)):
            out.append(f"version {version} is AVAILABLE but not in the policy")
    everywhere = sorted({i for v in judged for i in v.instances})
    for v in judged:
        missing = sorted(set(everywhere) - set(v.instances))
        if missing:
            out.append(
                f"version {v.model_version} is AVAILABLE on {len(v.instances)} of {len(everywhere)} targets "
                f"(not on {', '.join(missing)})"
            )
    return out


def _evidence(v: VersionReport, action: str, reason: str, detail: str = "") -> VersionPlan:
    return VersionPlan(
        model_version=v.model_version,
        action=action,
        reason=reason,
        detail=detail,
        calls=display_calls(v.calls),
        coverage=display_coverage(v.coverage),
        last_call_at=v.last_call_at,
        labels=list(v.labels),
        instances=list(v.instances),
        calls_by_source={k: display_calls(c) for k, c in sorted(v.calls_by_source.items())},
        estimated_ram_bytes=v.estimated_ram_bytes,
    )


def _judge_model(
    entry: modelconfig.ModelEntry,
    judged: Sequence[VersionReport],
    report: Report,
    convert_policy: bool,
    allow_recent_caller: bool,
) -> ModelPlan:
    available = sorted(int(v.model_version) for v in judged if v.model_version.isdigit())
    model = ModelPlan(
        model_name=entry.name,
        policy=entry.policy,
        policy_versions=list(entry.policy_versions),
        available=available,
        instances=sorted({i for v in judged for i in v.instances}),
        latest=max(available) if available else None,
        labels=dict(entry.version_labels),
        versions=[],
        drift=_drift(entry, judged),
    )
    if model.drift:
        model.refused = "drift: " + "; ".join(model.drift)
    elif entry.policy != "specific" and not convert_policy:
        model.refused = (
            f"policy {_policy_text(entry)}: removing a version would load another one or move latest "
            "(--convert-policy lists the versions AVAILABLE now instead)"
        )
    if entry.policy != "specific" and convert_policy and not model.drift:
        model.converted = True
    labelled = entry.labels_by_version()
    candidates = [v for v in judged if v.verdict == RETIRE]
    for v in judged:
        if v.verdict != RETIRE:
            model.versions.append(_evidence(v, KEEP_ACTION, v.reason))
            continue
        refusal = _refusal(v, model, labelled, candidates, report, allow_recent_caller)
        if refusal:
            model.versions.append(_evidence(v, REFUSED_ACTION, *refusal))
        else:
            model.versions.append(_evidence(v, RETIRE_ACTION, v.reason))
    retired = model.retire
    if retired:
        model.new_versions = model.kept_after(retired)
    else:
        model.converted = False  # nothing to retire: the policy stays as it is
    return model


def _refusal(
    v: VersionReport,
    model: ModelPlan,
    labelled: Mapping[int, list[str]],
    candidates: Sequence[VersionReport],
    report: Report,
    allow_recent_caller: bool,
) -> tuple[str, str] | None:
    """(reason, detail) for a version the report would retire but the plan may not; None: retire it."""
    if model.refused:
        reason = "drift" if model.drift else f"policy:{model.policy}"
        return reason, model.refused
    if not v.model_version.isdigit():
        return "not-a-number", "a specific policy lists version numbers only"
    version = int(v.model_version)
    if version == model.latest:
        return "latest", "requests without a version go to the highest AVAILABLE version"
    if version in labelled:
        label = labelled[version][0]
        return f"label:{label}", f"version label {label!r} points at it: move the label first (a reload of its own)"
    others = set(model.kept_after(int(c.model_version) for c in candidates if c.model_version.isdigit()))
    if not others:
        return "last-version", "an empty specific list unloads every version of the model"
    if v.last_call_at is not None and not allow_recent_caller:
        return "recent-caller", (
            f"last called {rfc3339(v.last_call_at)}, within the lookback of "
            f"{format_duration(report.options.last_call_span)} (--allow-recent-caller retires it anyway)"
        )
    return None


def build(
    report: Report,
    config: Any,
    original_text: str,
    models_config: str,
    created_at: float,
    *,
    models: Sequence[str] = (),
    convert_policy: bool = False,
    allow_recent_caller: bool = False,
) -> Plan:
    """The plan for every model of `config` (or those named in `models`) the report judged."""
    entries = {e.name: e for e in modelconfig.entries(config)}
    unknown = sorted(set(models) - set(entries))
    if unknown:
        raise UsageError(f"--model {', '.join(unknown)}: not in {models_config}")
    judged: dict[str, list[VersionReport]] = {}
    for v in report.versions:
        judged.setdefault(v.model_name, []).append(v)
    plans = []
    for name, entry in entries.items():
        if models and name not in models:
            continue
        found = sorted(judged.get(name, []), key=lambda v: version_key(v.model_version))
        if not found and entry.policy != "specific":
            continue  # nothing AVAILABLE, nothing the policy names: nothing to say
        plans.append(_judge_model(entry, found, report, convert_policy, allow_recent_caller))
    changes = {m.model_name: m.new_versions for m in plans if m.new_versions is not None}
    new_config = modelconfig.to_text(modelconfig.with_specific_versions(config, changes)) if changes else original_text
    diff = "".join(
        difflib.unified_diff(
            original_text.splitlines(keepends=True),
            new_config.splitlines(keepends=True),
            fromfile=models_config,
            tofile=f"{models_config} (planned)",
        )
    )
    opts = report.options
    return Plan(
        created_at=created_at,
        evaluated_at=report.evaluated_at,
        window_seconds=report.window_seconds,
        lookback_seconds=opts.lookback,
        selector=opts.selector,
        thresholds={"min_calls": opts.min_calls, "max_qps": opts.max_qps, "max_gap_ratio": opts.max_gap_ratio},
        prometheus=redact_url(report.prometheus),
        models_config=models_config,
        models_config_sha256=sha256_text(original_text),
        convert_policy=convert_policy,
        allow_recent_caller=allow_recent_caller,
        models=plans,
        new_config=new_config,
        diff=diff,
    )


def config_with(config: Any, model: ModelPlan, retired: Iterable[int]) -> Any:
    """`config` with `model`'s policy the `specific` list left once `retired` go."""
    return modelconfig.with_specific_versions(config, {model.model_name: model.kept_after(retired)})
