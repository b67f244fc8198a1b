"""From a TF Serving release tag to a runtime image with the patched binary.

The steps, in order: check the tools (before downloading anything), fetch the source at the tag into
a cache (a shallow git clone, reused while it is pristine), apply the patch series, build
`tensorflow_model_server` with bazel (inside `tensorflow/serving:<version>-devel` through upstream's
`tools/run_in_docker.sh`, or with a local bazel), check the binary is where bazel leaves it, and pack
it with `tfs_traffic.image.pack`. Every failure is one line (a ToolError) that names what is missing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.image import pack
from tfs_traffic.patches import series as patch_series

DEFAULT_SOURCE_URL = "https://github.com/tensorflow/serving.git"
BAZEL_TARGET = "tensorflow_serving/model_servers:tensorflow_model_server"
BINARY_RELPATH = Path("bazel-bin/tensorflow_serving/model_servers/tensorflow_model_server")
# run_in_docker.sh sets TEST_TMPDIR=.cache: bazel's output base lives in the source tree. Git must
# ignore it so that it survives the reset to a pristine tree between builds.
BAZEL_CACHE_DIR = ".cache"
STATE_FILE = "tfs-traffic-patched-tree"  # in .git/: the tree id we left after applying patches
BUILDERS = ("docker", "bazel")
PATCH_TOOLS = ("auto", "tfs-traffic", "git")
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-rc\d+)?$")
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")

Progress = Callable[[str], None]


def _say(line: str) -> None:
    print(f"==> {line}", file=sys.stderr, flush=True)


@dataclass
class BuildRequest:
    """Everything `make build-image` passes on."""

    version: str
    tag: str
    cache_dir: Path
    patches_dir: Path | None = None  # None: the series packaged with tfs-traffic (or ./patches)
    source_url: str = DEFAULT_SOURCE_URL
    bazel_options: list[str] = field(default_factory=list)
    build_with: str = "docker"
    devel_image: str | None = None
    push: bool = False
    base: str = pack.DEFAULT_BASE
    ca_certificates: str = "bundle"
    ca_bundle: Path | None = None
    patch_tool: str = "auto"

    @property
    def devel(self) -> str:
        return self.devel_image or f"tensorflow/serving:{self.version}-devel"

    @property
    def source_dir(self) -> Path:
        return self.cache_dir / f"tensorflow-serving-{self.version}"


def validate(request: BuildRequest) -> None:
    """Input errors, reported before any work."""
    if not _VERSION.match(request.version):
        raise UsageError(f"TF Serving version {request.version!r} is not a release tag like 2.20.0")
    if request.build_with not in BUILDERS:
        raise UsageError(f"BUILD_WITH must be one of {', '.join(BUILDERS)}, not {request.build_with!r}")
    if request.patch_tool not in PATCH_TOOLS:
        raise UsageError(f"--patch-with must be one of {', '.join(PATCH_TOOLS)}")
    pack.check_tag(request.tag)
    if request.build_with == "docker":
        # run_in_docker.sh pastes its arguments into `sh -c '... $@'` and `-v $(pwd):$(pwd)` unquoted:
        # anything a shell would split or interpret would change meaning on the way to bazel.
        for option in request.bazel_options:
            if not _SHELL_SAFE.match(option):
                raise UsageError(
                    f"BAZEL_OPTIONS item {option!r} has characters run_in_docker.sh would mangle "
                    "(spaces, quotes, $...): split it into several options, e.g. --copt=-O3 --copt=-g"
                )
        if not _SHELL_SAFE.match(str(request.source_dir.resolve())):
            raise UsageError(
                f"the cache directory {request.cache_dir} must not hold spaces or quotes (run_in_docker.sh)"
            )


def _use_patch_module(request: BuildRequest) -> Any | None:
    """The code behind `tfs-traffic patch` (series lookup and apply), unless --patch-with git asks for git apply."""
    return patch_series if request.patch_tool in ("auto", "tfs-traffic") else None


def series_dir(request: BuildRequest) -> Path:
    """The patch series for the version, as `tfs-traffic patch` picks it (its `Applies to` line), however applied."""
    series = patch_series.series_for(request.version, patch_series.load_series(request.patches_dir))
    pack.series_patches(Path(series.path))
    return Path(series.path)


def _run(cmd: Sequence[str], cwd: Path | None = None, check: bool = True, timeout: float | None = None) -> str:
    """Run a helper command quietly; return its stdout; a failure becomes one line."""
    try:
        out = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except OSError as e:
        raise ToolError(f"cannot run {cmd[0]}: {e.strerror or e}") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{shlex.join(cmd[:3])} did not answer within {timeout:.0f} s") from None
    if check and out.returncode != 0:
        raise ToolError(f"{shlex.join(cmd[:4])} failed: {_last_line(out.stderr or out.stdout)}")
    return out.stdout


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def preflight(request: BuildRequest) -> None:
    """Check the tools before fetching anything, so a host without Docker fails at once."""
    if shutil.which("git") is None:
        raise ToolError("git not found on PATH: it fetches the TF Serving source")
    pack.api_module_available()
    if request.build_with == "bazel":
        if shutil.which("bazel") is None:
            raise ToolError("bazel not found on PATH: BUILD_WITH=bazel needs a local bazel (or use BUILD_WITH=docker)")
        return
    if shutil.which("docker") is None:
        raise ToolError(
            "docker not found on PATH: the build runs bazel in tensorflow/serving's devel image with "
            "tools/run_in_docker.sh (install Docker, or use BUILD_WITH=bazel with a local bazel)"
        )
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        raise ToolError("the Docker daemon did not answer `docker info` within 60 s") from None
    if info.returncode != 0:
        raise ToolError(f"the Docker daemon is not reachable: {_last_line(info.stderr or info.stdout)}")
    if not sys.stdin.isatty() and shutil.which("script") is None:
        raise ToolError("no terminal and no `script` command (util-linux): run_in_docker.sh needs a pseudo-terminal")


def _git(source: Path, *args: str) -> str:
    return _run(["git", "-C", str(source), *args]).strip()


def _worktree_tree(source: Path) -> str:
    """The git tree id of the working tree as it is now (untracked files included, ignored ones not)."""
    with tempfile.TemporaryDirectory(prefix="tfs-traffic-index-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for args in (["add", "-A", "."], ["write-tree"]):
            out = subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, env=env, check=False
            )
            if out.returncode != 0:
                raise ToolError(f"git {args[0]} in {source} failed: {_last_line(out.stderr)}")
        return out.stdout.strip()


def _cached_state(request: BuildRequest) -> str:
    """'pristine', 'patched' (exactly as our last build left it), 'modified', 'other' or 'absent'."""
    source = request.source_dir
    if not source.exists():
        return "absent"
    try:
        head = _git(source, "rev-parse", "HEAD")
        tag = _git(source, "rev-parse", f"refs/tags/{request.version}^{{commit}}")
        tag_tree = _git(source, "rev-parse", f"refs/tags/{request.version}^{{tree}}")
    except ToolError:
        return "other"
    if head != tag:
        return "other"
    tree = _worktree_tree(source)
    if tree == tag_tree:
        return "pristine"
    state_file = source / ".git" / STATE_FILE
    if state_file.is_file() and state_file.read_text().strip() == tree:
        return "patched"
    return "modified"


def _source_url(url: str) -> str:
    # A local path clones with hard links and ignores --depth; as a file:// URL it is shallow too.
    path = Path(url)
    return path.resolve().as_uri() if "://" not in url and path.exists() else url


def fetch(request: BuildRequest, say: Progress = _say) -> Path:
    """A pristine checkout of the tag in the cache: reused when it is there, cloned otherwise."""
    source = request.source_dir
    state = _cached_state(request)
    if state == "pristine":
        say(f"reusing the pristine source in {source}")
        return source
    if state == "patched":
        say(f"reusing {source}: undoing the patches of the last build (bazel's {BAZEL_CACHE_DIR}/ is kept)")
        _git(source, "reset", "-q", "--hard", f"refs/tags/{request.version}")
        _git(source, "clean", "-fdq", "-e", f"/{BAZEL_CACHE_DIR}")
        if _cached_state(request) != "pristine":
            raise ToolError(f"cannot restore {source} to {request.version}: remove it and run again")
        return source
    if state == "modified":
        raise ToolError(
            f"the cached source {source} has changes this tool did not make: remove that directory "
            "(or commit nothing there) and run again"
        )
    if state == "other":
        say(f"{source} is not a checkout of {request.version}: fetching it again")
        shutil.rmtree(source)
    request.cache_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{source.name}.", dir=request.cache_dir))
    url = _source_url(request.source_url)
    say(f"fetching tensorflow/serving {request.version} from {request.source_url} into {source}")
    try:
        _run(["git", "clone", "-q", "--depth", "1", "--branch", request.version, url, str(partial)])
        # A shallow clone of a tag has the commit but maybe not the tag ref: record it for the checks.
        commit = _git(partial, "rev-parse", "HEAD")
        _git(partial, "tag", "-f", request.version, commit)
        with (partial / ".git" / "info" / "exclude").open("a") as exclude:
            # bazel's output base (run_in_docker.sh: TEST_TMPDIR=.cache) and its convenience symlinks,
            # bazel-<directory name> included, which upstream's .gitignore does not list.
            exclude.write(f"\n/{BAZEL_CACHE_DIR}/\n/bazel-*\n")
        partial.rename(source)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return source


def apply_patches(request: BuildRequest, source: Path, series: Path, say: Progress = _say) -> str:
    """Apply the series to the pristine source; return the series' sha256 for the image label."""
    digest = pack.patch_series_sha256(series)
    module = _use_patch_module(request)
    if module is not None:
        say(f"applying {series} with tfs-traffic's patch code")
        module.apply(source, request.version, request.patches_dir)
    else:
        # --patch-with git: each patch with git apply.
        patches = pack.series_patches(series)
        say(f"applying {len(patches)} patch(es) from {series} with git apply")
        for patch in patches:
            out = subprocess.run(
                ["git", "-C", str(source), "apply", "--whitespace=nowarn", str(patch.resolve())],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise ToolError(f"{patch.name} does not apply to {request.version}: {_last_line(out.stderr)}")
    (source / ".git" / STATE_FILE).write_text(_worktree_tree(source) + "\n")
    return digest


def _pull_devel_image(request: BuildRequest, say: Progress = _say) -> None:
    say(f"pulling the devel image {request.devel}")
    pulled = subprocess.run(["docker", "pull", request.devel], stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if pulled.returncode == 0:
        return
    present = subprocess.run(["docker", "image", "inspect", request.devel], capture_output=True, check=False)
    if present.returncode == 0:
        say(f"could not pull {request.devel}; building with the local copy")
        return
    raise ToolError(f"cannot pull the devel image {request.devel}: {_last_line(pulled.stderr)}")


def bazel_command(request: BuildRequest, source: Path) -> list[str]:
    """The build command, wrapped in `script` when there is no terminal for `docker run -it`."""
    bazel = ["bazel", "build", "--config=release", *request.bazel_options, BAZEL_TARGET]
    if request.build_with == "bazel":
        return bazel
    cmd = [str(source / "tools" / "run_in_docker.sh"), "-d", request.devel, *bazel]
    if sys.stdin.isatty():
        return cmd
    return ["script", "-qec", shlex.join(cmd), "/dev/null"]


def build_binary(request: BuildRequest, source: Path, say: Progress = _say) -> Path:
    """Run bazel; return the binary it left in bazel-bin."""
    if request.build_with == "docker":
        if not (source / "tools" / "run_in_docker.sh").is_file():
            raise ToolError(f"{source} has no tools/run_in_docker.sh: is it a TF Serving checkout?")
        _pull_devel_image(request, say)
    cmd = bazel_command(request, source)
    where = "locally" if request.build_with == "bazel" else f"in {request.devel}"
    say(f"building {BAZEL_TARGET} {where}: {shlex.join(cmd)}")
    sys.stderr.flush()
    try:
        done = subprocess.run(cmd, cwd=source, stdout=sys.stderr, check=False)
    except OSError as e:
        raise ToolError(f"cannot run {cmd[0]}: {e.strerror or e}") from None
    if done.returncode != 0:
        raise ToolError(f"bazel build {where} failed (exit {done.returncode}); its output is above")
    binary = source / BINARY_RELPATH
    if not binary.is_file():
        raise ToolError(f"bazel finished but left no binary at {binary}")
    return binary


def build_server(request: BuildRequest, say: Progress = _say) -> pack.BuildResult:
    """The whole pipeline: preflight, fetch, patch, bazel, pack (and push)."""
    validate(request)
    preflight(request)
    series = series_dir(request)
    source = fetch(request, say)
    revision = _git(source, "rev-parse", "HEAD")
    patches_sha256 = apply_patches(request, source, series, say)
    binary = build_binary(request, source, say)
    say(f"packing {binary} into {request.tag}")
    spec = pack.ServerImageSpec(
        base=request.base,
        tf_serving_version=request.version,
        patches_sha256=patches_sha256,
        source_revision=revision,
        ca_certificates=request.ca_certificates,
        ca_bundle=request.ca_bundle,
    )
    return pack.build_server_image(binary, request.tag, spec, push_image=request.push)
