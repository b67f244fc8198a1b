"""The sidecar image's build context: its run-time packages unpacked into a site-packages directory.

The sidecar runs on a distroless Python base, which has neither pip nor a shell, and Podman's Docker API
cannot execute `RUN` steps on some hosts. So nothing is installed *in* the image: the build host's pip
installs binary wheels for the image's interpreter (`--target --platform --python-version --abi
--only-binary=:all:`, no code of the packages runs) into `rootfs/opt/tfs-traffic/site-packages`, and
the Dockerfile only COPYs rootfs/ and points PYTHONPATH there. This works the same with Docker, BuildKit and
Podman, and for another architecture than the build host's.

What goes in is exactly what `python -m tfs_traffic.sidecar` imports: grpcio, protobuf,
prometheus-client, hpack and uvloop (with the dependencies pip resolves for them), tfs-traffic built from the
checkout, and tensorflow-serving-api's protobuf-only config protos (`--no-deps`: its metadata requires
TensorFlow; its `apis/` package imports TensorFlow and is removed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tfs_traffic.errors import ToolError, UsageError

# The sidecar's run-time dependencies (distribution names in pyproject.toml, whose specifiers are used).
SIDECAR_REQUIREMENTS = ("grpcio", "protobuf", "prometheus-client", "hpack", "uvloop")
# The same version the Makefile installs for the tests (tests check the two agree).
TFS_API_VERSION = "2.21.0"
# The default base (sidecar/Dockerfile) is Debian 12's CPython 3.11, built against glibc 2.36.
PYTHON_VERSION = "3.11"
GLIBC_MINOR = 36
ARCHES = ("x86_64", "aarch64")
# Where the image keeps what the context's rootfs/ holds (the Dockerfile: COPY rootfs/ /).
SITE_PACKAGES = "opt/tfs-traffic/site-packages"
EXAMPLE_CONFIG = "etc/tfs-traffic/example.config"
# Parts of installed packages the sidecar never loads: TensorFlow-dependent stubs, console scripts, bytecode.
PRUNED = ("tensorflow_serving/apis", "bin")
# Copied from the checkout into the scratch tree the tfs-traffic wheel is built from.
SOURCE_FILES = ("pyproject.toml", "README.md")

Progress = Callable[[str], None]


@dataclass
class SidecarContext:
    """A prepared build context directory, and what pip put into it."""

    directory: Path
    site_packages: Path
    packages: dict[str, str]  # distribution name -> version
    size_bytes: int


def docker_arch(arch: str) -> str:
    """Map the Docker API's architecture names (amd64, arm64) to the wheel platform tags' (x86_64, aarch64)."""
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def requirements(source: Path) -> list[str]:
    """The sidecar's requirements with the version specifiers the checkout's pyproject.toml gives them."""
    try:
        project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"{source}/pyproject.toml: not a tfs-traffic checkout ({e})") from None
    by_name: dict[str, str] = {}
    for requirement in project.get("dependencies", []):
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match:
            by_name[_normalize(match.group(1))] = requirement.split(";")[0].strip()
    missing = [name for name in SIDECAR_REQUIREMENTS if _normalize(name) not in by_name]
    if missing:
        raise UsageError(f"{source}/pyproject.toml does not list {', '.join(missing)} as dependencies")
    return [by_name[_normalize(name)] for name in SIDECAR_REQUIREMENTS]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(args: list[str], what: str) -> None:
    """Run the build host's pip (the one of the interpreter running tfs-traffic)."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith("ERROR:")), lines[-1] if lines else "")
        if "No module named pip" in done.stderr:
            detail = f"no pip for {sys.executable}"
        raise ToolError(f"{what} failed: {detail}")


def build_tfs_traffic_wheel(source: Path, wheelhouse: Path) -> Path:
    """Build tfs-traffic's wheel from the checkout, from a scratch copy (setuptools leaves build/ behind).

    Without build isolation when this interpreter has setuptools (as a Python 3.11 venv does), so no
    index is needed; otherwise pip fetches the build backend as usual.
    """
    package = source / "tfs_traffic"
    if not package.is_dir():
        raise UsageError(f"{source}: no tfs_traffic/ package here; pass the tfs-traffic checkout as --source")
    with tempfile.TemporaryDirectory(prefix="tfs-traffic-src-") as scratch:
        for name in SOURCE_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, Path(scratch) / name)
        shutil.copytree(package, Path(scratch) / "tfs_traffic", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        args = ["wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheelhouse)]
        try:
            import setuptools  # noqa: F401

            args.append("--no-build-isolation")
        except ImportError:
            pass
        _pip([*args, scratch], "building the tfs-traffic wheel")
    wheels = sorted(wheelhouse.glob("tfs_traffic-*.whl"))
    if not wheels:
        raise ToolError(f"pip built no tfs-traffic wheel in {wheelhouse}")
    return wheels[-1]


def manylinux_platforms(arch: str, glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """Every manylinux tag a glibc 2.<minor> system runs: pip does not expand one --platform itself."""
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, 4, -1)]
    platforms.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        platforms += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return platforms


def install_target(target: Path, specs: list[str], arch: str, wheels: Path | None = None, deps: bool = True) -> None:
    """`pip install --target` binary wheels for the image's CPython and platform, not the host's."""
    if arch not in ARCHES:
        raise UsageError(f"unsupported architecture {arch!r} (one of {', '.join(ARCHES)})")
    abi = "cp" + PYTHON_VERSION.replace(".", "")
    args = ["install", "--quiet", "--target", str(target), "--upgrade", "--no-compile", "--no-warn-script-location"]
    args += ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION]
    args += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
    for platform in manylinux_platforms(arch):
        args += ["--platform", platform]
    if wheels is not None:
        args += ["--no-index", "--find-links", str(wheels)]
    if not deps:
        args.append("--no-deps")
    _pip([*args, *specs], "installing the sidecar's packages for the image")


