"""`tfs-traffic report` as users run it: formats, --output, --emit-config, exit codes, error lines."""

import csv
import html
import http.server
import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import END, END_TS, fleet_prometheus

from tfs_traffic import cli, modelconfig
from tfs_traffic.prometheus.local import LocalPrometheus, free_port

SIZE = 2**30 + 5
RAM = 1288490194  # int(float(SIZE) * 1.2)
FLEET: dict[str, Any] = {
    "sources": ["patched", "sidecar"],  # the estimate comes from the sidecar's status poller
    "replicas": ["a", "b"],
    "models": [
        # 1 GiB + 5 bytes on disk each: TF Serving's estimate 1288490194.8, truncated (docs/metrics.md).
        {
            "name": "resnet",
            "version_labels": {"stable": 2},
            "versions": [{"version": v, "size_bytes": SIZE} for v in (1, 2, 3, 4)],
        },
        {"name": "bert", "versions": [7, 8, {"version": 9, "loaded": "end-2d"}]},
    ],
    "traffic": [
        {"model": "resnet", "version": 3, "rate": "1/min"},
        {"model": "bert", "version": 8, "rate": "2/h", "replicas": ["b"]},
    ],
}
EXPECTED = {
    ("resnet", "1"): ("retire", "idle"),
    ("resnet", "2"): ("keep", "label:stable"),
    ("resnet", "3"): ("keep", "traffic"),
    ("resnet", "4"): ("keep", "latest"),
    ("bert", "7"): ("retire", "idle"),
    ("bert", "8"): ("keep", "traffic"),
    ("bert", "9"): ("keep", "latest"),
}
GHOST = """
config {
  name: "ghost"
  base_path: "/models/ghost"
  model_platform: "tensorflow"
  model_version_policy { latest { num_versions: 2 } }
}
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPrometheus, Path]]:
    workdir = tmp_path_factory.mktemp("cli")
    with fleet_prometheus(FLEET, workdir) as (_, result, prom):
        # A configured model that Prometheus knows nothing about: the emitted config leaves it alone.
        config = workdir / "models.config"
        text = result.models_config.read_text()
        config.write_text(text.rstrip()[: -len("}")] + GHOST + "}\n")
        yield prom, config


def tfs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tfs_traffic.cli", *args], capture_output=True, text=True, timeout=120)


def report_args(prom: LocalPrometheus, *extra: str) -> list[str]:
    return ["report", "--prometheus", prom.url, "--at", END, *extra]


def test_json_contract(fleet: Any) -> None:
    prom, _ = fleet
    out = tfs(*report_args(prom, "--format", "json", "--models-config", str(fleet[1])))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["evaluated_at"] == END
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["evaluated_at"])
    assert data["window_seconds"] == 604800
    assert data["prometheus"] == prom.url
    got = {(v["model_name"], v["model_version"]): (v["verdict"], v["reason"]) for v in data["versions"]}
    assert got == EXPECTED
    for v in data["versions"]:
        assert isinstance(v["model_version"], str)
        assert isinstance(v["calls"], int)
        assert isinstance(v["max_hourly_qps"], int | float)
        assert 0 <= v["coverage"] <= 1
    bert8 = next(v for v in data["versions"] if v["model_name"] == "bert" and v["model_version"] == "8")
    assert bert8["calls"] == 336  # 2/h for 168 h on one replica
    # Loaded on both, called on b; each pod's server and sidecar are two targets.
    assert bert8["instances"] == ["10.0.0.1:8501", "10.0.0.1:9102", "10.0.0.2:8501", "10.0.0.2:9102"]
    assert "querying" in out.stderr  # notes on stderr, results alone on stdout
    # TF Serving's estimate, from the sidecar's gauge; bert's versions have none (null, not 0).
    ram = {(v["model_name"], v["model_version"]): v["estimated_ram_bytes"] for v in data["versions"]}
    assert ram == {("resnet", x): RAM for x in "1234"} | {("bert", x): None for x in "789"}
    assert (data["retire_estimated_ram_bytes"], data["retire_without_estimate"]) == (RAM, 1)  # resnet 1; bert 7


def test_table_and_emit_config(fleet: Any, tmp_path: Path) -> None:
    prom, config = fleet
    new = tmp_path / "new.config"
    out = tfs(*report_args(prom, "--models-config", str(config), "--emit-config", str(new)))
    assert out.returncode == 0, out.stderr
    # The table, then the diff, on stdout.
    assert "retire" in out.stdout and "label:stable" in out.stdout and "latest" in out.stdout
    assert "EST. RAM" in out.stdout and "retiring frees ≈ 1.20 GiB per server" in out.stdout
    assert f"--- {config}" in out.stdout and f"+++ {new}" in out.stdout
    assert "-        versions: 1\n" in out.stdout
    emitted = {e.name: e for e in modelconfig.load_entries(new)}
    assert emitted["resnet"].policy == "specific" and emitted["resnet"].policy_versions == (2, 3, 4)
    assert emitted["bert"].policy_versions == (8, 9)
    assert dict(emitted["resnet"].version_labels) == {"stable": 2}
    assert emitted["ghost"].policy == "latest" and emitted["ghost"].policy_versions == (2,)
    assert emitted["ghost"].base_path == "/models/ghost"


def test_emit_config_diff_goes_to_stderr_when_stdout_holds_data(fleet: Any, tmp_path: Path) -> None:
    prom, config = fleet
    new = tmp_path / "new.config"
    out = tfs(*report_args(prom, "--format", "json", "--models-config", str(config), "--emit-config", str(new)))
    assert out.returncode == 0, out.stderr
    json.loads(out.stdout)
    assert f"+++ {new}" in out.stderr
    assert new.exists()


def test_csv_markdown_html(fleet: Any, tmp_path: Path, capsys: Any) -> None:
    prom, config = fleet
    assert cli.main(report_args(prom, "--format", "csv", "--models-config", str(config))) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["model_name"], r["model_version"]): (r["verdict"], r["reason"]) for r in rows} == EXPECTED
    resnet3 = next(r for r in rows if r["model_name"] == "resnet" and r["model_version"] == "3")
    assert 20158 <= int(resnet3["calls"]) <= 20162
    assert float(resnet3["coverage"]) == 1.0
    assert (
        resnet3["estimated_ram_bytes"],
        next(r for r in rows if r["model_name"] == "bert")["estimated_ram_bytes"],
    ) == (
        str(RAM),
        "",
    )

    assert cli.main(report_args(prom, "--format", "markdown")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| model | version | verdict | reason |")
    assert "| resnet | 1 | **retire** | idle |" in "\n".join(lines)
    assert len([x for x in lines if x.startswith("| ")]) == 1 + len(EXPECTED)
    [resnet1] = [x for x in lines if x.startswith("| resnet | 1 |")]
    assert resnet1.endswith("| 1.2 GiB |")
    # Without --models-config resnet 2 keeps label:stable: the sidecar's poller says the server resolves it.
    assert (
        "retiring frees ≈ 1.20 GiB per server (TF Serving's estimate; 1 retire versions without an estimate)" in lines
    )

    page = tmp_path / "report.html"
    assert cli.main(report_args(prom, "--format", "html", "--output", str(page), "--models-config", str(config))) == 0
    assert capsys.readouterr().out == ""
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") == len(EXPECTED)
    assert not re.search(r"(src|href)=|<script|<link|@import|url\(", text)  # nothing loaded from anywhere
    # The sparkline of a version called 1/min on two replicas is flat at 120 calls/hour.
    row = text[text.index('<td>resnet</td><td class="num">3</td>') :]
    assert "peak 120/h" in row[: row.index("</tr>")]
    assert f'<td class="num" title="{RAM} bytes">1.2 GiB</td>' in row[: row.index("</tr>")]
    memory = "retiring frees ≈ 1.20 GiB per server (TF Serving's estimate; 1 retire versions without an estimate)"
    assert f'<p class="memory">{html.escape(memory)}</p>' in text


def test_keep_flag(fleet: Any, capsys: Any) -> None:
    prom, _ = fleet
    assert cli.main(report_args(prom, "--format", "json", "--keep", "resnet:1", "--keep", "bert:7")) == 0
    data = json.loads(capsys.readouterr().out)
    got = {(v["model_name"], v["model_version"]): v["reason"] for v in data["versions"]}
    assert got[("resnet", "1")] == got[("bert", "7")] == "label:keep"
    # Without --models-config, the label the sidecar's poller sees the servers resolve keeps resnet 2.
    assert got[("resnet", "2")] == "label:stable"


# --- errors: one line, the right exit status, no traceback, nothing written ---------------------


def assert_one_error_line(out: subprocess.CompletedProcess[str], status: int, pattern: str) -> None:
    assert out.returncode == status, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    errors = [x for x in out.stderr.splitlines() if "error" in x]
    assert len(errors) == 1, out.stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert out.stdout == ""


def test_unreachable_prometheus_writes_nothing(fleet: Any, tmp_path: Path) -> None:
    _, config = fleet
    url = f"http://127.0.0.1:{free_port()}"
    new, page = tmp_path / "new.config", tmp_path / "r.html"
    out = tfs(
        "report", "--prometheus", url, "--models-config", str(config), "--emit-config", str(new),
        "--format", "html", "--output", str(page),
    )  # fmt: skip
    assert_one_error_line(out, 1, r"cannot reach Prometheus at http://127\.0\.0\.1:\d+")
    assert not new.exists() and not page.exists()
    assert list(tmp_path.iterdir()) == []


def test_real_prometheus_errors(fleet: Any) -> None:
    prom, _ = fleet
    out = tfs("report", "--prometheus", prom.url + "/nowhere", "--at", END)
    assert_one_error_line(out, 1, r"answered HTTP 404")


def test_query_limit_exceeded_422(tmp_path: Path) -> None:
    with fleet_prometheus(FLEET, tmp_path, extra_args=("--query.max-samples=100",)) as (_, _, prom):
        out = tfs("report", "--prometheus", prom.url, "--at", END)
    assert_one_error_line(out, 1, r"HTTP 422 execution: query processing would load too many samples")


class Canned(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b""
    content_type = "application/json"
    hits = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[Any]:
    def serve(status: int, body: bytes, content_type: str = "application/json") -> tuple[str, type[Canned]]:
        handler = type("Handler", (Canned,), {"status": status, "body": body, "content_type": content_type, "hits": 0})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    servers: list[http.server.ThreadingHTTPServer] = []
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "pattern"),
    [
        (400, b'{"status":"error","errorType":"bad_data","error":"parse error"}', "application/json",
         r"HTTP 400 bad_data: parse error"),
        (422, b'{"status":"error","errorType":"execution","error":"too many samples"}', "application/json",
         r"HTTP 422 execution: too many samples"),
        (200, b"<html>login page</html>", "text/html", r"not a Prometheus API answer"),
        (401, b"Unauthorized", "text/plain", r"HTTP 401"),
    ],
)  # fmt: skip
def test_canned_error_answers(canned: Any, status: int, body: bytes, content_type: str, pattern: str) -> None:
    url, handler = canned(status, body, content_type)
    out = tfs("report", "--prometheus", url, "--at", END)
    assert_one_error_line(out, 1, pattern)
    assert handler.hits == 1  # no retry on 4xx


def test_503_is_retried_then_one_line(canned: Any) -> None:
    url, handler = canned(503, b"overloaded", "text/plain")
    out = tfs("report", "--prometheus", url, "--at", END)
    assert_one_error_line(out, 1, r"HTTP 503")
    assert handler.hits == 4  # the first try and three retries with backoff


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--min-calls", "5", "--max-qps", "1"], r"not allowed with argument"),
        (["--window", "7x"], r"invalid duration '7x'"),
        (["--at", "yesterday"], r"invalid time 'yesterday'"),
        (["--format", "xml"], r"invalid choice: 'xml'"),
        (["--keep", "resnet"], r"--keep expects MODEL:VERSION"),
        (["--max-gap-ratio", "1.5"], r"--max-gap-ratio must be in \[0, 1\)"),
        (["--min-calls", "many"], r"invalid float value"),
        (["--emit-config", "X"], r"--emit-config needs --models-config"),
        (["--header", "novalue"], r"--header expects K=V"),
    ],
)
def test_bad_flags(args: list[str], pattern: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # never reached: usage errors come first
    out = subprocess.run(
        [sys.executable, "-m", "tfs_traffic.cli", "report", "--prometheus", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert_one_error_line(out, 2, pattern)
    assert list(tmp_path.iterdir()) == []


def test_models_config_errors(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    missing = tfs("report", "--prometheus", url, "--models-config", str(tmp_path / "none.config"))
    assert_one_error_line(missing, 2, r"cannot read models config .*none\.config")
    bad = tmp_path / "bad.config"
    bad.write_text('model_config_list { config { name: "m" base_path: 3 } }\n')
    malformed = tfs("report", "--prometheus", url, "--models-config", str(bad), "--emit-config", str(tmp_path / "o"))
    assert_one_error_line(malformed, 2, r"bad\.config: malformed ModelServerConfig")
    assert not (tmp_path / "o").exists()


def test_at_is_used(fleet: Any, capsys: Any) -> None:
    prom, _ = fleet
    # Two days before the end, bert 9 was not loaded yet: not listed, and 8 was the latest.
    at = str(int(END_TS - 3 * 86400))
    assert cli.main(["report", "--prometheus", prom.url, "--at", at, "--format", "json", "--window", "3d"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["window_seconds"] == 3 * 86400
    assert {v["model_version"] for v in data["versions"] if v["model_name"] == "bert"} == {"7", "8"}
