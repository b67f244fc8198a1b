"""Offline wheels for tests: repack distributions installed in this venv as .whl files.

An installed distribution is a wheel unpacked (its files are listed in dist-info/RECORD, its tags in
dist-info/WHEEL), so zipping those files back gives a wheel pip installs like the original. Tests use
them with `--wheels DIR` (pip --no-index --find-links) so that image builds need no package index.
"""

from __future__ import annotations

import re
import zipfile
from importlib import metadata
from pathlib import Path


def _wheel_tag(dist: metadata.Distribution) -> str:
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    if not tags:
        raise ValueError(f"{dist.metadata['Name']}: no Tag in WHEEL")
    interpreters, abis, platforms = (sorted({tag.split("-")[i] for tag in tags}) for i in range(3))
    return f"{'.'.join(interpreters)}-{'.'.join(abis)}-{'.'.join(platforms)}"


def repack(name: str, out: Path) -> Path:
    """Write the installed distribution `name` as a wheel into `out`; return its path."""
    dist = metadata.distribution(name)
    stem = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    wheel = out / f"{stem}-{dist.version}-{_wheel_tag(dist)}.whl"
    root = Path(str(dist.locate_file("")))
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in dist.files or []:
            relative = file.as_posix()
            if relative.startswith("..") or "__pycache__" in relative or relative.endswith(".pyc"):
                continue  # console scripts (installed outside site-packages) and bytecode
            path = root / relative
            if path.is_file():
                archive.write(path, relative)
    return wheel


def repack_closure(names: list[str], out: Path) -> list[Path]:
    """Repack `names` and every installed distribution they require (markers for this interpreter)."""
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    wheels = []
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        wheels.append(repack(name, out))
        for requirement in metadata.requires(name) or []:
            requirement_name, _, marker = requirement.partition(";")
            if "extra ==" in marker:
                continue
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement_name)
            if match:
                try:
                    metadata.distribution(match.group(1))
                except metadata.PackageNotFoundError:
                    continue  # a marker excluded it for this interpreter: pip will skip it as well
                todo.append(match.group(1))
    return wheels
