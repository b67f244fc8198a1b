"""Build the C++ metrics unit that the patch series add, straight from the patch files.

The tests here and `make bench-patch` (bench/bench_patch.py) compile `model_traffic_metrics.{h,cc}`
as the patches ship them (the `+` lines of the new-file diffs) against TensorFlow's pip package, so
what runs here is byte for byte what lands in a patched TF Serving tree. Builds are cached by a hash
of everything that goes into them, so a second run only executes the binaries. Test code: it needs
g++ and tensorflow-cpu, which the package does not, so it is not in the wheel.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tfs_traffic import exposition
from tfs_traffic.errors import ToolError

UNIT_DIR = "tensorflow_serving/servables/tensorflow"
UNIT_HEADER = f"{UNIT_DIR}/model_traffic_metrics.h"
UNIT_SOURCE = f"{UNIT_DIR}/model_traffic_metrics.cc"
UNIT_TEST = f"{UNIT_DIR}/model_traffic_metrics_test.cc"

_DIFF = re.compile(r"^diff --git a/(\S+) b/(\S+)$")
_HUNK = re.compile(r"^@@ -0,0 \+1(?:,(\d+))? @@")


def new_files(patch_text: str) -> dict[str, str]:
    """The files a `git format-patch` patch creates, as {path: content}, rebuilt from their `+` lines."""
    files: dict[str, str] = {}
    lines = patch_text.splitlines()
    i = 0
    while i < len(lines):
        match = _DIFF.match(lines[i])
        i += 1
        if not match:
            continue
        path = match.group(2)
        header_end = i
        while header_end < len(lines) and not lines[header_end].startswith(("@@", "diff --git ")):
            header_end += 1
        if not any(line.startswith("new file mode") for line in lines[i:header_end]):
            continue
        if header_end >= len(lines) or not (hunk := _HUNK.match(lines[header_end])):
            raise ToolError(f"patch: new file {path} has no single hunk starting at line 1")
        count = int(hunk.group(1) or 1)
        body = lines[header_end + 1 : header_end + 1 + count]
        if len(body) != count or not all(line.startswith("+") for line in body):
            raise ToolError(f"patch: new file {path}: expected {count} added lines")
        files[path] = "".join(line[1:] + "\n" for line in body)
        i = header_end + 1 + count
    return files


def unit_sources(series_dir: Path) -> dict[str, str]:
    """The metrics unit (header, source and its upstream-style test) that `series_dir` adds."""
    found: dict[str, str] = {}
    for patch in sorted(series_dir.glob("*.patch")):
        found.update(new_files(patch.read_text()))
    wanted = (UNIT_HEADER, UNIT_SOURCE, UNIT_TEST)
    missing = [path for path in wanted if path not in found]
    if missing:
        raise ToolError(f"{series_dir}: the series does not add {', '.join(missing)}")
    return {path: found[path] for path in wanted}


def tensorflow_flags(cache_dir: Path, python: str = sys.executable) -> tuple[list[str], list[str]]:
    """TensorFlow's compile and link flags, as `tf.sysconfig` reports them, plus an rpath to the library.

    Importing TensorFlow takes seconds, so the answer is cached in `cache_dir`, keyed by the
    package's location and version.
    """
    probe = (
        "import importlib.metadata as m, importlib.util as u, os;"
        "s = u.find_spec('tensorflow');"
        "print(os.path.dirname(s.origin) if s and s.origin else '');"
        "print(m.version('tensorflow-cpu') if s else '')"
    )
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False).stdout.split("\n")
    tf_dir, tf_version = [*out, "", ""][:2]
    if not tf_dir:
        raise ToolError(f"TensorFlow is not installed for {python}; run `make setup`")
    digest = hashlib.sha256(f"{tf_dir}\0{tf_version}".encode()).hexdigest()[:16]
    cache = cache_dir / f"tf-flags-{digest}.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        return cached["compile"], cached["link"]
    code = (
        "import json, tensorflow as tf;"
        "print(json.dumps([tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()]))"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise ToolError(f"cannot read TensorFlow's build flags: {result.stderr.strip().splitlines()[-1:]}")
    compile_flags, link_flags = json.loads(result.stdout.strip().splitlines()[-1])
    lib_dirs = [flag[2:] for flag in link_flags if flag.startswith("-L")]
    link_flags = [*link_flags, *(f"-Wl,-rpath,{d}" for d in lib_dirs)]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"compile": compile_flags, "link": link_flags}))
    return compile_flags, link_flags


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished build output into place; a concurrent builder's identical result may win."""
    try:
        tmp.rename(final)
    except OSError:
        tmp.unlink(missing_ok=True)


