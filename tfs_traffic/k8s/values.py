"""The values file of `tfs-traffic k8s render`: its schema, and one clear line for every mistake.

Pydantic models with `extra="forbid"` and strict types, so a typo'd key, a missing field or a
string where a number belongs is caught before anything is rendered, and the error names the
field the way the user wrote it (`sidecar.mode`), not how Python spells it.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from tfs_traffic import contract
from tfs_traffic.errors import UsageError
from tfs_traffic.files import read_user_text

# DNS-1035 label (what a Service name must be), short enough to take suffixes like "-dashboard-...".
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Kubernetes resource quantity (resource.Quantity): 500m, 4Gi, 1.5, 2e3.
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[mkMGTPE]|u|n)?$")
# IANA_SVC_NAME, what a named container port must be: at most 15 characters, a letter in it.
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PROM_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_REMOTE_PATH = re.compile(r"^[a-z][a-z0-9+.-]*://")


class _Model(BaseModel):
    """Every values section: camelCase keys as in Helm charts, unknown keys and lax coercions refused."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=True, frozen=True)


def _check_duration(value: str) -> str:
    if not value or not _PROM_DURATION.match(value):
        raise ValueError("must be a Prometheus duration such as 30s, 5m or 1h")
    return value


def _check_quantity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or not _QUANTITY.match(str(value)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)")
    return value


Quantity = Annotated[str | int | float, BeforeValidator(_check_quantity)]


class Resources(_Model):
    """Container requests and limits, as in a pod spec (`cpu`, `memory`, `nvidia.com/gpu`, ...)."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class TFServing(_Model):
    """The TensorFlow Serving container: stock image (with the sidecar) or the patched one."""

    image: str = Field(min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    command: list[str] = Field(default_factory=lambda: ["tensorflow_model_server"])
    grpc_port: int = Field(default=8500, ge=1, le=65535)
    rest_port: int = Field(default=8501, ge=1, le=65535)
    monitoring_path: str = "/monitoring/prometheus/metrics"
    # TF Serving re-reads models.config this often, so an emitted config applies without a restart.
    model_config_poll_seconds: int = Field(default=60, ge=0)
    model_mount_path: str = "/models"
    # A Kubernetes volume source (one key: persistentVolumeClaim, csi, nfs, ...) holding the models,
    # or null when every base_path is remote (gs://, s3://).
    model_volume: dict[str, Any] | None = None
    # Time a pod may take to load its models before liveness checks start.
    startup_timeout_seconds: int = Field(default=600, ge=10)
    # Probes: "tcp" (any TF Serving) or "grpc" (the standard gRPC health service, TF Serving >= 2.15.1).
    # Neither calls a model API, so neither counts as traffic.
    probe: Literal["tcp", "grpc"] = "tcp"
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)

    @field_validator("monitoring_path", "model_mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path starting with /")
        return value

    @field_validator("model_volume")
    @classmethod
    def _one_source(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(value) != 1:
            raise ValueError("must name exactly one volume source, e.g. {persistentVolumeClaim: {claimName: models}}")
        return value


class Sidecar(_Model):
    """The tfs-traffic sidecar beside stock TF Serving: a proxy that counts, or a status poller only."""

    enabled: bool = False
    mode: Literal["proxy", "status-only"] = "proxy"
    image: str = "tfs-traffic-sidecar:latest"
    # The sidecar image runs `tfs-traffic`; the flags follow (see `tfs-traffic sidecar --help`).
    command: list[str] = Field(default_factory=lambda: ["tfs-traffic", "sidecar"])
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    grpc_port: int = Field(default=8510, ge=1, le=65535)
    rest_port: int = Field(default=8511, ge=1, le=65535)
    metrics_port: int = Field(default=contract.SIDECAR_PORT, ge=1, le=65535)
    # The name of the sidecar's metrics port is how plain Prometheus finds it (see scrape-config).
    metrics_port_name: str = Field(default="tfs-metrics", max_length=15)
    poll_interval: str = "15s"
    workers: int = Field(default=1, ge=1, le=64)
    resources: Resources = Field(default_factory=Resources)

    _poll = field_validator("poll_interval")(_check_duration)

    @field_validator("metrics_port_name")
    @classmethod
    def _port_name(cls, value: str) -> str:
        if not _PORT_NAME.match(value):
            raise ValueError("must be a port name: lowercase letters, digits and '-', at most 15 characters")
        return value


class Service(_Model):
    enabled: bool = True
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    grpc_port: int = Field(default=8500, ge=1, le=65535)
    rest_port: int = Field(default=8501, ge=1, le=65535)
    # Proxy mode: the Service's gRPC/REST ports lead to the proxy, so every client is counted.
    # false: they lead to TF Serving directly and the proxy is offered on extra ports, opt-in.
    through_proxy: bool = True
    annotations: dict[str, str] = Field(default_factory=dict)


class PodMonitor(_Model):
    enabled: bool = True
    labels: dict[str, str] = Field(default_factory=dict)


class PrometheusRule(_Model):
    enabled: bool = True
    labels: dict[str, str] = Field(default_factory=dict)
    namespace: str | None = None


class Dashboards(_Model):
    enabled: bool = True
    # Grafana's dashboard sidecar (kiwigrid k8s-sidecar) picks up ConfigMaps with this label.
    label: str = "grafana_dashboard"
    label_value: str = "1"
    namespace: str | None = None
    folder_annotation: str = "grafana_folder"
    folder: str = "TF Serving"


class Monitoring(_Model):
    scrape_interval: str = "30s"
    pod_monitor: PodMonitor = Field(default_factory=PodMonitor)
    prometheus_rule: PrometheusRule = Field(default_factory=PrometheusRule)
    dashboards: Dashboards = Field(default_factory=Dashboards)
    # Overrides for the monitoring mixin's settings, keyed by tfs_traffic.queries.mixin.MixinConfig's field names.
    mixin: dict[str, Any] = Field(default_factory=dict)

    _interval = field_validator("scrape_interval")(_check_duration)


class Autoscaling(_Model):
    """KEDA ScaledObject scaling on the model's own call rate (the recording rules); off by default."""

    enabled: bool = False
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    # Calls per second one replica should take: KEDA aims at total rate / this many replicas.
    target_calls_per_second: float = Field(default=50.0, gt=0)
    # Below this total call rate the deployment may scale to minReplicas (KEDA's activation threshold).
    activation_calls_per_second: float = Field(default=0.0, ge=0)
    prometheus_address: str = "http://prometheus-operated.monitoring.svc:9090"
    polling_interval_seconds: int = Field(default=30, ge=1)
    cooldown_period_seconds: int = Field(default=300, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) must not exceed maxReplicas ({self.max_replicas})")
        return self


