"""`tfs-traffic patch apply|check` on source trees built here, and on a real one when TF_SERVING_SRC is set.

No upstream code may live in this repository, so the trees are synthesised from the series' own
patches: every line a hunk expects (context and removed lines) is placed at the line number the
hunk names, following the series patch by patch, and all other lines are filler. `git apply` and
`patch -p1 -F0` accept such a tree exactly when they would accept the real release; the filler
makes any hunk that lands elsewhere fail.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tfs_traffic import cli
from tfs_traffic.errors import ToolError, UsageError
from tfs_traffic.patches import series as patch_series

ROOT = Path(__file__).resolve().parents[2]
PATCHES = ROOT / "patches"

_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _hunks(patch_text: str) -> list[tuple[str, int, list[str]]]:
    """(path, old start, hunk lines with their ' ', '-', '+' prefixes) for every hunk of a patch."""
    hunks: list[tuple[str, int, list[str]]] = []
    path = ""
    lines = patch_text.splitlines()
    i = 0
    while i < len(lines):
        if match := _FILE.match(lines[i]):
            path = match.group(2)
        elif match := _HUNK.match(lines[i]):
            old_left = int(match.group(2) or 1) if match.group(2) != "0" else 0
            new_left = int(match.group(4) or 1) if match.group(4) != "0" else 0
            body = []
            i += 1
            while old_left or new_left:
                line = lines[i]
                body.append(line)
                if line[:1] in (" ", "-"):
                    old_left -= 1
                if line[:1] in (" ", "+"):
                    new_left -= 1
                i += 1
            hunks.append((path, int(match.group(1)), body))
            continue
        i += 1
    return hunks


def synthesize_tree(series: patch_series.Series, root: Path, version: str) -> None:
    """Write the pre-image of every file the series modifies, as far as its hunks pin it down."""
    # Per file: the current lines as references into the original (int) or text added by a patch (str).
    current: dict[str, list[int | str]] = {}
    original: dict[str, dict[int, str]] = {}
    for patch in series.patches:
        # A hunk's start is a line of the file before this patch: going from the last hunk up keeps
        # the earlier hunks' lines where they were.
        for path, old_start, body in sorted(_hunks(patch.read_text()), key=lambda hunk: -hunk[1]):
            if old_start == 0:  # a new file: not part of the pre-image
                continue
            lines = current.setdefault(path, list(range(100_000)))
            known = original.setdefault(path, {})
            at = old_start - 1
            new_part: list[int | str] = []
            for line in body:
                tag, text = line[:1], line[1:]
                if tag == "+":
                    new_part.append(text)
                    continue
                ref = lines[at]
                if isinstance(ref, int):
                    assert known.setdefault(ref, text) == text, (path, ref)
                else:
                    assert ref == text, (path, at)
                if tag == " ":
                    new_part.append(ref)
                at += 1
            old_len = sum(1 for line in body if line[:1] in (" ", "-"))
            lines[old_start - 1 : old_start - 1 + old_len] = new_part
    for path, known in original.items():
        text = "".join(f"{known.get(i, f'// synthetic filler line {i + 1}')}\n" for i in range(max(known) + 1))
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    setup = root / patch_series.SETUP_PY
    setup.parent.mkdir(parents=True, exist_ok=True)
    setup.write_text(f"from setuptools import setup\n\n_VERSION = '{version}'\n\nsetup(version=_VERSION)\n")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def _git_init(root: Path) -> None:
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "release")


@pytest.fixture(scope="module")
def all_series() -> list[patch_series.Series]:
    return patch_series.load_series(PATCHES)


def test_packaged_series_are_the_top_level_patches() -> None:
    """One copy: the package reaches patches/ through a symlink, so they cannot drift apart."""
    link = ROOT / "tfs_traffic" / "patches" / "releases"
    assert link.is_symlink() and link.resolve() == PATCHES.resolve()
    assert patch_series.default_patches_dir().resolve() == PATCHES.resolve()


def test_series_files_cover_each_release_once(all_series: list[patch_series.Series]) -> None:
    releases = [v for s in all_series for v in s.applies_to]
    assert len(releases) == len(set(releases))
    for must in ("2.4.4", "2.5.4", "2.6.5", "2.7.4", "2.8.4", "2.9.3", "2.10.1", "2.11.1", "2.12.2"):
        assert patch_series.series_for(must, all_series)
    for must in ("2.13.1", "2.14.1", "2.15.1", "2.16.1", "2.17.1", "2.18.1", "2.19.1", "2.20.0"):
        assert patch_series.series_for(must, all_series)
    assert patch_series.series_for("2.20.0", all_series).name == "2.20.0"
    assert patch_series.series_for("2.4.4", all_series).name == "2.4.4"


def test_a_release_listed_by_two_series_is_refused(tmp_path: Path) -> None:
    for name in ("2.7.4", "2.10.1"):
        shutil.copytree(PATCHES / name, tmp_path / name)
    series_file = tmp_path / "2.10.1" / "series"
    series_file.write_text(series_file.read_text().replace("# Applies to: 2.8.0", "# Applies to: 2.7.4 2.8.0"))
    with pytest.raises(ToolError, match=r"release 2\.7\.4 is listed by series 2\.10\.1 and 2\.7\.4$"):
        patch_series.load_series(tmp_path)


_LABEL_MAP = re.compile(r"^ +std::unique_ptr<std::map<string, std::map<string, (int64(?:_t)?)>>>$", re.M)


def test_every_series_pins_its_integer_spelling_in_a_context_line(all_series: list[patch_series.Series]) -> None:
    """Why `git am` of the wrong series fails: 0003's server_core.h hunk has the label map's declaration
    as context, spelled `int64` up to 2.7 and `int64_t` from 2.8 (the unit's spelling must match the
    tag's TensorFlow). patches/tools/check_tags.sh shows on every release tag that only its own series
    applies; this keeps the context line in every series."""
    for series in all_series:
        text = series.patches[2].read_text()
        hunk = text[text.index("+++ b/tensorflow_serving/model_servers/server_core.h") :]
        hunk = hunk[: hunk.index("\ndiff --git ")]
        spelling = "int64_t" if "Gauge<int64_t, 2>" in series.patches[0].read_text() else "int64"
        assert [m.group(1) for m in _LABEL_MAP.finditer(hunk)] == [spelling], series.name
        assert " ModelVersionAvailabilityRecorder model_version_availability_;" in hunk.replace("+", " ")


@pytest.mark.parametrize("name", ["2.20.0", "2.4.4"])
def test_check_then_apply_with_git(name: str, all_series: list[patch_series.Series], tmp_path: Path, capsys) -> None:
    series = next(s for s in all_series if s.name == name)
    synthesize_tree(series, tmp_path, series.applies_to[-1])
    _git_init(tmp_path)

    assert cli.main(["patch", "check", "--source", str(tmp_path)]) == 0
    assert _git(tmp_path, "status", "--porcelain") == ""  # a dry run changes nothing
    out = capsys.readouterr().out
    assert out == (
        f"TF Serving {series.applies_to[-1]} at {tmp_path}: chose series patches/{name}, because the "
        f'"Applies to" line of patches/{name}/series lists {series.applies_to[-1]} (from _VERSION in '
        f"{patch_series.SETUP_PY}); its 3 patches ({len(patch_series.touched_files(series))} files) apply "
        "cleanly (git apply)\n"
    )

    assert cli.main(["patch", "apply", "--source", str(tmp_path)]) == 0
    predict = (tmp_path / "tensorflow_serving/servables/tensorflow/predict_impl.cc").read_text()
    assert "RecordModelCall(bundle.id().name, bundle.id().version);" in predict
    assert (tmp_path / patch_series.MARKER).is_file()
    server_core = (tmp_path / "tensorflow_serving/model_servers/server_core.cc").read_text()
    assert "UpdateModelVersionAvailability(event_and_time.event, recorder);" in server_core

    with pytest.raises(ToolError, match="already patched"):
        patch_series.apply(tmp_path)


def test_apply_without_git_uses_patch(all_series: list[patch_series.Series], tmp_path: Path) -> None:
    series = next(s for s in all_series if s.name == "2.20.0")
    synthesize_tree(series, tmp_path, "2.20.0")
    outcome = patch_series.apply(tmp_path)
    assert outcome.method == "patch -p1"
    assert (
        "RecordModelCall(name(), version());"
        in (tmp_path / "tensorflow_serving/servables/tensorflow/tfrt_servable.cc").read_text()
    )
    assert not list(tmp_path.rglob("*.orig")) and not list(tmp_path.rglob("*.rej"))


def test_check_fails_when_context_differs(all_series: list[patch_series.Series], tmp_path: Path) -> None:
    series = next(s for s in all_series if s.name == "2.20.0")
    synthesize_tree(series, tmp_path, "2.20.0")
    predict = tmp_path / "tensorflow_serving/servables/tensorflow/predict_impl.cc"
    predict.write_text(predict.read_text().replace("GetServableHandle(model_spec, &bundle)", "Lookup(model_spec)"))
    _git_init(tmp_path)
    with pytest.raises(ToolError, match="does not apply"):
        patch_series.check(tmp_path)
    shutil.rmtree(tmp_path / ".git")
    with pytest.raises(ToolError, match="does not apply cleanly"):
        patch_series.check(tmp_path)
    assert "Lookup(model_spec)" in predict.read_text()  # the failed dry run left the tree alone


def test_refuses_a_dirty_git_tree(all_series: list[patch_series.Series], tmp_path: Path, capsys) -> None:
    series = next(s for s in all_series if s.name == "2.20.0")
    synthesize_tree(series, tmp_path, "2.20.0")
    _git_init(tmp_path)
    (tmp_path / "tensorflow_serving/model_servers/BUILD").write_text("changed\n")
    assert cli.main(["patch", "apply", "--source", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "uncommitted changes" in err and "model_servers/BUILD" in err


def test_refuses_a_release_with_no_series(tmp_path: Path, capsys) -> None:
    (tmp_path / patch_series.SETUP_PY).parent.mkdir(parents=True)
    (tmp_path / patch_series.SETUP_PY).write_text("_VERSION = '2.3.0'\n")
    assert cli.main(["patch", "check", "--source", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no patch series for TF Serving 2.3.0" in err
    assert cli.main(["patch", "check", "--source", str(tmp_path), "--version", "2.21.0"]) == 2
    assert "2.21.0" in capsys.readouterr().err


def test_refuses_what_is_not_a_tf_serving_tree(tmp_path: Path, capsys) -> None:
    assert cli.main(["patch", "check", "--source", str(tmp_path)]) == 2
    assert "not a TF Serving source tree" in capsys.readouterr().err
    assert cli.main(["patch", "check", "--source", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    with pytest.raises(UsageError, match="expected a release"):
        patch_series.check(tmp_path, version="2.20")


def test_version_comes_from_setup_py_or_flag(all_series: list[patch_series.Series], tmp_path: Path) -> None:
    """A fork whose setup.py says something else can name the release it is based on."""
    series = next(s for s in all_series if s.name == "2.4.4")
    synthesize_tree(series, tmp_path, "2.4.4-myfork")
    with pytest.raises(UsageError, match=r"2\.4\.4-myfork"):
        patch_series.check(tmp_path)
    outcome = patch_series.check(tmp_path, version="2.4.4")
    assert (outcome.version, outcome.series.name) == ("2.4.4", "2.4.4")
    assert outcome.reason == 'the "Applies to" line of patches/2.4.4/series lists 2.4.4 (given by --version)'
    assert patch_series.detect_version(tmp_path) == "2.4.4-myfork"


@pytest.mark.upstream
def test_real_tree_from_tf_serving_src(tmp_path: Path) -> None:
    """Against a real TF Serving tree: `make test-upstream TF_SERVING_SRC=DIR` (not in `make test`, whose
    runs have no upstream checkout: upstream code stays out of this repository)."""
    assert os.environ.get("TF_SERVING_SRC"), "set TF_SERVING_SRC to a TF Serving checkout"
    source = Path(os.environ["TF_SERVING_SRC"])
    copy = tmp_path / "src"
    shutil.copytree(source, copy, symlinks=True, ignore=shutil.ignore_patterns("bazel-*", ".cache"))
    outcome = patch_series.apply(copy)
    assert outcome.files
    with pytest.raises(ToolError, match="already patched"):
        patch_series.check(copy)
