"""What a `retire` action did, for its result table and JSON (docs/json.md, "retire results"),
and the exit status it ends with (README, "Retiring versions")."""

from dataclasses import dataclass, field
from typing import Any

from tfs_traffic.durations import rfc3339

DONE, NOTHING, FAILED_STATUS, ROLLED_BACK = "done", "nothing-to-do", "failed", "rolled-back"
VERIFIED, CLIENT_WANTS = "verified", "client-wants"  # `retire verify`, which changes nothing
RESTORED = "restored"  # `retire rollback`
INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM during `apply`: the previous config restored
EXIT = {
    DONE: 0,
    NOTHING: 0,
    VERIFIED: 0,
    RESTORED: 0,
    FAILED_STATUS: 1,
    ROLLED_BACK: 3,
    CLIENT_WANTS: 3,
    INTERRUPTED: 130,
}


@dataclass
class ModelOutcome:
    model_name: str
    retired: list[int] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # version -> why
    verified_seconds: float | None = None
    restored: list[int] = field(default_factory=list)  # AVAILABLE again after a rollback

    def as_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "retired": [str(v) for v in self.retired],
            "dropped": [{"model_version": v, "reasons": r} for v, r in sorted(self.dropped.items())],
            "verified_seconds": None if self.verified_seconds is None else round(self.verified_seconds, 3),
            "restored": [str(v) for v in self.restored],
        }


@dataclass
class Outcome:
    """What `apply` (or `verify`) did, for the result table and JSON."""

    status: str
    message: str
    models: list[ModelOutcome]
    journal: str | None = None
    signals: list[dict[str, Any]] = field(default_factory=list)
    soak_seconds: float = 0.0
    started_at: float = 0.0
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return EXIT[self.status]

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_status": self.exit_status,
            "message": self.message,
            "started_at": rfc3339(self.started_at),
            "seconds": round(self.seconds, 3),
            "soak_seconds": self.soak_seconds,
            "journal": self.journal,
            "models": [m.as_json() for m in self.models],
            "signals": self.signals,
        }
