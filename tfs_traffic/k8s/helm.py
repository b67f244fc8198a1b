"""`helm template` through the real Helm engine, without a helm binary.

helm-python-sdk embeds Helm's own Go SDK (v4): it loads the chart, coalesces and checks the values
against values.schema.json, and runs the template engine. What `helm template` does around the
engine is small and done here the way Helm v4.2 does it (pkg/cmd/template.go, pkg/action/action.go
`renderResources`, pkg/release/v1/util `SortManifests`/`SplitManifests`/`InstallOrder`): NOTES.txt
and partials are left out, every file is split into its YAML documents, the documents are ordered
by kind in Helm's install order (files in name order, documents in file order), and each is printed
as `---\\n# Source: <template>\\n<document>\\n`. So `tfs-traffic k8s render` prints what
`helm template NAME CHART -n NAMESPACE -f VALUES` prints, and users without helm can still render.

Values files are parsed by Helm's YAML reader and merged like repeated `-f` (later files win, maps
merge key by key). A mistake in them, or a chart `fail`, becomes one UsageError line.
"""

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.files import read_user_text

DEFAULT_RELEASE = "release-name"  # helm template's name when none is given
DEFAULT_NAMESPACE = "default"
NOTES_SUFFIX = "NOTES.txt"
HOOK_ANNOTATION = "helm.sh/hook"
MISSING_SDK = (
    "rendering the chart needs Helm's engine: pip install 'tfs-traffic[k8s]' (helm-python-sdk), "
    "or run `helm template` on k8s/chart"
)

# pkg/release/v1/util/kind_sorter.go InstallOrder (Helm v4.2.3).
INSTALL_ORDER = (
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
    "IngressClass", "Ingress", "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
)  # fmt: skip
_RANK = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
# SplitManifests' separator, `(?:^|\s*\n)---\s*` with Go's \s (ASCII whitespace without \v).
_SEPARATOR = re.compile(r"(?:^|[\t\n\f\r ]*\n)---[\t\n\f\r ]*")


def packaged_chart() -> Path:
    """The chart shipped with the package (k8s/chart of the repository, through a symlink)."""
    from importlib import resources

    return Path(str(resources.files("tfs_traffic.k8s") / "chart"))


def _sdk() -> Any:
    try:
        import helm_python
    except ImportError:
        raise UsageError(MISSING_SDK) from None
    return helm_python


@dataclass(frozen=True)
class Manifest:
    """One rendered document: the template it came from, its text and its parsed form."""

    source: str
    text: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's `mergeMaps` (pkg/cli/values/options.go): maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merge_values(current, value)
        else:
            out[key] = value
    return out


