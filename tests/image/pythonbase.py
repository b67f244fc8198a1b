"""A local stand-in for gcr.io/distroless/python3-debian12, built from this Debian 12 host's CPython 3.11.

No registry can be pulled here, so the sidecar image is built on a base made of what distroless takes
from the same Debian release: /usr/bin/python3 (Debian's 3.11), its standard library (without tests,
tkinter, idle, bytecode and the static library), the shared libraries the interpreter and its extension
modules link against all of libc6's libraries and
libstdc++/libgcc_s (distroless/cc has them; grpcio needs librt and libstdc++), and a 1777 /tmp.
No shell, no pip. FROM scratch, one COPY, through the Docker API like the real build.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
SKIPPED = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "__pycache__"}
SKIPPED_PREFIXES = ("config-3.11", "site-packages", "dist-packages")
EXTRA_LIBS = ("libstdc++.so.6", "libgcc_s.so.1")
ENV_PATH = "/usr/local/bin:/usr/bin:/bin"


def _libraries(binaries: list[Path]) -> set[Path]:
    """Every shared library `binaries` load (ldd's resolved paths), plus the loader itself."""
    found: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        for match in re.finditer(r"(?:=>\s*)?(/\S+)\s+\(0x", out):
            found.add(Path(match.group(1)))
    # glibc's libraries as Debian's libc6 installs them (distroless has that package whole): librt etc.
    listed = subprocess.run(["dpkg", "-L", "libc6"], capture_output=True, text=True).stdout.split()
    found.update(Path(p) for p in listed if re.fullmatch(r"/(usr/)?lib/[^/]+-linux-gnu/[^/]+\.so[.0-9]*", p))
    for name in EXTRA_LIBS:
        hits = sorted(Path("/usr/lib").glob(f"*-linux-gnu/{name}"))
        if hits:
            found.add(hits[0])
    return found


def _stdlib_files() -> list[Path]:
    files = []
    for path in sorted(STDLIB.rglob("*")):
        parts = path.relative_to(STDLIB).parts
        if any(part in SKIPPED for part in parts) or parts[0].startswith(SKIPPED_PREFIXES):
            continue
        if path.is_file() and not path.name.endswith(".pyc"):
            files.append(path)
    return files


def _add(tar: tarfile.TarFile, name: str, source: Path | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, 0
    if source is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        return
    data = source.read_bytes()  # resolves symlinks: the image gets plain files
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_python_base(client: Any, tag: str) -> dict[str, int]:
    """Build the base image as `tag`; return {'bytes': size of its files, 'files': count}."""
    if not (PYTHON.is_file() and (STDLIB / "os.py").is_file()):
        raise RuntimeError(f"the stand-in base needs Debian 12's CPython 3.11 ({PYTHON}, {STDLIB}): a Debian 12 host")
    stdlib = _stdlib_files()
    extension_modules = [p for p in stdlib if p.suffix == ".so"]
    libraries = _libraries([PYTHON, *extension_modules])
    entries: dict[str, Path] = {"/usr/bin/python3": PYTHON}
    entries.update({str(p): p for p in stdlib})
    entries.update({str(p): p for p in libraries})
    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dockerfile = f"FROM scratch\nCOPY rootfs/ /\nENV PATH={ENV_PATH}\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        directories = {"/tmp"}
        for path in entries:
            parent = Path(path).parent
            while str(parent) != "/":
                directories.add(str(parent))
                parent = parent.parent
        _add(tar, "rootfs", None, 0o755)
        for directory in sorted(directories):
            _add(tar, f"rootfs{directory}", None, 0o1777 if directory == "/tmp" else 0o755)
        for path, source in sorted(entries.items()):
            executable = path == "/usr/bin/python3" or ".so" in Path(path).name
            _add(tar, f"rootfs{path}", source, 0o755 if executable else 0o644)
            total += source.stat().st_size
    buffer.seek(0)
    for chunk in client.build(fileobj=buffer, custom_context=True, tag=tag, decode=True, rm=True):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
    return {"bytes": total, "files": len(entries)}
