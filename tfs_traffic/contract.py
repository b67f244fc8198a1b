"""The metric contract (docs/metrics.md): names and labels every part agrees on."""

# Patched TF Serving, as its Prometheus exporter prints them (`/` becomes `:`, no `_total`).
PATCHED_CALLS = ":tensorflow:serving:model_call_count"
PATCHED_AVAILABLE = ":tensorflow:serving:model_version_available"
# The same, as TF Serving's monitoring API names them inside the C++ code.
TF_CALLS = "/tensorflow/serving/model_call_count"
TF_AVAILABLE = "/tensorflow/serving/model_version_available"
# Upstream's own per-model request counter {model_name, status} (`servables/tensorflow/util.cc`).
REQUEST_COUNT = ":tensorflow:serving:request_count"

# The sidecar (prometheus_client).
SIDECAR_CALLS = "tfserving_model_calls_total"
SIDECAR_DURATION = "tfserving_model_call_duration_seconds"
SIDECAR_AVAILABLE = "tfserving_model_version_available"
SIDECAR_ESTIMATED_RAM = "tfserving_model_version_estimated_ram_bytes"
SIDECAR_UP = "tfserving_sidecar_upstream_up"
SIDECAR_REFUSED = "tfserving_sidecar_refused_calls_total"
# What the server resolves a request without a version, and each version label, to (the status
# poller's answers): what an alert needs to keep the latest and labelled versions.
SIDECAR_LATEST = "tfserving_model_version_latest"
SIDECAR_LABEL = "tfserving_model_version_label"
SIDECAR_PORT = 9102

MODEL = "model_name"
VERSION = "model_version"
VERSION_LABEL = "version_label"
# Bounded cardinality: unknown model names and never-available versions are folded into this value.
OTHER = "__other__"
UNRESOLVED = "unresolved"
