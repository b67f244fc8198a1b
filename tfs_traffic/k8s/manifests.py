"""Kubernetes manifests for one TF Serving deployment, rendered from a values file.

Jinja2 templates (package data under `k8s/templates/`) produce one object per file, in the spirit of
a Helm chart; the rules and dashboards inside come from `tfs_traffic.queries.mixin`, the same source as
`queries/`. Everything is rendered and parsed in memory first, and written only when all of it
succeeded, into a fresh directory that replaces the old one in one rename: a failed render leaves
the previous output untouched.
"""

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfs_traffic import modelconfig
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.k8s.values import Monitoring, Sidecar, TFServing, Values
from tfs_traffic.queries import dashboards, mixin

GENERATED_MARK = "rendered by `tfs-traffic k8s render`"
SIDECAR_JOB = "tfs-traffic-sidecar"
# Where the ConfigMaps are mounted in the pod (directories, so the kubelet can update them in place).
MODELS_CONFIG_DIR = "/etc/tfserving/models"
MONITORING_CONFIG_DIR = "/etc/tfserving/monitoring"


@dataclass(frozen=True)
class Rendered:
    """One rendered object: the file it goes to, its text (with comments) and its parsed form."""

    file_name: str
    text: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])


# --- Jinja2 filters -------------------------------------------------------------------------


def _quote(value: Any) -> str:
    """A YAML scalar that always reads back as this exact string (quoted only where YAML needs it)."""
    return _to_yaml(str(value))


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as kubectl and the templates write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    """Multi-line strings (PromQL) as `|` blocks, readable in review; PyYAML falls back when it can't."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_IndentedDumper.add_representer(str, _represent_str)


def _to_yaml(value: Any, indent: int = 0) -> str:
    """Helm's `toYaml | indent N`: block-style YAML, each line indented; no trailing newline."""
    text = yaml.dump(
        value,
        Dumper=_IndentedDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=10_000,
    )
    if text.endswith("...\n"):  # a bare scalar
        text = text[: -len("...\n")]
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in text.rstrip("\n").split("\n"))


def _literal_block(text: str, indent: int) -> str:
    """A `|` block scalar for multi-line text (readable in diffs); a quoted string when that can't round-trip."""
    text = str(text)
    chomp = "" if text.endswith("\n") and not text.endswith("\n\n") else "-" if not text.endswith("\n") else "+"
    pad = " " * indent
    body = "\n".join(pad + line if line else "" for line in text.rstrip("\n").split("\n"))
    block = f"|{chomp}\n{body}"
    try:
        if yaml.safe_load("k: " + block + "\n") == {"k": text}:
            return block
    except yaml.YAMLError:
        pass
    return _quote(text)


def _combine(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    return {**a, **b}


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tfs_traffic.k8s", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(q=_quote, toyaml=_to_yaml, literal_block=_literal_block, combine=_combine)
    return env


# --- what the templates are given --------------------------------------------------------------


def object_names(values: Values) -> dict[str, str]:
    """The name of every object, derived from `values.name`."""
    n = values.name
    return {
        "deployment": n,
        "service": n,
        "models_config": f"{n}-models",
        "monitoring_config": f"{n}-monitoring",
        "pod_monitor": n,
        "prometheus_rule": f"{n}-tfs-traffic",
        "scaled_object": n,
        "dashboard_prefix": f"{n}-dashboard-",
    }


def common_labels(values: Values) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tensorflow-serving",
        "app.kubernetes.io/instance": values.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "tfs-traffic",
        **values.labels,
    }


def selector_labels(values: Values) -> dict[str, str]:
    """The labels that pick this deployment's pods: stable across upgrades (a selector is immutable)."""
    return {"app.kubernetes.io/name": "tensorflow-serving", "app.kubernetes.io/instance": values.name}


def monitoring_config_text(values: Values) -> str:
    """TF Serving's MonitoringConfig (text proto) that turns on its Prometheus exporter."""
    return f'prometheus_config {{\n  enable: true\n  path: "{values.tfserving.monitoring_path}"\n}}\n'


def tfserving_args(values: Values) -> list[str]:
    """Flags of tensorflow_model_server: ports, the two config files, and the user's extras."""
    t = values.tfserving
    args = [
        f"--port={t.grpc_port}",
        f"--rest_api_port={t.rest_port}",
        f"--model_config_file={MODELS_CONFIG_DIR}/models.config",
        f"--model_config_file_poll_wait_seconds={t.model_config_poll_seconds}",
        f"--monitoring_config_file={MONITORING_CONFIG_DIR}/monitoring.config",
    ]
    if t.probe == "grpc":
        args.append("--enable_grpc_healthcheck_service=true")
    return args + list(t.extra_args)


