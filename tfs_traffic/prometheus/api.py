"""A small client for Prometheus' HTTP query API, shared by every command that reads history.

`--prometheus` is a full base URL, so Thanos, Mimir (`.../prometheus`) and Cortex work as-is; every
failure — refused connection, 4xx/5xx, Prometheus' own `errorType`, a body that is not JSON —
becomes one ToolError line that names the server.
"""

import argparse
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tfs_traffic.durations import parse_duration
from tfs_traffic.errors import ToolError, UsageError

Vector = list[dict[str, Any]]
Matrix = list[dict[str, Any]]


@dataclass
class PrometheusAccess:
    """How to reach a Prometheus-compatible API."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout: float = 120.0
    retries: int = 3


def add_access_arguments(
    parser: argparse.ArgumentParser, required: bool = True, timeout_flag: str = "--timeout", url_help: str = ""
) -> None:
    """The `--prometheus` flag and the access flags every Prometheus-reading command shares.

    A command whose own `--timeout` means something else (`retire apply`) names the request timeout
    `timeout_flag`; `--prometheus` may then be optional (`required`), `url_help` saying its default.
    """
    group = parser.add_argument_group("Prometheus access")
    group.add_argument(
        "--prometheus",
        required=required,
        metavar="URL",
        help=url_help
        or "base URL of the Prometheus API, e.g. http://prometheus:9090 or https://mimir.example/prometheus",
    )
    group.add_argument("--bearer-token-file", metavar="FILE", help="send the token in FILE as a bearer token")
    group.add_argument(
        "--basic-auth",
        metavar="USER:PASSWORD",
        help="HTTP basic auth (default: $PROMETHEUS_USERNAME and $PROMETHEUS_PASSWORD if set)",
    )
    group.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K=V",
        help="extra HTTP header, repeatable (e.g. X-Scope-OrgID=tenant1)",
    )
    group.add_argument("--ca-file", metavar="FILE", help="CA bundle to verify the server's certificate")
    group.add_argument("--insecure-skip-verify", action="store_true", help="do not verify TLS certificates")
    group.add_argument(
        timeout_flag,
        dest="request_timeout",
        default="2m",
        metavar="DURATION",
        help="timeout of each HTTP request (default: %(default)s)",
    )


def access_from_args(args: argparse.Namespace) -> PrometheusAccess:
    """Build PrometheusAccess from parsed flags, reading token files and the environment."""
    url = args.prometheus.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus must be an http:// or https:// URL, got {args.prometheus!r}")
    headers: dict[str, str] = {}
    for item in args.header:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--header expects K=V, got {item!r}")
        headers[key.strip()] = value
    if args.bearer_token_file:
        try:
            with open(args.bearer_token_file) as f:
                headers["Authorization"] = "Bearer " + f.read().strip()
        except OSError as e:
            raise UsageError(f"cannot read --bearer-token-file {args.bearer_token_file}: {e.strerror}") from None
    basic: tuple[str, str] | None = None
    if args.basic_auth:
        user, sep, password = args.basic_auth.partition(":")
        if not sep:
            raise UsageError("--basic-auth expects USER:PASSWORD")
        basic = (user, password)
    elif os.environ.get("PROMETHEUS_USERNAME"):
        basic = (os.environ["PROMETHEUS_USERNAME"], os.environ.get("PROMETHEUS_PASSWORD", ""))
    return PrometheusAccess(
        url=url,
        headers=headers,
        basic_auth=basic,
        ca_file=args.ca_file,
        insecure_skip_verify=args.insecure_skip_verify,
        timeout=parse_duration(args.request_timeout),
    )


class Querier(Protocol):
    """What reading history needs: instant and range queries (a PrometheusClient, or a wrapper)."""

    def query(self, promql: str, at: float) -> Vector: ...

    def query_range(self, promql: str, start: float, end: float, step: float) -> Matrix: ...


class PrometheusClient:
    """Instant and range queries; results are the API's `result` lists."""

    def __init__(self, access: PrometheusAccess) -> None:
        self.access = access
        self.session = requests.Session()
        retry = Retry(
            total=access.retries,
            connect=access.retries,
            read=0,
            status=access.retries,
            backoff_factor=0.5,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=None,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(access.headers)
        if access.basic_auth:
            self.session.auth = access.basic_auth
        self.session.verify = False if access.insecure_skip_verify else (access.ca_file or True)

    def _call(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.access.url}/api/v1/{path}"
        try:
            response = self.session.post(url, data=params, timeout=self.access.timeout)
        except requests.exceptions.SSLError as e:
            raise ToolError(f"Prometheus at {self.access.url}: TLS error: {_first_line(e)}") from None
        except requests.exceptions.ConnectionError as e:
            raise ToolError(f"cannot reach Prometheus at {self.access.url}: {_first_line(e)}") from None
        except requests.exceptions.Timeout:
            raise ToolError(
                f"Prometheus at {self.access.url} did not answer within {self.access.timeout:.0f}s"
            ) from None
        except requests.RequestException as e:
            raise ToolError(f"Prometheus at {self.access.url}: {_first_line(e)}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            raise ToolError(
                f"Prometheus at {self.access.url} answered HTTP {response.status_code} "
                f"{body.get('errorType', 'error')}: {body.get('error', '')}".rstrip()
            )
        if response.status_code >= 400:
            raise ToolError(
                f"Prometheus at {self.access.url} answered HTTP {response.status_code} "
                f"{response.reason or ''} for {path}".replace("  ", " ")
            )
        if not isinstance(body, dict) or body.get("status") != "success" or "data" not in body:
            raise ToolError(f"Prometheus at {self.access.url} sent a body that is not a Prometheus API answer")
        return body["data"]

    def query(self, promql: str, at: float) -> Vector:
        """Evaluate `promql` at Unix time `at`; scalars come back as one unlabelled sample."""
        data = self._call("query", {"query": promql, "time": f"{at:.3f}"})
        if data.get("resultType") == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data.get("result", []))

    def query_range(self, promql: str, start: float, end: float, step: float) -> Matrix:
        """Evaluate `promql` over [start, end] every `step` seconds."""
        data = self._call(
            "query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        return list(data.get("result", []))

    def series_exist(self, selector: str, start: float, end: float) -> bool:
        """Whether any series matches `selector` between start and end (cheap: series API)."""
        data = self._call("series", {"match[]": selector, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        return bool(data)


def _first_line(error: Exception) -> str:
    text = str(error)
    # urllib3 nests the cause in long reprs; the tail names it (e.g. "Connection refused").
    if "Errno" in text:
        text = text[text.rfind("[Errno") :].rstrip(")'\"]")
    return text.splitlines()[0] if text else type(error).__name__
