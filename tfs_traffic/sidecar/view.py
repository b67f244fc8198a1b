"""What the sidecar knows about the upstream's models, and how it turns a call into metric labels.

The status poller builds a `View` (the models it follows: those of the config file, and those the
file dropped that the server still serves; what the *server* resolves their version labels and
"latest" to, the versions AVAILABLE now and every version the server's status has listed) and
publishes it; the relay workers read it to resolve REST calls and to keep label values bounded
(docs/metrics.md):

- a model name the poller does not follow is counted as `__other__`;
- a version the server's status never listed (in any state, END included) is counted as
  `__other__`; a failed call that named no version is `unresolved`.

A successful response that says which version served it is proof that the version is loaded, so a
worker also accepts such versions before the next poll sees them (at most `MAX_LEARNED` per model,
so a misbehaving upstream cannot grow the label set without bound).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from tfs_traffic.contract import OTHER, UNRESOLVED

MAX_LEARNED = 64


@dataclass
class ModelView:
    """One followed model: its labels as the server resolves them, and what the poller saw (`seen`: every
    version GetModelStatus has listed, so an unloaded version keeps its number)."""

    labels: dict[str, int] = field(default_factory=dict)
    available: frozenset[int] = frozenset()
    seen: set[int] = field(default_factory=set)
    learned: set[int] = field(default_factory=set)
    latest_version: int | None = None  # what the server resolved a request with no version to

    @property
    def latest(self) -> int | None:
        """Where TF Serving sends a request that names no version: its own last answer, else the
        highest AVAILABLE version."""
        if self.latest_version is not None:
            return self.latest_version
        return max(self.available) if self.available else None

    def known(self, version: int) -> bool:
        return version in self.seen or version in self.learned


@dataclass
class View:
    """The poller's latest view of every model it follows."""

    models: dict[str, ModelView] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                name: {
                    "labels": m.labels,
                    "available": sorted(m.available),
                    "seen": sorted(m.seen),
                    "latest": m.latest_version,
                }
                for name, m in self.models.items()
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "View":
        data: dict[str, Any] = json.loads(text)
        return cls(
            {
                name: ModelView(
                    labels={str(k): int(v) for k, v in m["labels"].items()},
                    available=frozenset(int(v) for v in m["available"]),
                    seen={int(v) for v in m["seen"]},
                    latest_version=m.get("latest"),
                )
                for name, m in data.items()
            }
        )

    def carry_learned(self, previous: "View") -> None:
        """Keep the versions a worker learned from responses across a reload of the view."""
        for name, model in self.models.items():
            old = previous.models.get(name)
            if old is not None:
                model.learned = old.learned - model.seen

    # --- labels for the call metrics -------------------------------------------------------

    def served(self, name: str, version: int | None) -> tuple[str, str]:
        """Labels for a call that succeeded and was served by `version` (None: the response said not)."""
        model = self.models.get(name)
        if model is None:
            return OTHER, OTHER if version is not None else UNRESOLVED
        if version is None:
            return name, UNRESOLVED
        if not model.known(version):
            if len(model.learned) >= MAX_LEARNED:
                return name, OTHER
            model.learned.add(version)
        return name, str(version)

    def requested(self, name: str, version: int | None, label: str | None) -> tuple[str, str]:
        """Labels for a failed call: the version it asked for (a label mapped to its number)."""
        model = self.models.get(name)
        if model is None:
            return OTHER, UNRESOLVED if version is None and label is None else OTHER
        if version is None and label is not None:
            version = model.labels.get(label)
            if version is None:
                return name, OTHER
        if version is None:
            return name, UNRESOLVED
        return name, str(version) if model.known(version) else OTHER

    def resolved_version(self, name: str, version: int | None, label: str | None) -> int | None:
        """The version a call that asked for `version` or `label` goes to: its number, or what the
        server resolved its label / "latest" to on the last poll.

        REST responses do not say which version served them (nor does a gRPC response without
        `model_spec`), so this is the poller's last answer from the server (a documented race while
        versions swap or labels move).
        """
        if version is not None:
            return version
        model = self.models.get(name)
        if model is None:
            return None
        if label is not None:
            return model.labels.get(label)
        return model.latest


class ViewHolder:
    """A worker's current View, replaced whenever the supervisor publishes a new one."""

    def __init__(self, view: View | None = None) -> None:
        self.view = view or View()
