"""`make build-image` / `tfs-traffic image build-server`: fetch, patch, bazel, pack — in that order.

The TF Serving source is a small git repository made here (no upstream code), with a stand-in for
upstream's tools/run_in_docker.sh that keeps its contract (docker pull, then `docker run --rm -it`
with the working directory mounted and `TEST_TMPDIR=.cache bazel ...`). `docker` is a fake on PATH
that records its calls, refuses `-it` without a terminal as the real one does, and runs the
container's command locally, where a fake `bazel` records its arguments and leaves a "binary" made
from the (patched) source. The pack step talks to a real Podman service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from podmanapi import BASE_TAG, PodmanService, build_base_image, image_filesystem, podman_service

from tfs_traffic.image import build

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION = "2.20.0"
DEVEL = f"tensorflow/serving:{VERSION}-devel"
TARGET = "tensorflow_serving/model_servers:tensorflow_model_server"

RUN_IN_DOCKER = r"""#!/bin/bash
# Test stand-in for upstream's tools/run_in_docker.sh: same flags, same docker calls.
set -e
IMAGE="tensorflow/serving:nightly-devel"
RUN_OPTS=()
while [[ $# > 1 ]]; do
  case "$1" in
    -d) IMAGE="$2"; shift 2;;
    -o) RUN_OPTS=($2); shift 2;;
    *) break;;
  esac
done
RUN_OPTS+=(--rm -it --network=host)
RUN_OPTS+=("-v $(pwd):$(pwd)")
RUN_OPTS+=("-v /tmp:/tmp")
CMD="sh -c 'cd $(pwd); TEST_TMPDIR=.cache $@'"
echo "== Pulling docker image: ${IMAGE}"
if ! docker pull ${IMAGE} ; then
  echo "WARNING: Failed to docker pull image ${IMAGE}"
fi
docker run ${RUN_OPTS[@]} ${IMAGE} bash -c "${CMD}"
"""

FAKE_DOCKER = r"""#!/bin/bash
# Fake docker: records each call (and whether stdin is a terminal), runs `run` commands locally.
if [ -t 0 ]; then t=tty; else t=notty; fi
printf '%s %s\n' "$t" "$*" >> "$FAKE_DOCKER_LOG"
case "$1" in
  info)
    if [ -n "$FAKE_DOCKER_DOWN" ]; then
      echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
      exit 1
    fi
    echo 28.2.2;;
  pull)
    if [ -n "$FAKE_DOCKER_NO_IMAGE" ]; then
      echo "Error response from daemon: pull access denied for ${2%%:*}, repository does not exist" >&2
      exit 1
    fi
    echo "Status: Image is up to date for $2";;
  image)
    [ -z "$FAKE_DOCKER_NO_IMAGE" ];;
  run)
    for a in "$@"; do
      if [ "$a" = -it ] && [ ! -t 0 ]; then echo "the input device is not a TTY" >&2; exit 1; fi
    done
    while [ "$1" != bash ]; do shift; done
    exec env PATH="$FAKE_TOOLS:$PATH" "$@";;
  *)
    echo "fake docker: unexpected: $*" >&2; exit 99;;
esac
"""

FAKE_BAZEL = r"""#!/bin/bash
# Fake bazel: records its arguments, "builds" the server from the source, keeps a build count.
{ echo "TEST_TMPDIR=${TEST_TMPDIR:-}"; echo "PWD=$PWD"; printf '%s\n' "$@"; } > "$FAKE_BAZEL_ARGS"
if [ -n "$FAKE_BAZEL_FAIL" ]; then echo "ERROR: compilation failed" >&2; exit 1; fi
if [ -n "$FAKE_BAZEL_NO_BINARY" ]; then exit 0; fi
base="${TEST_TMPDIR:+$PWD/$TEST_TMPDIR}"
base="${base:-$FAKE_TOOLS/output-base}"
mkdir -p "$base/bin/tensorflow_serving/model_servers"
echo $(( $(cat "$base/builds" 2>/dev/null || echo 0) + 1 )) > "$base/builds"
{ echo '#!/bin/sh'; sed 's/^/# /' tensorflow_serving/model_servers/server_core.cc; } \
  > "$base/bin/tensorflow_serving/model_servers/tensorflow_model_server"
