"""`tfs-traffic image build` against a real Podman service speaking the Docker API.

The runtime image is built from a stand-in binary on a locally built busybox base (no registry),
then checked the way a user would: its config through the API, its files through `docker save`,
and its entrypoint run from the image's own filesystem (chroot, as the image's non-root user).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from podmanapi import (
    BASE_TAG,
    PodmanService,
    build_base_image,
    extract_rootfs,
    image_filesystem,
    local_registry,
    podman_service,
)
from tcp_server import tcp_server

from tfs_traffic import cli
from tfs_traffic.image import pack

STAND_IN = (
    b"#!/bin/sh\n# stand-in for tensorflow_model_server: prints who runs it and its arguments\n"
    b'id -u\nfor a in "$@"; do echo "$a"; done\n'
)
SERIES = {
    "series": "# applied in order\n0001-count-calls.patch\n0002-gauge.patch\n",
    "0001-count-calls.patch": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
    "0002-gauge.patch": "--- a/y\n+++ b/y\n@@ -1 +1 @@\n-c\n+d\n",
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[PodmanService]:
    with podman_service(tmp_path_factory.mktemp("podman"), insecure_registries=(registry,)) as service:
        build_base_image(service.client(), tmp_path_factory.mktemp("base"))
        yield service


@pytest.fixture
def api(podman: PodmanService, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DOCKER_HOST", podman.docker_host)
    return podman.client()


def _series(tmp_path: Path) -> Path:
    series = tmp_path / "patches" / "2.20.0"
    series.mkdir(parents=True)
    for name, text in SERIES.items():
        (series / name).write_text(text)
    return series


def _build(tmp_path: Path, tag: str, *options: str) -> int:
    """`tfs-traffic image build` of the stand-in binary (written under `tmp_path`) as `tag`: its exit code."""
    binary = tmp_path / "tensorflow_model_server"
    binary.write_bytes(STAND_IN)
    return cli.main(["image", "build", "--binary", str(binary), "--tag", tag, *options])


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("tfs-traffic:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def server_image(podman: PodmanService, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One runtime image built through the CLI, shared by the checks below."""
    tmp = tmp_path_factory.mktemp("server")
    binary = tmp / "tensorflow_model_server"
    binary.write_bytes(STAND_IN)
    binary.chmod(0o700)  # the image must make it executable by its non-root user anyway
    series = _series(tmp)
    env = {**os.environ, "DOCKER_HOST": podman.docker_host}
    tag = "localhost/tfserving-calls:2.20.0-test"
    args = ["image", "build", "--binary", str(binary), "--tag", tag, "--base", BASE_TAG]
    args += ["--tf-serving-version", "2.20.0", "--patch-series", str(series)]
    done = subprocess.run(
        [sys.executable, "-m", "tfs_traffic.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    client = podman.client()
    return {
        "tag": tag,
        "stdout": done.stdout,
        "stderr": done.stderr,
        "inspect": client.inspect_image(tag),
        "files": image_filesystem(client, tag),
        "series": series,
    }


def test_prints_the_image_id_last_and_streams_progress(server_image: dict[str, Any]) -> None:
    assert server_image["stdout"].splitlines() == [server_image["inspect"]["Id"]]
    assert server_image["inspect"]["Id"].startswith("sha256:")
    assert "COPY rootfs/ /" in server_image["stderr"]  # the build's own output, streamed


def test_image_config_keeps_the_official_contract(server_image: dict[str, Any]) -> None:
    config = server_image["inspect"]["Config"]
    assert config["Entrypoint"] == ["/usr/bin/tf_serving_entrypoint.sh"]
    assert config["Cmd"] in (None, [])  # no default command (Docker says null, Podman [])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MODEL_NAME"] == "model"
    assert env["MODEL_BASE_PATH"] == "/models"
    assert env["MONITORING_CONFIG_FILE"] == "/etc/tfs-traffic/monitoring.config"
    assert set(config["ExposedPorts"]) == {"8500/tcp", "8501/tcp"}
    assert config["User"] == "10001:10001"


def test_labels_carry_version_and_series_hash(server_image: dict[str, Any]) -> None:
    labels = server_image["inspect"]["Config"]["Labels"]
    series: Path = server_image["series"]
    # `cat 0001-... 0002-... | sha256sum`, in series order
    expected = hashlib.sha256(
        (series / "0001-count-calls.patch").read_bytes() + (series / "0002-gauge.patch").read_bytes()
    ).hexdigest()
    assert labels["io.github.tfs-traffic.patch-series-sha256"] == expected
    assert labels["org.opencontainers.image.version"] == "2.20.0"
    assert labels["io.github.tfs-traffic.tf-serving-version"] == "2.20.0"
    assert labels["org.opencontainers.image.base.name"] == BASE_TAG
    assert labels["org.opencontainers.image.created"].endswith("Z")


def test_image_files_and_permissions(server_image: dict[str, Any]) -> None:
    files = server_image["files"]
    server = files["/usr/bin/tensorflow_model_server"]
    assert server.data == STAND_IN
    assert (server.mode & 0o7777, server.uid, server.gid) == (0o755, 0, 0)
    entrypoint = files["/usr/bin/tf_serving_entrypoint.sh"]
    assert entrypoint.data.startswith(b"#!/bin/sh\n")
    assert (entrypoint.mode & 0o7777, entrypoint.uid) == (0o755, 0)
    monitoring = files["/etc/tfs-traffic/monitoring.config"]
    assert (monitoring.mode & 0o7777, monitoring.uid) == (0o644, 0)
    text = " ".join(monitoring.data.decode().split())
    assert text == 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'
    certs = files["/etc/ssl/certs/ca-certificates.crt"]
    assert certs.data == Path(certifi.where()).read_bytes()
    assert certs.mode & 0o7777 == 0o644
    assert files["/models"].kind == b"5"
    for directory in ("/usr", "/usr/bin", "/etc", "/etc/ssl", "/etc/ssl/certs", "/etc/tfs-traffic"):
        assert files[directory].mode & 0o7777 == 0o755, directory
    # the base's own files are still there
    assert files["/bin/sh"].data == Path("/bin/busybox").read_bytes()


@pytest.fixture(scope="module")
def rootfs(server_image: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("rootfs")
    extract_rootfs(server_image["files"], target)
    return target


def _run_entrypoint(rootfs: Path, image_env: list[str], *args: str, **overrides: str) -> list[str]:
    """Run the image's entrypoint in its own filesystem as its user, as `docker run IMAGE ARGS` would."""
    env = dict(item.split("=", 1) for item in image_env)
    env.update(overrides)
    done = subprocess.run(
        ["chroot", "--userspec=10001:10001", str(rootfs), "/usr/bin/tf_serving_entrypoint.sh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_entrypoint_runs_the_server_with_monitoring_as_non_root(server_image: dict[str, Any], rootfs: Path) -> None:
    env = server_image["inspect"]["Config"]["Env"]
    out = _run_entrypoint(rootfs, env, "--enable_batching", "--rest_api_timeout_in_ms=5000")
    assert out == [
        "10001",
        "--port=8500",
        "--rest_api_port=8501",
        "--model_name=model",
        "--model_base_path=/models/model",
        "--monitoring_config_file=/etc/tfs-traffic/monitoring.config",
        "--enable_batching",
        "--rest_api_timeout_in_ms=5000",
    ]


def test_entrypoint_honours_model_env_and_monitoring_overrides(server_image: dict[str, Any], rootfs: Path) -> None:
    env = server_image["inspect"]["Config"]["Env"]
    out = _run_entrypoint(rootfs, env, MODEL_NAME="resnet", MODEL_BASE_PATH="/mnt/models")
    assert out[3:5] == ["--model_name=resnet", "--model_base_path=/mnt/models/resnet"]
    # an explicit flag wins: the baked config is not passed as well
    out = _run_entrypoint(rootfs, env, "--monitoring_config_file=/cfg/mine.config")
    assert [a for a in out if "monitoring" in a] == ["--monitoring_config_file=/cfg/mine.config"]
    out = _run_entrypoint(rootfs, env, "--monitoring_config_file", "/cfg/mine.config")
    assert [a for a in out if "monitoring" in a] == ["--monitoring_config_file"]
    # the env var points elsewhere, or turns monitoring off
    out = _run_entrypoint(rootfs, env, MONITORING_CONFIG_FILE="/cfg/other.config")
    assert "--monitoring_config_file=/cfg/other.config" in out
    out = _run_entrypoint(rootfs, env, MONITORING_CONFIG_FILE="")
    assert not [a for a in out if "monitoring" in a]


def test_push_prints_the_registry_digest_last(
    api: Any, registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = f"{registry}/ml/tfserving:2.20.0-calls"
    assert _build(tmp_path, tag, "--base", BASE_TAG, "--push") == 0
    image_id, pushed = capsys.readouterr().out.splitlines()
    assert image_id == api.inspect_image(tag)["Id"]
    repository, digest = pushed.split("@")
    assert repository == f"{registry}/ml/tfserving"
    # the registry serves the manifest under that digest
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    head = requests.head(f"http://{registry}/v2/ml/tfserving/manifests/2.20.0-calls", headers={"Accept": accept})
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    by_digest = requests.get(f"http://{registry}/v2/ml/tfserving/manifests/{digest}", headers={"Accept": accept})
    assert by_digest.status_code == 200
    assert hashlib.sha256(by_digest.content).hexdigest() == digest.removeprefix("sha256:")


def test_push_failure_is_one_line(
    api: Any, not_a_registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = f"{not_a_registry}/ml/tfserving:x"
    assert _build(tmp_path, tag, "--base", BASE_TAG, "--push") == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"tfs-traffic: error: push of {tag} failed: ")


@pytest.fixture
def not_a_registry() -> Iterator[str]:
    """A 127.0.0.1 port that answers in plain text: pulling from it fails at once, with no retry."""

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"HTTP/1.0 404 Not Found\r\n\r\n")

    with tcp_server(answer) as port:
        yield f"127.0.0.1:{port}"


def test_bad_base_is_one_line(
    api: Any, tmp_path: Path, not_a_registry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = f"{not_a_registry}/no/such-base:1"
    assert _build(tmp_path, "localhost/x:1", "--base", base) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("tfs-traffic: error: image build failed: ")
    assert not_a_registry in line


def test_no_daemon_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing-here.sock")
    assert _build(tmp_path, "localhost/x:1") == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"tfs-traffic: error: cannot reach the Docker API at unix://{tmp_path}/nothing-here.sock")


def test_missing_binary_and_bad_tag_are_usage_errors(tmp_path: Path, capsys) -> None:
    assert cli.main(["image", "build", "--binary", str(tmp_path / "none"), "--tag", "localhost/x:1"]) == 2
    assert "--binary" in _one_error_line(capsys.readouterr().err)
    assert _build(tmp_path, "Local/X:1") == 2
    assert "not a valid image reference" in _one_error_line(capsys.readouterr().err)


def test_missing_docker_sdk_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # import docker -> ImportError
    assert _build(tmp_path, "localhost/x:1") == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "pip install 'tfs-traffic[image]'" in line


def test_apt_mode_renders_the_official_install_step() -> None:
    spec = pack.ServerImageSpec(base="ubuntu:22.04", ca_certificates="apt", tf_serving_version="2.20.0")
    dockerfile = pack.render_dockerfile(spec, pack.image_labels(spec))
    lines = dockerfile.splitlines()
    assert lines[lines.index("FROM ubuntu:22.04") + 2].startswith(
        "RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates"
    )
    bundle = pack.render_dockerfile(pack.ServerImageSpec(), {})
    assert "RUN" not in [line.split(" ")[0] for line in bundle.splitlines()]


def test_label_values_are_quoted_and_checked() -> None:
    spec = pack.ServerImageSpec(extra_labels={"org.example.note": 'say "hi" \\ bye'})
    dockerfile = pack.render_dockerfile(spec, pack.image_labels(spec))
    assert 'org.example.note="say \\"hi\\" \\\\ bye"' in dockerfile
    with pytest.raises(pack.UsageError):
        pack.image_labels(pack.ServerImageSpec(extra_labels={"Bad Key": "x"}))
    with pytest.raises(pack.UsageError):
        pack.image_labels(pack.ServerImageSpec(extra_labels={"ok.key": "two\nlines"}))