def load_values_files(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The values of `-f FILE...`: each parsed by Helm's reader, merged in order."""
    helm = _sdk()
    merged: dict[str, Any] = {}
    for path in paths:
        text = read_user_text(path, "values file")
        try:
            values = helm.values_from_yaml(text) if text.strip() else {}
        except helm.HelmError as e:
            raise UsageError(f"{Path(path).name}: not valid YAML values: {_one_line(str(e))}") from None
        merged = merge_values(merged, values)
    return merged


def _one_line(message: str) -> str:
    """Helm's multi-line messages (schema errors list one problem a line) joined into one line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if any(line.startswith("- at ") for line in lines):  # schema errors, under a header and the chart's name
        lines = [line.removeprefix("- ") for line in lines if line.startswith("- ")]
    return "; ".join(lines)


@contextmanager
def _chart(chart_dir: str | Path) -> Iterator[Any]:
    helm = _sdk()
    try:
        chart = helm.Chart.load(str(chart_dir))
    except helm.HelmError as e:
        raise UsageError(f"{chart_dir}: not a Helm chart: {_one_line(str(e))}") from None
    with chart:
        yield chart


def render_files(
    values: Mapping[str, Any],
    *,
    chart_dir: str | Path | None = None,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    source: str = "values",
) -> dict[str, str]:
    """Template path -> rendered text, from Helm's engine (the values schema is checked first)."""
    helm = _sdk()
    try:
        helm.validate_release_name(release)
    except helm.HelmError as e:
        raise UsageError(f"release name {release!r}: {_one_line(str(e))}") from None
    with _chart(chart_dir or packaged_chart()) as chart:
        try:
            files: dict[str, str] = chart.render(dict(values), name=release, namespace=namespace)
        except helm.HelmValuesError as e:
            raise UsageError(f"{source}: {_one_line(str(e))}") from None
        except helm.HelmRenderError as e:
            raise UsageError(f"{source}: {_render_error(str(e))}") from None
    return files


def _render_error(message: str) -> str:
    """A template `fail` reads `execution error at (chart/templates/x.yaml:1:4): MESSAGE`: keep MESSAGE."""
    found = re.match(r"execution error at \([^)]*\): (.*)", message.strip(), re.DOTALL)
    return _one_line(found.group(1) if found else message)


def split_manifests(text: str) -> list[str]:
    """Helm's SplitManifests: the YAML documents of one rendered file, in order, none empty."""
    docs = []
    for doc in _SEPARATOR.split(text.lstrip()):
        if doc.strip():
            docs.append(doc.lstrip())
    return docs


def sort_manifests(files: Mapping[str, str]) -> tuple[list[Manifest], list[Manifest]]:
    """Helm's SortManifests with InstallOrder: (manifests, hooks), NOTES.txt and partials left out."""
    manifests: list[Manifest] = []
    hooks: list[Manifest] = []
    for path in sorted(files):
        content = files[path]
        if path.endswith(NOTES_SUFFIX) or Path(path).name.startswith("_") or not content.strip():
            continue
        for doc in split_manifests(content):
            try:
                obj = yaml.safe_load(doc)
            except yaml.YAMLError as e:
                raise ToolError(f"YAML parse error on {path}: {e}") from None
            obj = obj if isinstance(obj, dict) else {}
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            (hooks if HOOK_ANNOTATION in annotations else manifests).append(Manifest(path, doc, obj))

    def rank(m: Manifest) -> tuple[int, str]:
        # Known kinds in install order, unknown kinds after them alphabetically; stable otherwise.
        return (_RANK[m.kind], "") if m.kind in _RANK else (len(_RANK), m.kind)

    return sorted(manifests, key=rank), sorted(hooks, key=rank)


def template_text(manifests: Sequence[Manifest], hooks: Sequence[Manifest] = ()) -> str:
    """`helm template`'s output: the release manifest trimmed, then every hook."""
    body = "".join(f"---\n# Source: {m.source}\n{m.text}\n" for m in manifests)
    out = body.strip() + "\n"
    return out + "".join(f"---\n# Source: {h.source}\n{h.text}\n" for h in hooks)


def template(
    values: Mapping[str, Any],
    *,
    chart_dir: str | Path | None = None,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    source: str = "values",
) -> tuple[str, list[Manifest]]:
    """What `helm template RELEASE CHART -n NAMESPACE` prints for `values`, and the parsed manifests."""
    files = render_files(values, chart_dir=chart_dir, release=release, namespace=namespace, source=source)
    manifests, hooks = sort_manifests(files)
    return template_text(manifests, hooks), [*manifests, *hooks]


def notes(
    values: Mapping[str, Any],
    *,
    chart_dir: str | Path | None = None,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
) -> str:
    """The chart's rendered NOTES.txt (what `helm install` prints after installing)."""
    files = render_files(values, chart_dir=chart_dir, release=release, namespace=namespace)
    return "".join(text for path, text in sorted(files.items()) if path.endswith(f"/templates/{NOTES_SUFFIX}"))


def effective_values(
    values: Mapping[str, Any], *, chart_dir: str | Path | None = None, source: str = "values"
) -> dict[str, Any]:
    """The chart's defaults coalesced with `values`, checked against values.schema.json."""
    helm = _sdk()
    with _chart(chart_dir or packaged_chart()) as chart:
        try:
            chart.validate_schema(dict(values))
            merged: dict[str, Any] = chart.merge_values(dict(values))
        except helm.HelmValuesError as e:
            raise UsageError(f"{source}: {_one_line(str(e))}") from None
    return merged


def lint(
    values: Mapping[str, Any] | None = None,
    *,
    chart_dir: str | Path | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    kube_version: str | None = None,
) -> list[dict[str, Any]]:
    """`helm lint --strict`: its findings (severity 1 info, 2 warning, 3 error)."""
    helm = _sdk()
    report = helm.lint(
        str(chart_dir or packaged_chart()),
        None if values is None else dict(values),
        strict=True,
        namespace=namespace,
        kube_version=kube_version,
    )
    messages: list[dict[str, Any]] = report["messages"]
    return messages
