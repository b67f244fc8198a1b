"""Apply the per-version traffic patches to a TF Serving source tree.

The series live in the repository's top-level `patches/<series>/` (one `series` file naming the
release tags it applies to, and `NNNN-*.patch` files in `git format-patch` form). That directory is
the only copy: the package reaches it through the `tfs_traffic/patches` symlink, which an editable
install reads in place and a wheel build copies (package data).

A tree is matched to a series by its release (`_VERSION` in the pip package's setup.py, or
`--version`). Before touching anything the tree must be clean (git) and not patched already, and
the whole series must apply without fuzz; a git checkout is patched with `git apply`, anything
else with `patch -p1`.
"""

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tfs_traffic.errors import ToolError, UsageError

SETUP_PY = "tensorflow_serving/tools/pip_package/setup.py"
# A tree that has this file carries the metrics unit the series' first patch adds.
MARKER = "tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"
MARKER_INCLUDE = '#include "tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"'

_VERSION_LINE = re.compile(r"""^_VERSION\s*=\s*['"]([^'"]+)['"]""", re.M)
_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")
_APPLIES = re.compile(r"^#\s*Applies to:\s*(.*)$", re.I)
_TOUCHED = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.M)


@dataclass(frozen=True)
class Series:
    """One patch series: its directory, its patches in order and the releases it applies to."""

    name: str
    path: Path
    patches: tuple[Path, ...]
    applies_to: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """What `check` or `apply` did, for the command to report."""

    version: str
    series: Series
    reason: str  # why this series: its "Applies to" line names the release, and where the release came from
    method: str  # "git apply" or "patch -p1"
    files: tuple[str, ...]


def default_patches_dir() -> Path:
    """The packaged series (the repository's patches/ through the tfs_traffic/patches/releases symlink)."""
    return Path(str(resources.files("tfs_traffic.patches") / "releases"))


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def load_series(patches_dir: Path | None = None) -> list[Series]:
    """Every series under `patches_dir`, read from their `series` files."""
    root = patches_dir or default_patches_dir()
    if not root.is_dir():
        raise ToolError(f"patch series not found at {root} (reinstall tfs-traffic)")
    found = []
    for series_file in sorted(root.glob("*/series")):
        names: list[str] = []
        applies: list[str] = []
        for line in series_file.read_text().splitlines():
            line = line.strip()
            if match := _APPLIES.match(line):
                applies.extend(match.group(1).split())
            elif line and not line.startswith("#"):
                names.append(line)
        patches = tuple(series_file.parent / name for name in names)
        missing = [p.name for p in patches if not p.is_file()]
        if missing or not patches or not applies:
            raise ToolError(f"{series_file}: broken series file (missing: {missing or 'patches or Applies to'})")
        found.append(Series(series_file.parent.name, series_file.parent, patches, tuple(applies)))
    if not found:
        raise ToolError(f"no patch series under {root}")
    claimed: dict[str, str] = {}
    for series in found:
        for release in series.applies_to:
            if release in claimed:
                raise ToolError(f"{root}: release {release} is listed by series {claimed[release]} and {series.name}")
            claimed[release] = series.name
    return found


def series_for(version: str, all_series: list[Series]) -> Series:
    """The series that applies to release `version`, or a UsageError naming what exists."""
    for series in all_series:
        if version in series.applies_to:
            return series
    releases = sorted({v for s in all_series for v in s.applies_to}, key=version_key)
    raise UsageError(
        f"no patch series for TF Serving {version}; series exist for releases {releases[0]} to {releases[-1]} "
        f"(see patches/README.md); if your tree is based on one of them, pass --version"
    )


def detect_version(source: Path) -> str:
    """The release a TF Serving tree is, from `_VERSION` in its pip package's setup.py."""
    setup = source / SETUP_PY
    if not setup.is_file():
        raise UsageError(f"{source} is not a TF Serving source tree: {SETUP_PY} not found")
    match = _VERSION_LINE.search(setup.read_text(errors="replace"))
    if not match:
        raise UsageError(f"cannot find _VERSION in {setup}; pass --version")
    return match.group(1)


def _git(source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, check=False)


def is_git_checkout(source: Path) -> bool:
    """Whether `source` is the top of a git work tree (then `git apply` patches it)."""
    if shutil.which("git") is None:
        return False
    top = _git(source, "rev-parse", "--show-toplevel")
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == source.resolve()


