"""`tfs-traffic sim` takes tensorflow_model_server 2.20's command line and refuses to start as it does.

The flags are `model_servers/main.cc`'s list, parsed by `tensorflow::Flags::Parse`
(`xla/tsl/util/command_line_flags.cc`); startup checks and errors are `Server::BuildAndStart`'s
(`model_servers/server.cc`), printed by `main.cc` as `Failed to start server. Error: STATUS` with
exit status 255. Tests bind 127.0.0.1 only: where TF Serving's flags would bind 0.0.0.0, the test
checks the address the command computes and serves through the sim's own address flags.
"""

import argparse
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tfs_api import predict_request, served_version

from tfs_traffic.cli import build_parser
from tfs_traffic.commands import sim as sim_command
from tfs_traffic.sim import flags
from tfs_traffic.sim.server import Sim

BIN = Path(sys.executable).parent
ABSL_LINE = r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ tfs-traffic-sim\] "


def model_dir(tmp_path: Path, *numbers: int) -> Path:
    base = tmp_path / "models" / "m"
    for number in numbers:
        (base / str(number)).mkdir(parents=True)
    return base


def run_sim(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    def no_core_dumps() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return subprocess.run(
        [str(BIN / "tfs-traffic"), "sim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        preexec_fn=no_core_dumps,
    )


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; each is stopped with SIGTERM at the end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def start_sim(procs: list[subprocess.Popen[str]], args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(BIN / "tfs-traffic"), "sim", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    procs.append(proc)
    return proc


# --- Flags::Parse ---


def test_flags_parse_as_tensorflow_flags_parse_them() -> None:
    """`command_line_flags.cc:Flags::Parse`: `--name=value` only (a bool also `--name`); the first flag
    whose name and `=` match takes the argument; others, and everything after `--`, are kept as
    unknown. Numbers are `sscanf("%d%c")` / `("%ld%c")` / `("%f%c")` == 1 under glibc: blanks and a sign
    before, nothing after; `%d` stores the low 32 bits of what `strtol` saturates to, `%f` reads hex."""
    parsed = flags.parse(
        [
            "--port=8500",
            "--port",
            "9000",
            "--rest_api_port= +8501",
            "--enable_batching",
            "--flush_filesystem_caches=FALSE",
            "--enable_batchingx",
            "--model_name=",
            "--per_process_gpu_memory_fraction=0x1p-1",
            "--num_load_threads=3000000000",
            "--load_retry_interval_micros=99999999999999999999",
            "-port=1",
            "--",
            "--model_base_path=/x",
        ]
    )
    assert parsed.values == {
        "port": 8500,
        "rest_api_port": 8501,
        "enable_batching": True,
        "flush_filesystem_caches": False,
        "model_name": "",
        "per_process_gpu_memory_fraction": 0.5,
        "num_load_threads": -1294967296,
        "load_retry_interval_micros": 2**63 - 1,
    }
    assert parsed.unknown == ["--port", "9000", "--enable_batchingx", "-port=1", "--", "--model_base_path=/x"]
    assert parsed.ok
    bad = flags.parse(["--port=abc", "--port=5x", "--port=", "--port=5 ", "--enable_batching=yes", "--version=2"])
    assert bad.bad_values == [
        ("abc", "port"),
        ("5x", "port"),
        ("", "port"),
        ("5 ", "port"),
        ("yes", "enable_batching"),
        ("2", "version"),
    ]
    assert not bad.ok
    assert not flags.parse(["--help", "--port=1"]).ok  # Parse returns false when the first unknown is --help
    assert [f.name for f in flags.FLAGS][:3] == ["port", "grpc_socket_path", "rest_api_port"]
    assert len(flags.FLAGS) == 48  # main.cc's flag_list


def test_usage_is_laid_out_as_flags_usage() -> None:
    """`command_line_flags.cc:Flags::Usage`: `usage: ARGV0`, `Flags:`, then per flag
    `\\t%-33s\\t%s\\t%s` of `--name=default` (strings quoted, bools true/false, floats %f), type, text."""
    lines = flags.usage("/usr/bin/tensorflow_model_server").splitlines()
    assert lines[:2] == ["usage: /usr/bin/tensorflow_model_server", "Flags:"]
    assert lines[2].startswith("\t--port=8500                      \tint32\t")
    assert lines[3].startswith('\t--grpc_socket_path=""            \tstring\t')
    assert any(line.startswith("\t--per_process_gpu_memory_fraction=0.000000\tfloat\t") for line in lines)
    assert any(line.startswith("\t--flush_filesystem_caches=true   \tbool\t") for line in lines)
    assert len(lines) == 2 + 48


def test_the_docker_command_line_serves_its_model(tmp_path: Path, started: list[subprocess.Popen[str]]) -> None:
    """The official image runs `tensorflow_model_server --port=8500 --rest_api_port=8501
    --model_name=${MODEL_NAME} --model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME}`: `server.cc:
    BuildSingleModelConfig` makes a one-model config (platform tensorflow), gRPC listens on
    0.0.0.0:8500 and REST on 8501. Started with those flags (the two ports moved to 127.0.0.1), the
    sim serves m over gRPC and REST."""
    base = model_dir(tmp_path, 1, 2)
    docker = ["--port=8500", "--rest_api_port=8501", "--model_name=m", f"--model_base_path={base}"]
    args = build_parser().parse_known_args(["sim", *docker])
    namespace: argparse.Namespace = args[0]
    sim = sim_command._build(namespace, flags.parse(args[1]), 1.0, 0.0)
    assert (sim._grpc, sim._rest, sim.models_config) == (("0.0.0.0", 8500), ("0.0.0.0", 8501), None)
    assert [(m.name, m.base_path, m.model_platform) for m in sim.core.config.model_config_list.config] == [
        ("m", str(base), "tensorflow")
    ]
    sim.core.stop()

    local = [a for a in docker if not a.startswith(("--port=", "--rest_api_port="))]
    proc = start_sim(started, [*local, "--grpc-addr=127.0.0.1:0", "--rest-addr=127.0.0.1:0"])
    assert proc.stdout is not None
    parts = dict(part.split("=", 1) for part in proc.stdout.readline().split())
    assert served_version(parts["grpc"], predict_request("m", x=[4.0])) == 2
    body = requests.post(f"http://{parts['rest']}/v1/models/m:predict", json={"instances": [4.0]}, timeout=10)
    assert body.json() == {"predictions": [4.0]}


def test_an_unknown_argument_is_printed_and_the_server_starts(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """`main.cc:main`: after `Flags::Parse` succeeds, `argc != 1` prints `unknown argument: ARGV[1]`
    and the usage on stdout — and main goes on to start the server (there is no return there)."""
    base = model_dir(tmp_path, 1)
    args = ["--model_name=m", f"--model_base_path={base}", "--bogus=1", "--port", "9"]
    proc = start_sim(started, [*args, "--grpc-addr=127.0.0.1:0"])
    assert proc.stdout is not None
    assert proc.stdout.readline() == "unknown argument: --bogus=1\n"
    assert proc.stdout.readline() == f"usage: {BIN / 'tfs-traffic'}\n"
    lines = [proc.stdout.readline() for _ in range(1 + 48)]
    assert lines[0] == "Flags:\n" and all(line.startswith("\t--") for line in lines[1:])
    grpc_addr = proc.stdout.readline().strip().removeprefix("grpc=")
    assert served_version(grpc_addr, predict_request("m")) == 1


def test_a_value_that_does_not_parse_prints_the_usage_and_exits_255(tmp_path: Path) -> None:
    """`command_line_flags.cc`: `Couldn't interpret value V for flag F.` (LOG(ERROR)); `Parse` returns
    false, `main.cc` prints the usage on stdout and returns -1."""
    result = run_sim(["--port=80x", "--model_base_path=/m", "--enable_batching=maybe"], tmp_path)
    assert result.returncode == 255
    assert result.stdout == flags.usage(str(BIN / "tfs-traffic"))
    errors = [line.split("] ", 1)[1] for line in result.stderr.splitlines()]
    assert errors == [
        "Couldn't interpret value 80x for flag port.",
        "Couldn't interpret value maybe for flag enable_batching.",
    ]


def test_version_prints_the_versions_and_exits(tmp_path: Path) -> None:
    """`main.cc:main`: `--version` prints `TensorFlow ModelServer: ...` and `TensorFlow Library: ...`
    and returns 0, before any other check."""
    result = run_sim(["--version"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "TensorFlow ModelServer: 2.20.0\nTensorFlow Library: 2.20.0\n",
        "",
    )


# --- flags a client can tell ---


def test_grpc_socket_path_serves_grpc_on_a_unix_socket(tmp_path: Path, started: list[subprocess.Popen[str]]) -> None:
    """`server.cc:BuildAndStart`: `--grpc_socket_path` adds a listening port `unix:PATH`; with
    `--port=0` it is the only one (and REST needs `--rest_api_port`)."""
    base = model_dir(tmp_path, 3)
    socket = tmp_path / "tfs.sock"
    proc = start_sim(
        started, ["--port=0", f"--grpc_socket_path={socket}", "--model_name=m", f"--model_base_path={base}"]
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"unix={socket}\n"
    assert served_version(f"unix:{socket}", predict_request("m")) == 3


def test_rest_api_timeout_ends_a_long_inference(tmp_path: Path) -> None:
    """`http_rest_api_handler.cc`: `--rest_api_timeout_in_ms` goes into the `RunOptions` of every REST
    Predict, Classify and Regress; a session run past it fails with DEADLINE_EXCEEDED `Timed out
    waiting for notification` (`direct_session.cc:WaitForNotification`), HTTP 504. gRPC runs are not
    bound by it."""
    base = model_dir(tmp_path, 1)
    with Sim(model_base_path=str(base), model_name="m", latency_ms=400, rest_timeout_ms=100) as sim:
        r = requests.post(f"{sim.rest_url}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
        assert (r.status_code, r.json()) == (504, {"error": "Timed out waiting for notification"})
        assert r.elapsed.total_seconds() < 0.4
        assert served_version(sim.grpc_target, predict_request("m")) == 1
        assert sim.request_counts()[("m", "DEADLINE_EXCEEDED")] == 1
        assert sim.call_counts()[("m", "1")] == 2


def test_cors_headers_and_tensor_content(tmp_path: Path) -> None:
    """`http_rest_api_util.cc:AddCORSHeaders` with `--rest_api_enable_cors_support`, on every `/v1/`
    answer including a preflight; `--enable_serialization_as_tensor_content`: Predict outputs as
    `tensor_content` (`predict_util.cc`, `kAsProtoContent`)."""
    base = model_dir(tmp_path, 1)
    with Sim(model_base_path=str(base), model_name="m", cors=True, tensor_content=True) as sim:
        cors = {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "POST, GET",
            "Access-Control-Allow-Headers": "Content-Type",
        }
        for r in (
            requests.post(f"{sim.rest_url}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10),
            requests.options(f"{sim.rest_url}/v1/models/m:predict", headers={"Origin": "http://x"}, timeout=10),
            requests.get(f"{sim.rest_url}/v1/models/nope", timeout=10),
        ):
            assert {k: r.headers.get(k) for k in cors} == cors
        with grpc.insecure_channel(sim.grpc_target) as channel:
            y = (
                prediction_service_pb2_grpc.PredictionServiceStub(channel)
                .Predict(predict_request("m", x=[0.0, 2.0]), timeout=10)
                .outputs["y"]
            )
        assert (list(y.float_val), np.frombuffer(y.tensor_content, "<f4").tolist()) == ([], [2.0, 3.0])


# --- startup errors ---


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (
            ["--port=9"],
            "INVALID_ARGUMENT: Both server_options.model_base_path and server_options.model_config_file are empty!",
        ),
        (
            ["--port=0", "--model_base_path=/m"],
            "INVALID_ARGUMENT: At least one of server_options.grpc_port or server_options.grpc_socket_path "
            "must be set.",
        ),
        (
            ["--model_base_path=/m", "--use_alts_credentials", "--ssl_config_file=/ssl"],
            "INVALID_ARGUMENT: Either use_alts_credentials must be false or ssl_config_file must be empty.",
        ),
        (
            ["--model_base_path=/m", "--batching_parameters_file=/b"],
            "INVALID_ARGUMENT: server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.",
        ),
        (
            ["--model_base_path=relative/m"],
            "INVALID_ARGUMENT: Expected model default to have an absolute path or URI; got base_path()=relative/m",
        ),
        (["--model_config_file=/no/such.config"], "NOT_FOUND: /no/such.config; No such file or directory"),
    ],
)
def test_startup_errors_as_build_and_start_returns_them(tmp_path: Path, args: list[str], status: str) -> None:
    """`server.cc:Server::BuildAndStart`'s checks, in its order, and `ParseProtoTextFile`'s read error
    (`Env::NewReadOnlyMemoryRegionFromFile`); `main.cc` prints the status and returns -1."""
    result = run_sim(args, tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (255, f"Failed to start server. Error: {status}\n", "")


def test_a_model_without_platform_is_refused(tmp_path: Path) -> None:
    """`server_core.cc:GetPlatform` (from `CreateStoragePathRoutes`): a config entry needs
    `model_platform` (or the deprecated `model_type`); tensorflow/serving#1687 shows the message."""
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "m" base_path: "{model_dir(tmp_path, 1)}" }} }}\n')
    result = run_sim([f"--model_config_file={config}"], tmp_path)
    assert (result.returncode, result.stdout) == (
        255,
        "Failed to start server. Error: INVALID_ARGUMENT: Illegal setting neither ModelServerConfig::model_type "
        "(deprecated) nor ModelServerConfig::model_platform, model name is m\n",
    )


def test_a_bad_config_file_logs_protobufs_error_then_fails(tmp_path: Path) -> None:
    """upstream's testBadModelConfig (`tensorflow_model_server_test.py`) with its file's content:
    `util/proto_util.h:ParseProtoTextFile` -> `TextFormat::ParseFromString` logs `Error parsing
    text-format tensorflow.serving.ModelServerConfig: 1:12: ...` (the position of the token after
    the unknown name, `text_format.cc:ConsumeField`) on stderr, and the server fails with
    `INVALID_ARGUMENT: Invalid protobuf file: 'PATH'`."""
    config = tmp_path / "bad_model_config.txt"
    config.write_text("improperly formatted file")
    result = run_sim([f"--model_config_file={config}"], tmp_path)
    assert (result.returncode, result.stdout) == (
        255,
        f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{config}'\n",
    )
    (line,) = result.stderr.splitlines()
    assert line.split("] ", 1)[1] == (
        "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:12: "
        'Message type "tensorflow.serving.ModelServerConfig" has no field named "improperly".'
    )


def test_a_custom_model_config_aborts_the_server(tmp_path: Path) -> None:
    """`server.cc:LoadCustomModelConfig`: `LOG(FATAL) << "ModelServer does not yet support custom model
    config."` — the process aborts (SIGABRT)."""
    config = tmp_path / "custom.config"
    config.write_text('custom_model_config { type_url: "x" }\n')
    result = run_sim([f"--model_config_file={config}"], tmp_path)
    assert result.returncode == -6
    assert result.stderr.splitlines()[-1].split("] ", 1)[1] == "ModelServer does not yet support custom model config."
    assert not list(tmp_path.glob("core*"))


def test_monitoring_config_is_read_only_with_rest(tmp_path: Path, started: list[subprocess.Popen[str]]) -> None:
    """`server.cc:BuildAndStart` parses `--monitoring_config_file` only when it starts REST (an
    `http_port` other than 0 and than the gRPC port): a broken one fails the start with REST and is
    never read without it."""
    base = model_dir(tmp_path, 1)
    broken = tmp_path / "monitoring.config"
    broken.write_text("prometheus_config { enable: maybe }\n")
    common = ["--model_name=m", f"--model_base_path={base}", f"--monitoring_config_file={broken}"]
    result = run_sim([*common, "--grpc-addr=127.0.0.1:0", "--rest-addr=127.0.0.1:0"], tmp_path)
    assert (result.returncode, result.stdout) == (
        255,
        f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{broken}'\n",
    )
    assert result.stderr.splitlines()[-1].split("] ", 1)[1] == (
        "Error parsing text-format tensorflow.serving.MonitoringConfig: 1:35: "
        'Invalid value for boolean field "enable". Value: "maybe".'
    )
    proc = start_sim(started, [*common, "--grpc-addr=127.0.0.1:0"])
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("grpc=127.0.0.1:")


def test_ssl_config_file_serves_grpc_over_tls(tmp_path: Path, started: list[subprocess.Popen[str]]) -> None:
    """`server.cc:BuildServerCredentials`: `--ssl_config_file`'s SSLConfig (server_key, server_cert;
    custom_ca and client_verify for client certificates) makes the gRPC port TLS-only."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    def quoted(path: Path) -> str:
        return '"' + path.read_text().replace("\n", "\\n") + '"'

    ssl_config = tmp_path / "ssl.config"
    ssl_config.write_text(f"server_key: {quoted(key)}\nserver_cert: {quoted(cert)}\n")
    base = model_dir(tmp_path, 2)
    proc = start_sim(
        started,
        ["--model_name=m", f"--model_base_path={base}", f"--ssl_config_file={ssl_config}", "--grpc-addr=127.0.0.1:0"],
    )
    assert proc.stdout is not None
    target = proc.stdout.readline().strip().removeprefix("grpc=")
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(target, credentials, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert stub.Predict(predict_request("m"), timeout=10).model_spec.version.value == 2
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as info:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request("m"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
