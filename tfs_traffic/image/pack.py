"""Pack a tensorflow_model_server binary into a runtime image, and build the sidecar image.

The build goes through the Docker Engine API (the `docker` SDK's low-level `APIClient`), so it works
the same against Docker and against Podman's Docker-compatible service (`DOCKER_HOST`). The build
context is a tar file written here, with every file's mode set in the tar: the Dockerfile needs no
`RUN` step (which Podman's API cannot run on some hosts) unless `--ca-certificates apt` asks for one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import re
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

import jinja2

from tfs_traffic import __version__
from tfs_traffic.errors import ToolError, UsageError

DEFAULT_BASE = "ubuntu:22.04"
# A numeric uid/gid (no passwd entry needed): Kubernetes' runAsNonRoot can verify it.
RUNTIME_UID = 10001
MODEL_BASE_PATH = "/models"
MONITORING_CONFIG_PATH = "/etc/tfs-traffic/monitoring.config"
ENTRYPOINT_PATH = "/usr/bin/tf_serving_entrypoint.sh"
BINARY_PATH = "/usr/bin/tensorflow_model_server"
CA_BUNDLE_PATH = "/etc/ssl/certs/ca-certificates.crt"
CA_MODES = ("bundle", "apt")
# Label keys (OCI annotations and ours). The patch series hash has no OCI key, so it gets our own.
LABEL_VERSION = "org.opencontainers.image.version"
LABEL_TFS_VERSION = "io.github.tfs-traffic.tf-serving-version"
LABEL_PATCHES_SHA256 = "io.github.tfs-traffic.patch-series-sha256"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_PYTHON_PACKAGES = "io.github.tfs-traffic.python-packages"
BUILD_TIMEOUT_SECONDS = 3600
_LABEL_KEY = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")

Progress = Callable[[str], None]


def progress_line(line: str) -> None:
    """The default progress sink: stderr, so stdout keeps only the scriptable result."""
    print(line, file=sys.stderr, flush=True)


_stderr = progress_line


@dataclass
class ServerImageSpec:
    """What goes into a runtime image besides the binary."""

    base: str = DEFAULT_BASE
    tf_serving_version: str | None = None
    patches_sha256: str | None = None
    source_revision: str | None = None
    ca_certificates: str = "bundle"
    ca_bundle: Path | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    """The outcome printed last: the image id, and the registry digest after a push."""

    image_id: str
    tag: str
    digest: str | None = None


def patch_series_sha256(series_dir: Path) -> str:
    """sha256 of the patch files concatenated in `series` order.

    The same as `cat $(sed 's|^|DIR/|' DIR/series) | sha256sum` for a series file without comments,
    so anyone can check an image's label against a checkout of patches/.
    """
    digest = hashlib.sha256()
    for patch in series_patches(series_dir):
        digest.update(patch.read_bytes())
    return digest.hexdigest()


def series_patches(series_dir: Path) -> list[Path]:
    """The patch files named by `series_dir/series` (quilt format: one name a line, # comments)."""
    series = series_dir / "series"
    try:
        lines = series.read_text().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read the patch series {series}: {e.strerror or e}") from None
    patches = []
    for line in lines:
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        path = series_dir / name.split()[0]
        if not path.is_file():
            raise UsageError(f"{series} names {name}, which is not a file in {series_dir}")
        patches.append(path)
    if not patches:
        raise UsageError(f"{series} names no patch")
    return patches


def image_labels(spec: ServerImageSpec, created: dt.datetime | None = None) -> dict[str, str]:
    """OCI labels plus ours; unknown values are left out rather than written as 'unknown'."""
    labels = {
        "org.opencontainers.image.title": "tensorflow_model_server",
        "org.opencontainers.image.description": "TensorFlow Serving with per-version call metrics (tfs-traffic)",
        "org.opencontainers.image.source": "https://github.com/tensorflow/serving",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.created": _created(created),
        "org.opencontainers.image.base.name": spec.base,
        "io.github.tfs-traffic.version": __version__,
    }
    if spec.tf_serving_version:
        labels[LABEL_VERSION] = spec.tf_serving_version
        labels[LABEL_TFS_VERSION] = spec.tf_serving_version
    if spec.source_revision:
        labels[LABEL_REVISION] = spec.source_revision
    if spec.patches_sha256:
        labels[LABEL_PATCHES_SHA256] = spec.patches_sha256
    labels.update(spec.extra_labels)
    return _checked_labels(labels)


def _checked_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise UsageError(f"bad label key {key!r}: use lower-case letters, digits, dots and dashes")
        if "\n" in value or "\r" in value:
            raise UsageError(f"label {key} has a line break in its value")
    return labels


def _created(created: dt.datetime | None = None) -> str:
    created = created or dt.datetime.now(dt.UTC)
    return created.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sidecar_labels(base: str | None, packages: Mapping[str, str], created: dt.datetime | None = None) -> dict[str, str]:
    """OCI labels of the sidecar image; the Python packages it carries are listed for audits."""
    labels = {
        "org.opencontainers.image.title": "tfs-traffic-sidecar",
        "org.opencontainers.image.description": "Per-version call metrics for a stock TF Serving (tfs-traffic sidecar)",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.created": _created(created),
        "io.github.tfs-traffic.version": __version__,
        LABEL_PYTHON_PACKAGES: " ".join(f"{name}=={version}" for name, version in sorted(packages.items())),
    }
    if base:
        labels["org.opencontainers.image.base.name"] = base
    return _checked_labels(labels)


def _template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("tfs_traffic.image", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_dockerfile(spec: ServerImageSpec, labels: Mapping[str, str], files: Iterable[tuple[str, int]] = ()) -> str:
    """The runtime image's Dockerfile (COPY/ENV/USER/ENTRYPOINT only, unless ca_certificates is apt)."""
    if spec.ca_certificates not in CA_MODES:
        raise UsageError(f"--ca-certificates must be one of {', '.join(CA_MODES)}")
    if not spec.base or any(c.isspace() for c in spec.base):
        raise UsageError(f"bad base image reference {spec.base!r}")
    return (
        _template_env()
        .get_template("Dockerfile.j2")
        .render(
            tool_version=__version__,
            base=spec.base,
            ca_certificates=spec.ca_certificates,
            labels=labels,
            uid=RUNTIME_UID,
            model_base_path=MODEL_BASE_PATH,
            monitoring_config_path=MONITORING_CONFIG_PATH,
            entrypoint_path=ENTRYPOINT_PATH,
            files=list(files),
        )
    )


def _resource(name: str) -> bytes:
    return (resources.files("tfs_traffic.image") / "templates" / name).read_bytes()


def default_ca_bundle() -> Path:
    """Mozilla's CA list as shipped by certifi (a dependency of requests and docker)."""
    try:
        import certifi
    except ImportError:
        raise ToolError("no CA bundle: install certifi, or pass --ca-bundle FILE or --ca-certificates apt") from None
    return Path(certifi.where())


def _read_ca_bundle(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read the CA bundle {path}: {e.strerror or e}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(f"{path} holds no PEM certificate")
    return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def _server_files(binary: Path, spec: ServerImageSpec) -> list[tuple[str, int, Path | bytes]]:
    """(path in the image, mode, content or file) for every file the runtime image adds."""
    files: list[tuple[str, int, Path | bytes]] = [
        (BINARY_PATH, 0o755, binary),
        (ENTRYPOINT_PATH, 0o755, _resource("tf_serving_entrypoint.sh")),
        (MONITORING_CONFIG_PATH, 0o644, _resource("monitoring.config")),
    ]
    if spec.ca_certificates == "bundle":
        files.append((CA_BUNDLE_PATH, 0o644, _read_ca_bundle(spec.ca_bundle or default_ca_bundle())))
    return files


def write_server_context(binary: Path, spec: ServerImageSpec, out: IO[bytes]) -> str:
    """Write the build context as a tar to `out`; return the Dockerfile it holds.

    Every file goes under rootfs/ at its path in the image, with its mode set here (0755 for the
    binary and the entrypoint, 0644 for data, owned by root), so one COPY adds them all as one layer.
    """
    if not binary.is_file():
        raise UsageError(f"--binary {binary}: no such file")
    files = _server_files(binary, spec)
    labels = image_labels(spec)
    dockerfile = render_dockerfile(spec, labels, [(path, mode) for path, mode, _ in files])
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "Dockerfile", dockerfile.encode(), 0o644)
        directories = {"rootfs", f"rootfs{MODEL_BASE_PATH}"}
        for path, _, _ in files:
            parent = Path(path).parent
            while str(parent) != "/":
                directories.add(f"rootfs{parent}")
                parent = parent.parent
        for directory in sorted(directories):
            _add_dir(tar, directory)
        for path, mode, content in files:
            if isinstance(content, bytes):
                _add_bytes(tar, f"rootfs{path}", content, mode)
                continue
            info = tar.gettarinfo(str(content), arcname=f"rootfs{path}")
            info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime = mode, 0, 0, "", "", 0
            with content.open("rb") as handle:
                tar.addfile(info, handle)
    return dockerfile


def api_module_available() -> None:
    """Fail early, with the install command, when the docker SDK is missing."""
    try:
        import docker  # noqa: F401
    except ImportError:
        raise ToolError(
            "the image commands need the docker Python SDK: pip install 'tfs-traffic[image]' (or pip install docker)"
        ) from None


def api_client() -> Any:
    """A low-level Docker API client for DOCKER_HOST (Docker Engine or Podman's compatible service)."""
    api_module_available()
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.APIClient(version="auto", timeout=BUILD_TIMEOUT_SECONDS, **docker.utils.kwargs_from_env())
    except DockerException as e:
        raise ToolError(f"cannot reach the Docker API at {host} (is the daemon running?): {_first_line(e)}") from None
    return client


def _first_line(error: object) -> str:
    text = str(error).strip()
    # The SDK wraps connection errors several levels deep; the innermost reason is the useful part.
    match = re.search(r"\(Caused by [A-Za-z]+\([^,]*,?\s*'?(.*?)'?\)\)", text)
    if match:
        text = match.group(1) or text
    return " ".join(text.split()) or type(error).__name__


def stream_build(client: Any, progress: Progress = _stderr, **build_args: Any) -> str:
    """Run APIClient.build, show its output as progress lines, and return the image id."""
    from docker.errors import APIError, DockerException

    image_id: str | None = None
    last_stream = ""
    try:
        for chunk in client.build(decode=True, rm=True, forcerm=True, **build_args):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ToolError(f"image build failed: {_first_line(detail)}")
            if "stream" in chunk:
                for line in str(chunk["stream"]).splitlines():
                    if line.strip():
                        last_stream = line.strip()
                        progress(line.rstrip())
            elif "status" in chunk:  # a base image being pulled
                progress(" ".join(str(chunk.get(k, "")) for k in ("status", "id", "progress")).strip())
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
    except APIError as e:
        raise ToolError(f"image build failed: {_first_line(e.explanation or e)}") from None
    except DockerException as e:
        raise ToolError(f"image build failed: {_first_line(e)}") from None
    except OSError as e:
        raise ToolError(f"lost the connection to the Docker API during the build: {_first_line(e)}") from None
    if image_id is None:
        match = re.match(r"Successfully built ([0-9a-f]+)$", last_stream)
        tag = build_args.get("tag")
        if tag:
            image_id = str(client.inspect_image(tag)["Id"])
        elif match:
            image_id = match.group(1)
        else:
            raise ToolError("the build finished without reporting an image id")
    return image_id


def push(client: Any, tag: str, progress: Progress = _stderr) -> str:
    """Push `tag` with the daemon's credentials; return the registry digest (sha256:...)."""
    from docker.errors import DockerException

    repository, _, version = _split_tag(tag)
    digest: str | None = None
    try:
        for chunk in client.push(repository, tag=version, stream=True, decode=True):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ToolError(f"push of {tag} failed: {_first_line(detail)}")
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            status = str(chunk.get("status", "")).strip()
            if status:
                match = re.search(r"digest: (sha256:[0-9a-f]{64})", status)
                digest = digest or (match.group(1) if match else None)
                progress(" ".join(str(chunk.get(k, "")) for k in ("status", "id", "progress")).strip())
    except DockerException as e:
        raise ToolError(f"push of {tag} failed: {_first_line(e)}") from None
    if digest is None:
        for repo_digest in client.inspect_image(tag).get("RepoDigests") or []:
            if repo_digest.startswith(repository + "@"):
                digest = repo_digest.split("@", 1)[1]
    if digest is None:
        raise ToolError(f"push of {tag} reported no digest")
    return digest


def _split_tag(tag: str) -> tuple[str, str, str]:
    """'host:5000/repo/name:tag' -> ('host:5000/repo/name', ':', 'tag'); no tag means 'latest'."""
    if "@" in tag:
        raise UsageError(f"--tag {tag}: give a name:tag, not a digest")
    name, sep, version = tag.rpartition(":")
    if not sep or "/" in version:
        return tag, ":", "latest"
    return name, sep, version


def check_tag(tag: str) -> None:
    """Reject what no registry accepts before sending a large context."""
    repository, _, version = _split_tag(tag)
    if not re.fullmatch(r"[a-z0-9]+(?:[._/:-]+[a-z0-9]+)*", repository) or not re.fullmatch(
        r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", version
    ):
        raise UsageError(f"--tag {tag!r} is not a valid image reference (lower-case repository[:tag])")


def build_server_image(
    binary: Path,
    tag: str,
    spec: ServerImageSpec,
    push_image: bool = False,
    progress: Progress = _stderr,
    client: Any = None,
) -> BuildResult:
    """Build (and optionally push) the runtime image for `binary`; return its id and digest."""
    check_tag(tag)
    with tempfile.TemporaryFile(prefix="tfs-traffic-context-") as context:
        write_server_context(binary, spec, context)
        context.seek(0)
        client = client or api_client()
        progress(f"building {tag} from {spec.base} with {binary}")
        image_id = stream_build(client, progress, fileobj=context, custom_context=True, tag=tag)
    result = BuildResult(image_id=image_id, tag=tag)
    if push_image:
        result.digest = push(client, tag, progress)
    return result


def write_directory_context(directory: Path, out: IO[bytes]) -> None:
    """Tar the prepared build context `directory` to `out`, normalised for reproducible layers.

    Every entry is root-owned with mtime 0; directories and executables get 0755, other files 0644,
    whatever the build host's umask and user, so the image's files do not depend on who built it.
    """
    from tfs_traffic.image.sidecar_context import context_files

    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in context_files(directory):
            info = tar.gettarinfo(str(path), arcname=name)
            executable = info.isdir() or bool(info.mode & 0o111)
            info.mode = 0o755 if executable else 0o644
            info.uid, info.gid, info.uname, info.gname, info.mtime = 0, 0, "", "", 0
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)


def daemon_arch(client: Any) -> str:
    """The daemon's CPU architecture as wheel tags name it: a build without --platform targets it."""
    from docker.errors import DockerException

    from tfs_traffic.image.sidecar_context import docker_arch

    try:
        arch = str(client.version().get("Arch") or "amd64")
    except DockerException as e:
        raise ToolError(f"cannot reach the Docker API: {_first_line(e)}") from None
    return docker_arch(arch)


def build_sidecar_image(
    tag: str,
    source: Path,
    base: str | None = None,
    wheels: Path | None = None,
    push_image: bool = False,
    progress: Progress = _stderr,
    client: Any = None,
) -> BuildResult:
    """Prepare the sidecar's build context from the checkout `source`, build it and optionally push it.

    `base` overrides the Dockerfile's `ARG BASE` (a CPython 3.11 image with `python3` on PATH);
    `wheels` makes pip install from that directory only (offline builds).
    """
    from tfs_traffic.image import sidecar_context

    check_tag(tag)
    dockerfile = sidecar_context.dockerfile_path(source).read_text()
    if base is not None and (not base or any(c.isspace() for c in base)):
        raise UsageError(f"bad base image reference {base!r}")
    client = client or api_client()
    arch = daemon_arch(client)
    with tempfile.TemporaryDirectory(prefix="tfs-traffic-sidecar-") as scratch:
        prepared = sidecar_context.prepare_context(source, Path(scratch), arch=arch, wheels=wheels, progress=progress)
        effective_base = base or sidecar_context.default_base(dockerfile)
        labels = sidecar_labels(effective_base, prepared.packages)
        (prepared.directory / "Dockerfile").write_text(sidecar_context.with_labels(dockerfile, labels))
        with tempfile.TemporaryFile(prefix="tfs-traffic-context-") as context:
            write_directory_context(prepared.directory, context)
            context.seek(0)
            progress(f"building {tag} on {effective_base or 'the Dockerfile base'}")
            image_id = stream_build(
                client,
                progress,
                fileobj=context,
                custom_context=True,
                tag=tag,
                buildargs={"BASE": base} if base else None,
            )
    result = BuildResult(image_id=image_id, tag=tag)
    if push_image:
        result.digest = push(client, tag, progress)
    return result


def print_result(result: BuildResult, out: IO[str] | None = None) -> None:
    """The scriptable part of the output: image id, then the pushed digest (repository@sha256:...)."""
    out = out or sys.stdout
    print(result.image_id, file=out)
    if result.digest:
        print(f"{_split_tag(result.tag)[0]}@{result.digest}", file=out)
    out.flush()