def _compile(cxx: list[str], gxx: str, files: dict[str, str], main: str, cache_dir: Path) -> Path:
    """Compile `main` (a path in `files`) to an object file, cached by its inputs and the compiler version."""
    obj = cache_dir / "obj" / f"{Path(main).stem}-{_digest(cxx, gxx, files, main)}.o"
    if obj.exists():
        return obj
    src = cache_dir / "src" / f"{obj.stem}.{os.getpid()}"
    shutil.rmtree(src, ignore_errors=True)
    for path, text in files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text)
    obj.parent.mkdir(parents=True, exist_ok=True)
    tmp = obj.with_suffix(f".{os.getpid()}.tmp")
    step = [*cxx, f"-I{src}", "-c", str(src / main), "-o", str(tmp)]
    result = subprocess.run(step, capture_output=True, text=True, check=False)
    shutil.rmtree(src, ignore_errors=True)
    if result.returncode != 0:
        raise ToolError(f"g++ failed to compile {main}:\n{result.stderr[-4000:]}")
    _publish(tmp, obj)
    return obj


def build(
    series_dir: Path,
    driver: Path | None,
    cache_dir: Path,
    *,
    name: str,
    extra_link: Sequence[str] = (),
    optimize: str = "-O2",
) -> Path:
    """Compile the series' metrics unit with `driver` (or with the unit's own test when None) into a binary.

    Object files and binaries are cached by a hash of their inputs (sources, flags, g++ version),
    so an unchanged unit is compiled once and a second run only executes the binaries.
    """
    if shutil.which("g++") is None:
        raise ToolError("g++ is not installed; run `make setup`")
    sources = unit_sources(series_dir)
    compile_flags, link_flags = tensorflow_flags(cache_dir)
    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    # TensorFlow's headers use their own deprecated aliases (`string`, `int64`); keep the log readable.
    cxx = ["g++", optimize, "-std=c++17", "-Wall", "-Wno-deprecated-declarations", *compile_flags]
    unit = {UNIT_HEADER: sources[UNIT_HEADER], UNIT_SOURCE: sources[UNIT_SOURCE]}
    main_text = driver.read_text() if driver is not None else sources[UNIT_TEST]
    objects = [
        _compile(cxx, gxx, unit, UNIT_SOURCE, cache_dir),
        _compile(cxx, gxx, {UNIT_HEADER: sources[UNIT_HEADER], "main.cc": main_text}, "main.cc", cache_dir),
    ]
    binary = cache_dir / "bin" / f"{name}-{_digest(gxx, [o.name for o in objects], link_flags, list(extra_link))}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f".{binary.name}.{os.getpid()}")
    step = ["g++", *map(str, objects), "-o", str(tmp), *link_flags, *extra_link]
    result = subprocess.run(step, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolError(f"g++ failed to link {name}:\n{result.stderr[-4000:]}")
    _publish(tmp, binary)
    return binary


def run(binary: Path, stdin: str = "", args: Sequence[str] = (), timeout: float = 120) -> str:
    """Run a built binary quietly (TensorFlow's start-up logging off) and return its stdout."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [str(binary), *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise ToolError(f"{binary.name} exited {result.returncode}: {result.stderr[-2000:]}{result.stdout[-2000:]}")
    return result.stdout


def collected_families(driver_output: str) -> list[list[exposition.Family]]:
    """The families each `collect` of tests/patches/cpp/traffic_metrics_driver.cc printed, in order.

    TF's MetricKind `cumulative` is a counter and `gauge` a gauge, as the exporter maps them.
    """
    chunks = driver_output.split("end\n")
    if chunks[-1]:
        raise ToolError(f"driver output does not end with a collect: {chunks[-1][-200:]!r}")
    result = []
    for chunk in chunks[:-1]:
        families: dict[str, tuple[str, tuple[str, ...]]] = {}
        points: dict[str, dict[tuple[str, ...], int]] = {}
        for line in chunk.splitlines():
            fields = line.split("\t")
            if fields[0] == "metric":
                _, name, kind, _value_type, label_names, _description = fields
                kind = {"cumulative": exposition.COUNTER, "gauge": exposition.GAUGE}.get(kind, exposition.UNTYPED)
                families[name] = (kind, tuple(label_names.split(",")) if label_names else ())
                points.setdefault(name, {})
            elif fields[0] == "point":
                points.setdefault(fields[1], {})[tuple(fields[2:-1])] = int(fields[-1])
        result.append([exposition.Family(n, k, labels, points[n]) for n, (k, labels) in families.items()])
    return result