def sidecar_args(values: Values) -> list[str]:
    """Flags of `tfs-traffic sidecar` (design.md section 8); listen addresses only in proxy mode."""
    s, t = values.sidecar, values.tfserving
    args = [
        f"--models-config={MODELS_CONFIG_DIR}/models.config",
        f"--upstream-grpc=127.0.0.1:{t.grpc_port}",
    ]
    if values.proxy:
        args += [
            f"--upstream-rest=127.0.0.1:{t.rest_port}",
            f"--listen-grpc=0.0.0.0:{s.grpc_port}",
            f"--listen-rest=0.0.0.0:{s.rest_port}",
        ]
    args += [f"--metrics-addr=0.0.0.0:{s.metrics_port}", f"--poll-interval={s.poll_interval}"]
    if s.workers != 1:
        args.append(f"--workers={s.workers}")
    return args


def pod_annotations(values: Values) -> dict[str, str]:
    """prometheus.io/* (strings, as Kubernetes requires) for TF Serving's exporter, plus a config checksum."""
    checksum = hashlib.sha256(monitoring_config_text(values).encode()).hexdigest()[:16]
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(values.tfserving.rest_port),
        "prometheus.io/path": values.tfserving.monitoring_path,
        # TF Serving reads monitoring.config at start only: a change must roll the pods.
        "checksum/monitoring-config": checksum,
        **values.pod_annotations,
    }


def service_ports(values: Values) -> list[dict[str, Any]]:
    svc = values.service
    through = values.proxy and svc.through_proxy
    ports = [
        {"name": "grpc", "port": svc.grpc_port, "target": "proxy-grpc" if through else "grpc", "app_protocol": "grpc"},
        {"name": "rest", "port": svc.rest_port, "target": "proxy-rest" if through else "rest", "app_protocol": "http"},
    ]
    if values.proxy and not svc.through_proxy:
        ports += [
            {"name": "proxy-grpc", "port": values.sidecar.grpc_port, "target": "proxy-grpc", "app_protocol": "grpc"},
            {"name": "proxy-rest", "port": values.sidecar.rest_port, "target": "proxy-rest", "app_protocol": "http"},
        ]
    return ports


def model_names(values: Values) -> list[str]:
    return [m.name for m in modelconfig.entries(modelconfig.parse_text(values.models_config, "modelsConfig"))]


# --- the monitoring mixin (tfs_traffic.queries.mixin, issue #6) ----------------------------------------


