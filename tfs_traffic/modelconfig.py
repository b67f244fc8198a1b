"""TF Serving's model config file (text `ModelServerConfig`): read, and rewrite version policies.

Parsed with protobuf's text_format and the real config protos shipped in `tensorflow-serving-api`,
so anything TF Serving accepts we accept, and what we write TF Serving can read.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfs_traffic.errors import ToolError, UsageError


def _config_pb2() -> Any:
    try:
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError:
        raise ToolError(
            "tensorflow_serving config protos are missing: "
            "pip install --no-deps tensorflow-serving-api (they need protobuf only)"
        ) from None
    return model_server_config_pb2


@dataclass(frozen=True)
class ModelEntry:
    """One `config { ... }` entry: what we need of it."""

    name: str
    base_path: str
    version_labels: Mapping[str, int] = field(default_factory=dict)
    policy: str = "latest"  # latest | all | specific
    policy_versions: tuple[int, ...] = ()  # specific versions, or (N,) for latest N

    def labels_by_version(self) -> dict[int, list[str]]:
        """Version number -> its labels, sorted."""
        out: dict[int, list[str]] = {}
        for label, version in sorted(self.version_labels.items()):
            out.setdefault(version, []).append(label)
        return out


def parse_text(text: str, source: str = "<models config>") -> Any:
    """Parse text into a ModelServerConfig message; UsageError names the line of a mistake."""
    from google.protobuf import text_format

    pb2 = _config_pb2()
    message = pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise UsageError(f"{source}: malformed ModelServerConfig: {e}") from None
    if message.WhichOneof("config") == "custom_model_config":
        raise UsageError(f"{source}: custom_model_config is not supported; use model_config_list")
    seen: set[str] = set()
    for model in message.model_config_list.config:
        if not model.name:
            raise UsageError(f"{source}: a model config entry has no name")
        if model.name in seen:
            raise UsageError(f"{source}: model {model.name!r} is configured twice")
        seen.add(model.name)
    return message


def load(path: str | Path) -> Any:
    """Read and parse a models config file."""
    from tfs_traffic.files import read_user_text

    return parse_text(read_user_text(path, "models config"), str(path))


def entries(message: Any) -> list[ModelEntry]:
    """The model entries of a parsed ModelServerConfig."""
    out = []
    for model in message.model_config_list.config:
        policy = model.model_version_policy
        kind = policy.WhichOneof("policy_choice") or "latest"
        versions: tuple[int, ...] = ()
        if kind == "specific":
            versions = tuple(sorted(policy.specific.versions))
        elif kind == "latest":
            versions = (policy.latest.num_versions or 1,)
        out.append(
            ModelEntry(
                name=model.name,
                base_path=model.base_path,
                version_labels=dict(model.version_labels),
                policy=kind,
                policy_versions=versions,
            )
        )
    return out


def load_entries(path: str | Path) -> list[ModelEntry]:
    """Parse a models config file into entries."""
    return entries(load(path))


def with_specific_versions(message: Any, keep: Mapping[str, Iterable[int]]) -> Any:
    """A copy of `message` where each model named in `keep` serves exactly those versions.

    Models not in `keep` are left as they are; labels are kept unchanged.
    """
    pb2 = _config_pb2()
    out = pb2.ModelServerConfig()
    out.CopyFrom(message)
    for model in out.model_config_list.config:
        if model.name not in keep:
            continue
        versions = sorted(set(keep[model.name]))
        model.model_version_policy.Clear()
        model.model_version_policy.specific.versions.extend(versions)
    return out


def to_text(message: Any) -> str:
    """Text format as TF Serving's own examples write it."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(message))