chmod 755 "$base/bin/tensorflow_serving/model_servers/tensorflow_model_server"
ln -sfn "$base/bin" bazel-bin
ln -sfn "$base" "bazel-$(basename "$PWD")"
"""

SERVER_CORE = "// server_core.cc (test source)\nvoid CountCall() { /* calls are counted per model */ }\n"


@dataclass
class World:
    tmp: Path
    origin: Path
    tag_commit: str
    patches: Path
    cache: Path
    tools: Path
    docker_log: Path
    bazel_args: Path
    docker_host: str

    @property
    def source(self) -> Path:
        return self.cache / f"tensorflow-serving-{VERSION}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PATH": f"{self.tools}:{os.environ['PATH']}",
            "FAKE_DOCKER_LOG": str(self.docker_log),
            "FAKE_BAZEL_ARGS": str(self.bazel_args),
            "FAKE_TOOLS": str(self.tools),
            "DOCKER_HOST": self.docker_host,
        }
        env.update(extra)
        return env

    def run(self, *extra_args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tfs_traffic.cli", "image", "build-server", "--version", VERSION]
        cmd += ["--tag", "localhost/tfserving-built:test", "--source-url", str(self.origin)]
        cmd += ["--cache-dir", str(self.cache), "--patches", str(self.patches), "--base", BASE_TAG]
        cmd += [*extra_args]
        return subprocess.run(
            cmd, env=env or self.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )

    def docker_calls(self) -> list[str]:
        return self.docker_log.read_text().splitlines() if self.docker_log.exists() else []


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=env).stdout


def make_world(tmp: Path, docker_host: str = "unix:///nonexistent.sock") -> World:
    origin = tmp / "origin"
    (origin / "tools").mkdir(parents=True)
    (origin / "tensorflow_serving" / "model_servers").mkdir(parents=True)
    (origin / "tools" / "run_in_docker.sh").write_text(RUN_IN_DOCKER)
    (origin / "tools" / "run_in_docker.sh").chmod(0o755)
    (origin / "tensorflow_serving" / "model_servers" / "server_core.cc").write_text(SERVER_CORE)
    (origin / ".gitignore").write_text("/bazel-bin\n/bazel-out\n")  # as upstream's: not bazel-<dir>
    _git(origin, "init", "-q", "-b", "master")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "release")
    _git(origin, "tag", "-a", VERSION, "-m", "release tag")
    tag_commit = _git(origin, "rev-parse", "HEAD").strip()
    (origin / "tensorflow_serving" / "model_servers" / "server_core.cc").write_text(SERVER_CORE + "// after\n")
    _git(origin, "commit", "-qam", "work after the release")

    # the series: made with git diff on a scratch copy
    scratch = tmp / "scratch"
    _git(tmp, "clone", "-q", "--branch", VERSION, str(origin), str(scratch))
    core = scratch / "tensorflow_serving" / "model_servers" / "server_core.cc"
    core.write_text(SERVER_CORE.replace("per model", "per model version"))
    series = tmp / "patches" / VERSION
    series.mkdir(parents=True)
    (series / "0001-count-per-version.patch").write_text(_git(scratch, "diff"))
    (scratch / "tensorflow_serving" / "model_servers" / "version_metrics.h").write_text("// new file\n")
    _git(scratch, "add", "-N", ".")
    diff = _git(scratch, "diff", "--", "tensorflow_serving/model_servers/version_metrics.h")
    (series / "0002-add-header.patch").write_text(diff)
    (series / "series").write_text(
        f"# Applies to: {VERSION}\n# order matters\n0001-count-per-version.patch\n0002-add-header.patch\n"
    )

    tools = tmp / "tools"
    tools.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("bazel", FAKE_BAZEL)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    return World(
        tmp=tmp,
        origin=origin,
        tag_commit=tag_commit,
        patches=tmp / "patches",
        cache=tmp / "cache",
        tools=tools,
        docker_log=tmp / "docker.log",
        bazel_args=tmp / "bazel.args",
        docker_host=docker_host,
    )


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("tfs-traffic:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def _steps(stderr: str) -> list[str]:
    return [line.split()[1] for line in stderr.splitlines() if line.startswith("==> ")]


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    with podman_service(tmp_path_factory.mktemp("podman")) as service:
        build_base_image(service.client(), tmp_path_factory.mktemp("base"))
        yield service


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def podman_world(tmp_path: Path, podman: PodmanService) -> World:
    return make_world(tmp_path, podman.docker_host)


def _image(podman: PodmanService, tag: str = "localhost/tfserving-built:test") -> tuple[dict[str, Any], bytes]:
    client = podman.client()
    files = image_filesystem(client, tag)
    return client.inspect_image(tag), files["/usr/bin/tensorflow_model_server"].data


def test_fetch_patch_bazel_pack_in_order(podman_world: World, podman: PodmanService) -> None:
    w = podman_world
    done = w.run("--bazel-options=--jobs=2 --copt=-O2")
    assert done.returncode == 0, done.stderr
    assert _steps(done.stderr) == ["fetching", "applying", "pulling", "building", "packing"]

    # fetch: a shallow clone of the tag (not of the branch tip), in the cache
    assert _git(w.source, "rev-parse", "HEAD").strip() == w.tag_commit
    assert _git(w.source, "rev-parse", "--is-shallow-repository").strip() == "true"
    # docker: checked, devel image pulled, then run with -it on a pseudo-terminal (stdin was /dev/null)
    calls = w.docker_calls()
    assert calls[0] == "notty info --format {{.ServerVersion}}"
    assert calls[1] == f"notty pull {DEVEL}"
    assert calls[2] == f"tty pull {DEVEL}"  # run_in_docker.sh's own pull, under `script`
    assert calls[3].startswith(f"tty run --rm -it --network=host -v {w.source}:{w.source} -v /tmp:/tmp {DEVEL} bash")
    assert len(calls) == 4
    # bazel: in the source, its output base in ./.cache, our options before the target
    assert w.bazel_args.read_text().splitlines() == [
        "TEST_TMPDIR=.cache",
        f"PWD={w.source}",
        "build",
        "--config=release",
        "--jobs=2",
        "--copt=-O2",
        TARGET,
    ]
    # pack: the binary bazel built from the patched source, labelled with what went in
    inspect, binary = _image(podman)
    assert done.stdout.splitlines() == [inspect["Id"]]
    assert b"calls are counted per model version" in binary
    labels = inspect["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == w.tag_commit
    assert labels["io.github.tfs-traffic.patch-series-sha256"] == build.pack.patch_series_sha256(w.patches / VERSION)
    assert (w.source / "tensorflow_serving" / "model_servers" / "version_metrics.h").is_file()


def test_second_build_reuses_the_cache_and_bazel_output(podman_world: World, podman: PodmanService) -> None:
    w = podman_world
    assert w.run().returncode == 0
    shutil.rmtree(w.origin)  # a second fetch would fail now
    w.docker_log.unlink()
    done = w.run()
    assert done.returncode == 0, done.stderr
    assert _steps(done.stderr) == ["reusing", "applying", "pulling", "building", "packing"]
    assert "undoing the patches of the last build" in done.stderr
    assert (w.source / ".cache" / "builds").read_text().strip() == "2"  # bazel's .cache/ survived
    _, binary = _image(podman)
    assert binary.count(b"per model version") == 1  # patched once, on a pristine tree

    # a pristine cache (e.g. restored by hand) is reused as it is (this run stops at the pull)
    _git(w.source, "reset", "-q", "--hard", VERSION)
    _git(w.source, "clean", "-fdq")
    done = w.run(env=w.env(FAKE_DOCKER_NO_IMAGE="1"))
    assert _steps(done.stderr) == ["reusing", "applying", "pulling"]
    assert f"reusing the pristine source in {w.source}" in done.stderr


def test_build_with_local_bazel(podman_world: World, podman: PodmanService) -> None:
    w = podman_world
    done = w.run("--build-with", "bazel", "--bazel-options=--jobs=1")
    assert done.returncode == 0, done.stderr
    assert _steps(done.stderr) == ["fetching", "applying", "building", "packing"]
    assert w.docker_calls() == []  # no docker at all
    assert w.bazel_args.read_text().splitlines() == [
        "TEST_TMPDIR=",
        f"PWD={w.source}",
        "build",
        "--config=release",
        "--jobs=1",
        TARGET,
    ]
    _, binary = _image(podman)
    assert b"per model version" in binary


def _path_without(command: str, tmp: Path) -> str:
    """PATH as it is, less every directory holding `command`; other tools there stay reachable."""
    shim = tmp / "path-shim"
    shim.mkdir()
    dirs = []
    for directory in os.environ["PATH"].split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        if os.path.exists(os.path.join(directory, command)):
            for entry in os.listdir(directory):
                if entry != command and not (shim / entry).exists():
                    (shim / entry).symlink_to(os.path.join(directory, entry))
        else:
            dirs.append(directory)
    path = os.pathsep.join([str(shim), *dirs])
    assert shutil.which(command, path=path) is None
    return path


def test_no_docker_on_path(world: World) -> None:
    done = world.run(env=world.env(PATH=_path_without("docker", world.tmp)))
    assert done.returncode == 1
    assert _error_line(done).startswith("tfs-traffic: error: docker not found on PATH")
    assert not world.cache.exists()  # failed before fetching anything


def test_make_build_image_without_docker(tmp_path: Path) -> None:
    # as if typed at a shell, not inside `make test`
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    env["PATH"] = _path_without("docker", tmp_path)
    # The target's venv is the one running these tests, taken as installed (-o: its stamp is not remade).
    # Else make would reinstall it with pip first whenever pyproject.toml is newer than the stamp, or the
    # tests run from another venv, and pip's own notices would be on stderr too.
    venv = Path(sys.executable).parent.parent
    make = ["make", "-s", "-C", str(REPO_ROOT), f"VENV={venv}", "-o", str(venv / ".installed")]
    done = subprocess.run(
        [*make, "build-image", f"TF_SERVING_VERSION={VERSION}", "IMAGE=localhost/x:1"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert _error_line(done).startswith("tfs-traffic: error: docker not found on PATH")
    assert done.stdout == ""
    # what else is on stderr is make's own "Error 1" line
    assert [line for line in done.stderr.splitlines() if not line.startswith("tfs-traffic:")] == [
        line for line in done.stderr.splitlines() if line.startswith("make: ***")
    ]


def test_daemon_down(world: World) -> None:
    done = world.run(env=world.env(FAKE_DOCKER_DOWN="1"))
    assert done.returncode == 1
    assert _error_line(done) == (
        "tfs-traffic: error: the Docker daemon is not reachable: Cannot connect to the Docker daemon at "
        "unix:///var/run/docker.sock. Is the docker daemon running?"
    )
    assert not world.cache.exists()


def test_devel_image_cannot_be_pulled(world: World) -> None:
    done = world.run(env=world.env(FAKE_DOCKER_NO_IMAGE="1"))
    assert done.returncode == 1
    assert _error_line(done) == (
        f"tfs-traffic: error: cannot pull the devel image {DEVEL}: Error response from daemon: "
        "pull access denied for tensorflow/serving, repository does not exist"
    )
    # the daemon is asked, the pull fails, nothing is there locally either: no `docker run`
    assert world.docker_calls() == [
        "notty info --format {{.ServerVersion}}",
        f"notty pull {DEVEL}",
        f"notty image inspect {DEVEL}",
    ]


def test_bazel_failure(world: World) -> None:
    done = world.run(env=world.env(FAKE_BAZEL_FAIL="1"))
    assert done.returncode == 1
    assert _error_line(done) == f"tfs-traffic: error: bazel build in {DEVEL} failed (exit 1); its output is above"
    assert "ERROR: compilation failed" in done.stderr


def test_binary_missing(world: World) -> None:
    done = world.run(env=world.env(FAKE_BAZEL_NO_BINARY="1"))
    assert done.returncode == 1
    binary = world.source / "bazel-bin/tensorflow_serving/model_servers/tensorflow_model_server"
    assert _error_line(done) == f"tfs-traffic: error: bazel finished but left no binary at {binary}"


def test_no_local_bazel(world: World) -> None:
    (world.tools / "bazel").unlink()
    path = _path_without("bazel", world.tmp)
    done = world.run("--build-with", "bazel", env=world.env(PATH=f"{world.tools}:{path}"))
    assert done.returncode == 1
    assert _error_line(done).startswith("tfs-traffic: error: bazel not found on PATH")


@pytest.mark.parametrize("patch_with", ["auto", "git"])
def test_patch_that_does_not_apply(world: World, patch_with: str) -> None:
    patch = world.patches / VERSION / "0001-count-per-version.patch"
    patch.write_text(patch.read_text().replace("calls are counted per model */", "something else */"))
    done = world.run("--patch-with", patch_with)
    assert done.returncode == 1
    line = _error_line(done)
    assert line.startswith("tfs-traffic: error: ") and "does not apply" in line
    if patch_with == "git":  # the seam's own message
        assert line.startswith(f"tfs-traffic: error: 0001-count-per-version.patch does not apply to {VERSION}")


@pytest.mark.parametrize("patch_with", ["auto", "git"])
def test_missing_series_is_a_usage_error(world: World, patch_with: str) -> None:
    done = world.run("--version", "2.19.0", "--patch-with", patch_with)  # argparse: the last --version wins
    assert done.returncode == 2
    line = _error_line(done)
    assert line.startswith("tfs-traffic: error: no patch series for ") and "2.19.0" in line
    assert not world.cache.exists()


def test_git_apply_finds_the_series_by_its_applies_to_line(world: World) -> None:
    """A release served by a series named after another tag (2.8.0 gets patches/2.10.1/) builds with git apply too."""
    (world.patches / VERSION).rename(world.patches / "2.20.x")
    done = world.run("--patch-with", "git", env=world.env(FAKE_BAZEL_NO_BINARY="1"))  # stop after bazel
    assert f"applying 2 patch(es) from {world.patches / '2.20.x'} with git apply" in done.stderr
    assert "==> building tensorflow_serving/model_servers:tensorflow_model_server" in done.stderr


def test_cache_with_foreign_changes_is_not_reused(world: World) -> None:
    assert world.run(env=world.env(FAKE_BAZEL_NO_BINARY="1")).returncode == 1  # fetched and patched
    (world.source / "tensorflow_serving" / "model_servers" / "server_core.cc").write_text("// edited by hand\n")
    done = world.run()
    assert done.returncode == 1
    assert _error_line(done).startswith(f"tfs-traffic: error: the cached source {world.source} has changes")


def test_cache_of_another_commit_is_fetched_again(world: World) -> None:
    world.cache.mkdir()
    _git(world.tmp, "clone", "-q", str(world.origin), str(world.source))  # the branch tip, not the tag
    done = world.run(env=world.env(FAKE_BAZEL_NO_BINARY="1"))
    assert "is not a checkout of 2.20.0: fetching it again" in done.stderr
    assert _git(world.source, "rev-parse", "HEAD").strip() == world.tag_commit


def test_terminal_present_runs_without_script(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    request = build.BuildRequest(version=VERSION, tag="localhost/x:1", cache_dir=world.cache, patches_dir=world.patches)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    assert build.bazel_command(request, world.source)[:3] == [str(world.source / "tools/run_in_docker.sh"), "-d", DEVEL]
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    cmd = build.bazel_command(request, world.source)
    assert cmd[:2] == ["script", "-qec"] and cmd[3] == "/dev/null"
    assert cmd[2].endswith(f"-d {DEVEL} bazel build --config=release {TARGET}")


def test_bad_inputs_are_usage_errors(world: World) -> None:
    assert "is not a release tag" in _error_line(world.run("--version", "latest"))
    for options in ("--copt=\"'-O3'\"", "--copt='-O3 -g'", "--define=x=$HOME"):
        done = world.run(f"--bazel-options={options}")
        assert done.returncode == 2
        assert "has characters run_in_docker.sh would mangle" in _error_line(done)
    assert not world.cache.exists()


def test_make_variables_map_to_build_server_flags(tmp_path: Path) -> None:
    recorder = tmp_path / "tfs-traffic"
    recorder.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    recorder.chmod(0o755)
    env = {**os.environ, "TFS_TRAFFIC": str(recorder), "TF_SERVING_VERSION": VERSION, "IMAGE": "r/n:t"}
    env.update(BAZEL_OPTIONS="--jobs=3 --copt=-O2", PUSH="1", BUILD_WITH="bazel", TF_SERVING_SOURCE="/mirror")
    done = subprocess.run(["bash", str(REPO_ROOT / "build/build-image.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    args = done.stdout.splitlines()
    assert args[:2] == ["image", "build-server"]
    flags = args[2:]
    assert flags[flags.index("--version") + 1] == VERSION
    assert flags[flags.index("--tag") + 1] == "r/n:t"
    assert flags[flags.index("--build-with") + 1] == "bazel"
    assert "--bazel-options=--jobs=3 --copt=-O2" in flags
    assert flags[flags.index("--source-url") + 1] == "/mirror"
    assert "--push" in flags
    env.update(PUSH="0")
    done = subprocess.run(["bash", str(REPO_ROOT / "build/build-image.sh")], env=env, capture_output=True, text=True)
    assert "--push" not in done.stdout.splitlines()
    del env["IMAGE"]
    done = subprocess.run(["bash", str(REPO_ROOT / "build/build-image.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("build-image: IMAGE is not set; usage: make build-image")