def _prune(site: Path) -> None:
    for relative in PRUNED:
        shutil.rmtree(site / relative, ignore_errors=True)
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def installed_packages(site: Path) -> dict[str, str]:
    """Distribution name -> version, from the *.dist-info directories in `site`."""
    packages = {}
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        packages[_normalize(name)] = version
    return packages


def tree_size(directory: Path) -> int:
    """Bytes of the regular files under `directory` (what a layer holding it adds, before compression)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def with_labels(dockerfile: str, labels: dict[str, str]) -> str:
    """The Dockerfile with one LABEL instruction appended (one build step, whatever the label count)."""
    pairs = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    return dockerfile.rstrip("\n") + f"\nLABEL {pairs}\n"


def dockerfile_path(source: Path) -> Path:
    path = source / "sidecar" / "Dockerfile"
    if not path.is_file():
        raise UsageError(
            f"no sidecar/Dockerfile in {source.resolve()}: run from the tfs-traffic checkout or pass --source"
        )
    return path


def default_base(dockerfile: str) -> str | None:
    """The Dockerfile's `ARG BASE=...` default: the base used when --base is not given."""
    match = re.search(r"^ARG\s+BASE=(\S+)\s*$", dockerfile, re.MULTILINE)
    return match.group(1) if match else None


def prepare_context(
    source: Path,
    out: Path,
    arch: str = "x86_64",
    wheels: Path | None = None,
    progress: Progress | None = None,
) -> SidecarContext:
    """Fill `out` with the sidecar's build context: the Dockerfile and rootfs/ (site-packages, example.config).

    `source` is the tfs-traffic checkout (sidecar/ and the tfs_traffic package are taken from it);
    `wheels`, when given, is the only place pip looks for wheels (offline builds).
    """
    say = progress or (lambda line: None)
    dockerfile = dockerfile_path(source)
    if wheels is not None and not wheels.is_dir():
        raise UsageError(f"--wheels {wheels}: no such directory")
    specs = requirements(source)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "rootfs", ignore_errors=True)
    site = out / "rootfs" / SITE_PACKAGES
    shutil.copy2(dockerfile, out / "Dockerfile")
    example = source / "sidecar" / "example.config"
    if example.is_file():
        (out / "rootfs" / EXAMPLE_CONFIG).parent.mkdir(parents=True)
        shutil.copy2(example, out / "rootfs" / EXAMPLE_CONFIG)
    with tempfile.TemporaryDirectory(prefix="tfs-traffic-wheels-") as wheelhouse:
        say(f"installing {', '.join(specs)} for CPython {PYTHON_VERSION} on {arch} into /{SITE_PACKAGES}")
        install_target(site, specs, arch, wheels)
        say(f"building the tfs-traffic wheel from {source.resolve()}")
        own = build_tfs_traffic_wheel(source, Path(wheelhouse))
        say(f"installing {own.name} and tensorflow-serving-api=={TFS_API_VERSION} (--no-deps)")
        install_target(site, [str(own), f"tensorflow-serving-api=={TFS_API_VERSION}"], arch, wheels, deps=False)
    _prune(site)
    if (site / "tensorflow").exists():
        raise ToolError("TensorFlow ended up in the sidecar's site-packages; it must not be a dependency")
    packages = installed_packages(site)
    size = tree_size(site)
    say(
        f"site-packages: {size / 1e6:.1f} MB, "
        + ", ".join(f"{name} {version}" for name, version in sorted(packages.items()))
    )
    return SidecarContext(directory=out, site_packages=site, packages=packages, size_bytes=size)


def context_files(context: Path) -> list[tuple[str, Path]]:
    """(name in the build context, file) for every file and directory under `context`, parents first."""
    entries = []
    for root, dirs, files in os.walk(context):
        dirs.sort()
        relative = Path(root).relative_to(context)
        for name in [*dirs, *sorted(files)]:
            entries.append(((relative / name).as_posix(), Path(root) / name))
    return entries