def touched_files(series: Series) -> list[str]:
    """Paths the series creates or modifies, in patch order, without repeats."""
    paths: list[str] = []
    for patch in series.patches:
        for _, path in _TOUCHED.findall(patch.read_text()):
            if path not in paths:
                paths.append(path)
    return paths


def _already_patched(source: Path, series: Series) -> str | None:
    if (source / MARKER).exists():
        return f"{MARKER} exists"
    for path in touched_files(series):
        file = source / path
        if file.is_file() and MARKER_INCLUDE in file.read_text(errors="replace"):
            return f"{path} already includes model_traffic_metrics.h"
    return None


def _dry_run_patch(source: Path, series: Series) -> None:
    """Apply the series with `patch -p1 -F0` to copies of the files it touches; raise if any hunk fails."""
    if shutil.which("patch") is None:
        raise ToolError(f"{source} is not a git checkout and `patch` is not installed")
    with tempfile.TemporaryDirectory(prefix="tfs-traffic-patch-") as tmp:
        for path in touched_files(series):
            if (source / path).is_file():
                (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / path, Path(tmp) / path)
        for patch in series.patches:
            _run_patch(Path(tmp), patch)


def _run_patch(directory: Path, patch: Path) -> None:
    with patch.open("rb") as stdin:
        result = subprocess.run(
            ["patch", "-p1", "-F0", "-N", "--no-backup-if-mismatch", "-s", "-d", str(directory)],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        raise ToolError(f"{patch.name} does not apply cleanly: {detail[0] if detail else 'patch failed'}")


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed"


def _prepare(source: Path, version: str | None, patches_dir: Path | None) -> tuple[str, Series, str, bool]:
    """All refusals, in the order a user would want to hear them; returns (version, series, reason, is_git)."""
    source = source.resolve()
    if not source.is_dir():
        raise UsageError(f"--source {source}: no such directory")
    if version is not None:
        if not _RELEASE.match(version):
            raise UsageError(f"--version {version!r}: expected a release such as 2.20.0")
        if not (source / "tensorflow_serving").is_dir():
            raise UsageError(f"{source} is not a TF Serving source tree: no tensorflow_serving/ directory")
    release = version or detect_version(source)
    series = series_for(release, load_series(patches_dir))
    origin = "given by --version" if version else f"from _VERSION in {SETUP_PY}"
    why = f'the "Applies to" line of patches/{series.name}/series lists {release} ({origin})'
    if reason := _already_patched(source, series):
        raise ToolError(f"{source} is already patched ({reason})")
    git = is_git_checkout(source)
    if git:
        status = _git(source, "status", "--porcelain", "--untracked-files=no")
        if status.returncode != 0:
            raise ToolError(f"git status failed in {source}: {_first_line(status.stderr)}")
        dirty = status.stdout.splitlines()
        if dirty:
            raise ToolError(
                f"{source} has uncommitted changes ({len(dirty)} changed, e.g. {dirty[0][3:]}); "
                "commit or stash them first"
            )
    return release, series, why, git


def check(source: Path, version: str | None = None, patches_dir: Path | None = None) -> Outcome:
    """Dry run: refuse what `apply` would refuse, and prove the whole series applies without fuzz."""
    release, series, reason, git = _prepare(source, version, patches_dir)
    if git:
        result = _git(source.resolve(), "apply", "--check", *map(str, series.patches))
        if result.returncode != 0:
            raise ToolError(f"series {series.name} does not apply to {source}: {_first_line(result.stderr)}")
    else:
        _dry_run_patch(source.resolve(), series)
    return Outcome(release, series, reason, "git apply" if git else "patch -p1", tuple(touched_files(series)))


def apply(source: Path, version: str | None = None, patches_dir: Path | None = None) -> Outcome:
    """Patch the tree: everything `check` checks first, then `git apply` (or `patch -p1`)."""
    outcome = check(source, version, patches_dir)
    root = source.resolve()
    if outcome.method == "git apply":
        result = _git(root, "apply", *map(str, outcome.series.patches))
        if result.returncode != 0:
            raise ToolError(f"git apply failed in {root}: {_first_line(result.stderr)}")
    else:
        for patch in outcome.series.patches:
            _run_patch(root, patch)
    return outcome