def mixin_config(values: Values, source: str = "values.yaml") -> Any:
    """MixinConfig with the values file's `monitoring.mixin` overrides, each checked against its default's type."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(mixin.MixinConfig)}
    defaults = mixin.MixinConfig()
    overrides: dict[str, Any] = {}
    for key, value in values.monitoring.mixin.items():
        where = f"{source}: monitoring.mixin.{key}"
        if key not in fields:
            raise UsageError(f"{where}: unknown key (allowed here: {', '.join(sorted(fields))})")
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{where}: must be a list of strings (got {value!r})")
            value = tuple(value)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"{where}: must be a number (got {value!r})")
            value = float(value)
        elif not isinstance(value, type(default)):
            raise UsageError(f"{where}: must be a {type(default).__name__} (got {value!r})")
        overrides[key] = value
    config = dataclasses.replace(defaults, **overrides)
    if values.autoscaling.enabled and "namespace" not in config.group_labels:
        raise UsageError(f"{source}: monitoring.mixin.group_labels: must keep namespace while autoscaling is enabled")
    return config


def keda_query(values: Values) -> str:
    """Total call rate of this deployment's models in its namespace, read from the 5m recording rule.

    The rule is already summed over replicas (and the max of the patched and sidecar counters), so
    the sum over versions is the models' traffic; `or vector(0)` keeps the scaler working when idle.
    """
    models = "|".join(_re2_literal(m) for m in model_names(values))
    matchers = f"namespace={_promql_string(values.namespace)},model_name=~{_promql_string(models)}"
    return f"sum({mixin.CALLS_RATE5M}{{{matchers}}}) or vector(0)"


def _re2_literal(text: str) -> str:
    """`text` as an RE2 pattern matching itself; only metacharacters escaped, so the query stays readable."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def _promql_string(text: str) -> str:
    """A double-quoted PromQL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- rendering ---------------------------------------------------------------------------------


def _context(values: Values, source: str) -> dict[str, Any]:
    return {
        "v": values,
        "source": source,
        "mode": values.mode,
        "names": object_names(values),
        "labels": common_labels(values),
        "selector": selector_labels(values),
        "pod_annotations": pod_annotations(values),
        "tfserving_args": tfserving_args(values),
        "sidecar_args": sidecar_args(values),
        "service_ports": service_ports(values),
        "monitoring_config": monitoring_config_text(values),
        "startup_failures": max(1, math.ceil(values.tfserving.startup_timeout_seconds / 10)),
        "paths": {"models_dir": MODELS_CONFIG_DIR, "monitoring_dir": MONITORING_CONFIG_DIR},
    }


def _render_one(env: Any, template: str, file_name: str, context: Mapping[str, Any]) -> Rendered:
    text = env.get_template(template).render(**context)
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as e:  # a template bug, or a value that slipped past the schema
        raise ToolError(f"rendering {file_name} produced invalid YAML: {e}") from None
    if not isinstance(obj, dict) or "kind" not in obj:
        raise ToolError(f"rendering {file_name} produced no Kubernetes object")
    return Rendered(file_name, text, obj)


def render(values: Values, source: str = "values.yaml") -> list[Rendered]:
    """Every object for `values`, in apply order (config before workloads before monitoring)."""
    env = _environment()
    ctx = _context(values, source)
    out = [
        _render_one(env, "configmap-models.yaml.j2", "configmap-models.yaml", ctx),
        _render_one(env, "configmap-monitoring.yaml.j2", "configmap-monitoring.yaml", ctx),
        _render_one(env, "deployment.yaml.j2", "deployment.yaml", ctx),
    ]
    if values.service.enabled:
        out.append(_render_one(env, "service.yaml.j2", "service.yaml", ctx))
    mon = values.monitoring
    if mon.pod_monitor.enabled:
        out.append(_render_one(env, "podmonitor.yaml.j2", "podmonitor.yaml", ctx))
    needs_mixin = mon.prometheus_rule.enabled or mon.dashboards.enabled or values.autoscaling.enabled
    if needs_mixin:
        config = mixin_config(values, source)
        recording = list(mixin.recording_rule_groups(config))
        alerting = list(mixin.alert_rule_groups(config))
        if mon.prometheus_rule.enabled:
            rule_ctx = {**ctx, "rule_groups": recording + alerting}
            out.append(_render_one(env, "prometheusrule.yaml.j2", "prometheusrule.yaml", rule_ctx))
        if mon.dashboards.enabled:
            for file_name, dashboard in sorted(dashboards.build_dashboards(config).items()):
                stem = re.sub(r"[^a-z0-9-]+", "-", Path(file_name).stem.lower()).strip("-")
                item = {
                    "object_name": ctx["names"]["dashboard_prefix"] + stem,
                    "file_name": file_name,
                    "json": json.dumps(dashboard, indent=2, sort_keys=True) + "\n",
                }
                out.append(
                    _render_one(
                        env, "dashboard.yaml.j2", f"configmap-dashboard-{stem}.yaml", {**ctx, "dashboard": item}
                    )
                )
        if values.autoscaling.enabled:
            keda_ctx = {**ctx, "keda_query": keda_query(values)}
            out.append(_render_one(env, "scaledobject.yaml.j2", "scaledobject.yaml", keda_ctx))
    return out


def as_stream(objects: Sequence[Rendered]) -> str:
    """All objects as one multi-document YAML stream (for `kubectl apply -f -`)."""
    return "".join(("---\n" if i else "") + o.text for i, o in enumerate(objects))


def write_dir(objects: Sequence[Rendered], out_dir: str | os.PathLike[str]) -> None:
    """Replace `out_dir` with exactly these files: built in a temporary sibling, then renamed into place.

    Refuses a directory holding files this command did not write, so a wrong --out never deletes
    someone's work. A stale object (say, a ScaledObject after autoscaling was turned off) disappears.
    """
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--out {target}: exists and is not a directory")
    if target.is_dir():
        foreign = [p.name for p in sorted(target.iterdir()) if not _is_ours(p)]
        if foreign:
            raise UsageError(
                f"--out {target}: holds files tfs-traffic did not render ({', '.join(foreign[:3])}); "
                "use an empty or new directory"
            )
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as e:
        raise ToolError(f"cannot write {target}: {e.strerror or e}") from None
    old: Path | None = None
    try:
        for obj in objects:
            with open(staging / obj.file_name, "w") as handle:
                handle.write(obj.text)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.rename(target, old / "dir")
        os.rename(staging, target)
    except BaseException as e:
        if old is not None and (old / "dir").exists() and not target.exists():
            os.rename(old / "dir", target)  # put the previous output back
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(e, OSError):
            raise ToolError(f"cannot write {target}: {e.strerror or e}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _is_ours(path: Path) -> bool:
    if not path.is_file() or path.suffix != ".yaml":
        return False
    with contextlib.suppress(OSError, UnicodeDecodeError), path.open() as handle:
        return GENERATED_MARK in handle.readline()
    return False


# --- plain Prometheus --------------------------------------------------------------------------


def scrape_config(values: Values | None = None, source: str = "") -> str:
    """The two scrape jobs (annotated endpoint, sidecar port) for a Prometheus without the Operator."""
    env = _environment()
    text = env.get_template("scrape-config.yaml.j2").render(
        source=source,
        interval=(values.monitoring if values else Monitoring()).scrape_interval,
        port_name=(values.sidecar if values else Sidecar()).metrics_port_name,
        tfs_path=values.tfserving.monitoring_path if values else TFServing.model_fields["monitoring_path"].default,
        sidecar_job=SIDECAR_JOB,
    )
    yaml.safe_load(text)  # a template bug fails here, not in the user's Prometheus
    return text