class Values(_Model):
    """One TF Serving deployment and everything that watches it."""

    name: str = Field(max_length=40)
    namespace: str = Field(max_length=63)
    replicas: int = Field(default=1, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    image_pull_secrets: list[str] = Field(default_factory=list)
    termination_grace_period_seconds: int = Field(default=30, ge=0)
    tfserving: TFServing
    sidecar: Sidecar = Field(default_factory=Sidecar)
    # TF Serving's ModelServerConfig in text format (the file given to --model_config_file).
    models_config: str = Field(min_length=1)
    service: Service = Field(default_factory=Service)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits and '-', starting with a letter")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError("must be a namespace name: lowercase letters, digits and '-'")
        return value

    @property
    def mode(self) -> str:
        """patched (no sidecar), proxy or status-only."""
        return self.sidecar.mode if self.sidecar.enabled else "patched"

    @property
    def proxy(self) -> bool:
        return self.mode == "proxy"


# Where each field's name is spelled in errors: pydantic reports aliases, we join them with dots.
def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a section accepts, to help with a typo'd key."""
    model: Any = Values
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        found = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part),
            None,
        )
        if found is None:
            return []
        annotation = found.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return sorted(f.alias or n for n, f in model.model_fields.items())


_TYPE_WORDS = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string (quote it in YAML)",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "model_type": "must be a mapping",
}


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    got = error.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc)
        return "unknown key" + (f" (allowed here: {', '.join(allowed)})" if allowed else "")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",") if c.strip()]
        return f"must be one of {', '.join(choices)} (got {got!r})"
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]} (got {type(got).__name__} {got!r})"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return str(error["msg"]).removeprefix("Value error, ")


def validation_message(exc: ValidationError, source: str) -> str:
    """One line naming the first offending field; how many more problems there are, if any."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = _field_path(tuple(first["loc"])) or "(top level)"
    more = (
        f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} after this one)" if len(errors) > 1 else ""
    )
    return f"{source}: {where}: {_describe(first)}{more}"


def _cross_checks(values: Values, source: str) -> None:
    """Checks that span sections: ports in one pod, the models config itself, where models live."""
    from tfs_traffic import modelconfig

    def fail(field: str, message: str) -> None:
        raise UsageError(f"{source}: {field}: {message}")

    ports = {"tfserving.grpcPort": values.tfserving.grpc_port, "tfserving.restPort": values.tfserving.rest_port}
    if values.sidecar.enabled:
        ports["sidecar.metricsPort"] = values.sidecar.metrics_port
        if values.proxy:
            ports["sidecar.grpcPort"] = values.sidecar.grpc_port
            ports["sidecar.restPort"] = values.sidecar.rest_port
    seen: dict[int, str] = {}
    for field, port in ports.items():
        if port in seen:
            fail(field, f"port {port} is already used by {seen[port]} (containers of one pod share ports)")
        seen[port] = field
    if values.service.grpc_port == values.service.rest_port:
        fail("service.restPort", f"port {values.service.rest_port} is already used by service.grpcPort")

    try:
        message = modelconfig.parse_text(values.models_config, "models.config")
    except UsageError as e:
        fail("modelsConfig", str(e).removeprefix("models.config: "))
    models = modelconfig.entries(message)
    if not models:
        fail("modelsConfig", "configures no model (model_config_list { config { name: ... } })")
    mount = values.tfserving.model_mount_path.rstrip("/") + "/"
    for model in models:
        path = model.base_path
        if _REMOTE_PATH.match(path):
            continue
        if values.tfserving.model_volume is None:
            fail(
                "tfserving.modelVolume",
                f"model {model.name!r} has a local base_path {path!r}, but no volume is mounted to hold it",
            )
        if not path.startswith(mount):
            fail(
                "modelsConfig",
                f"model {model.name!r} base_path {path!r} is not under tfserving.modelMountPath "
                f"{values.tfserving.model_mount_path} (nor a remote URI like gs://...)",
            )


def parse_values(data: Any, source: str = "values") -> Values:
    """Validate parsed YAML into Values; UsageError with one line naming the field otherwise."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: must be a YAML mapping of values (got {type(data).__name__})")
    try:
        values = Values.model_validate(data)
    except ValidationError as e:
        raise UsageError(validation_message(e, source)) from None
    _cross_checks(values, source)
    return values


def load_values(path: str | Path) -> Values:
    """Read and validate a values file."""
    source = Path(path).name
    text = read_user_text(path, "values file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{source}:{where}: not valid YAML: {problem}") from None
    return parse_values(data, source)
