"""The C++ metrics unit, extracted from the patch files, compiled with g++ and run for real.

`metrics_unit` (beside this file) rebuilds model_traffic_metrics.{h,cc} from the `+` lines of the series'
new-file diffs, compiles them against tensorflow-cpu's pip headers and libtensorflow_framework,
and links tests/patches/cpp/traffic_metrics_driver.cc, which records calls, flips availability and prints
what TensorFlow's CollectionRegistry collects. The unit's own upstream-style gtest from the patch
is built and run too. Builds are cached under out/cpp-cache by content hash.
"""

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import metrics_unit
import pytest

from tfs_traffic import contract, exposition, modelconfig
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import LocalPrometheus
from tfs_traffic.sim.core import ServerCore

ROOT = Path(__file__).resolve().parents[2]
PATCHES = ROOT / "patches"
DRIVER = ROOT / "tests" / "patches" / "cpp" / "traffic_metrics_driver.cc"
CACHE = ROOT / "out" / "cpp-cache"
# One series of each unit variant: int64_t (TF Serving >= 2.8) and TF's own int64 (2.4 to 2.7).
SERIES = ("2.20.0", "2.4.4")

SCRIPT = """\
available half_plus_two 1
available half_plus_two 2
available resnet 10
collect
call half_plus_two 2 5
call half_plus_two 1
call resnet 10 3
unavailable half_plus_two 1
collect
shutdown
collect
"""


def _collects(output: str) -> list[list[exposition.Family]]:
    return metrics_unit.collected_families(output)


def _by_name(families: list[exposition.Family]) -> dict[str, exposition.Family]:
    return {f.tf_name: f for f in families}


def _values(family: exposition.Family) -> dict[tuple[str, ...], int]:
    return {key: int(value) for key, value in family.points.items()}


@pytest.fixture(scope="module", params=SERIES)
def driver_output(request: pytest.FixtureRequest) -> str:
    binary = metrics_unit.build(PATCHES / request.param, DRIVER, CACHE, name="traffic_metrics_driver")
    return metrics_unit.run(binary, SCRIPT)


def test_every_series_ships_one_of_two_unit_variants() -> None:
    """All series carry the same unit; only the spelling of the 64-bit type follows their TF release."""
    variants = {}
    for series in sorted(p for p in PATCHES.iterdir() if (p / "series").exists()):
        sources = metrics_unit.unit_sources(series)
        variants.setdefault(sources[metrics_unit.UNIT_SOURCE], []).append(series.name)
    assert len(variants) == 2, list(variants.values())
    modern, legacy = sorted(variants, key=lambda text: "int64_t" not in text)
    assert modern.replace("int64_t", "int64").replace("#include <cstdint>\n", "") == legacy.replace(
        '#include "tensorflow/core/platform/types.h"\n', ""
    )
    assert "2.20.0" in variants[modern] and "2.4.4" in variants[legacy]


def test_metric_names_kinds_and_labels_follow_the_contract(driver_output: str) -> None:
    first, *_ = _collects(driver_output)
    metrics = _by_name(first)
    assert sorted(metrics) == sorted([contract.TF_CALLS, contract.TF_AVAILABLE])
    assert metrics[contract.TF_CALLS].kind == exposition.COUNTER
    assert metrics[contract.TF_AVAILABLE].kind == exposition.GAUGE
    for metric in metrics.values():
        assert tuple(metric.label_names) == (contract.MODEL, contract.VERSION)


def test_available_version_has_call_count_from_zero(driver_output: str) -> None:
    first, *_ = _collects(driver_output)
    metrics = _by_name(first)
    assert _values(metrics[contract.TF_AVAILABLE]) == {
        ("half_plus_two", "1"): 1,
        ("half_plus_two", "2"): 1,
        ("resnet", "10"): 1,
    }
    # Before any call, every AVAILABLE version already has a call count series at 0.
    assert _values(metrics[contract.TF_CALLS]) == {
        ("half_plus_two", "1"): 0,
        ("half_plus_two", "2"): 0,
        ("resnet", "10"): 0,
    }


def test_calls_and_unload_are_counted_per_version(driver_output: str) -> None:
    _, second, _ = _collects(driver_output)
    metrics = _by_name(second)
    assert _values(metrics[contract.TF_CALLS]) == {
        ("half_plus_two", "1"): 1,
        ("half_plus_two", "2"): 5,
        ("resnet", "10"): 3,
    }
    # Unloading sets the gauge to 0 and keeps the count.
    assert _values(metrics[contract.TF_AVAILABLE]) == {
        ("half_plus_two", "1"): 0,
        ("half_plus_two", "2"): 1,
        ("resnet", "10"): 1,
    }


def test_destroyed_recorder_sets_its_versions_to_zero(driver_output: str) -> None:
    """ServerCore's recorder goes with the core: every version it left AVAILABLE drops to 0."""
    _, second, third = _collects(driver_output)
    metrics = _by_name(third)
    assert _values(metrics[contract.TF_AVAILABLE]) == {
        ("half_plus_two", "1"): 0,
        ("half_plus_two", "2"): 0,
        ("resnet", "10"): 0,
    }
    # The counts stay (the cells cannot be deleted): frozen, so they add no calls from here on.
    assert _values(metrics[contract.TF_CALLS]) == _values(_by_name(second)[contract.TF_CALLS])


def expected_page() -> str:
    """The page a patched TF Serving serves after SCRIPT, written out by hand from docs/metrics.md."""
    calls, available = contract.PATCHED_CALLS, contract.PATCHED_AVAILABLE
    m, v = contract.MODEL, contract.VERSION
    return (
        f"# TYPE {calls} counter\n"
        f'{calls}{{{m}="half_plus_two",{v}="1"}} 1\n'
        f'{calls}{{{m}="half_plus_two",{v}="2"}} 5\n'
        f'{calls}{{{m}="resnet",{v}="10"}} 3\n'
        f"# TYPE {available} gauge\n"
        f'{available}{{{m}="half_plus_two",{v}="1"}} 0\n'
        f'{available}{{{m}="half_plus_two",{v}="2"}} 1\n'
        f'{available}{{{m}="resnet",{v}="10"}} 1\n'
    )


def test_exposition_matches_the_contract(driver_output: str) -> None:
    _, second, _ = _collects(driver_output)
    assert exposition.metric_name(contract.TF_CALLS) == contract.PATCHED_CALLS
    assert exposition.metric_name(contract.TF_AVAILABLE) == contract.PATCHED_AVAILABLE
    assert exposition.render(second) == expected_page()


def test_the_simulator_serves_the_same_page(driver_output: str, tmp_path: Path) -> None:
    """`tfs-traffic sim` keeps the patched metrics itself; after the same story its page must match."""
    for model, versions in (("half_plus_two", (1, 2)), ("resnet", (10,))):
        for version in versions:
            (tmp_path / model / str(version)).mkdir(parents=True)

    def config(half_plus_two_versions: str) -> object:
        return modelconfig.parse_text(
            f"""model_config_list {{
              config {{ name: "half_plus_two" base_path: "{tmp_path}/half_plus_two" model_platform: "tensorflow"
                        model_version_policy {{ specific {{ {half_plus_two_versions} }} }} }}
              config {{ name: "resnet" base_path: "{tmp_path}/resnet" model_platform: "tensorflow" }}
            }}"""
        )

    core = ServerCore(config("versions: 1 versions: 2"), log=lambda severity, msg: None)
    core.settle()  # loads every version, without the poll and manager threads
    for model, version, times in (("half_plus_two", 2, 5), ("half_plus_two", 1, 1), ("resnet", 10, 3)):
        for _ in range(times):
            core.count_call(core.resolve(model, version))
    core.reload_config(config("versions: 2"))
    core.settle()  # the next file-system poll and the manager unload half_plus_two 1

    patched = {contract.TF_CALLS, contract.TF_AVAILABLE}
    sim_page = exposition.render(f for f in core.families() if f.tf_name in patched)
    _, second, _ = _collects(driver_output)
    assert exposition.render(second) == sim_page


@pytest.fixture
def served_page() -> Iterator[str]:
    """Serve expected_page() at TF Serving's monitoring path on 127.0.0.1; yields host:port."""
    page = expected_page().encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/monitoring/prometheus/metrics"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            if ok:
                self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_prometheus_scrapes_the_exposition(served_page: str, tmp_path: Path) -> None:
    """A real Prometheus scrapes the page and answers the queries the report builds on."""
    scrape = f"""\
  - job_name: tfserving
    scrape_interval: 1s
    metrics_path: /monitoring/prometheus/metrics
    static_configs:
      - targets: ['{served_page}']
"""
    with LocalPrometheus(tmp_path / "tsdb", scrape_configs=scrape) as prom:
        client = PrometheusClient(PrometheusAccess(url=prom.url, timeout=10))
        deadline = time.monotonic() + 30
        calls: list = []
        while time.monotonic() < deadline and len(calls) < 3:
            time.sleep(0.5)
            calls = client.query(
                f"sum by ({contract.MODEL}, {contract.VERSION}) ({contract.PATCHED_CALLS})", time.time()
            )
        available = client.query(f"{contract.PATCHED_AVAILABLE} == 1", time.time())
    got_calls = {(s["metric"][contract.MODEL], s["metric"][contract.VERSION]): s["value"][1] for s in calls}
    assert got_calls == {("half_plus_two", "1"): "1", ("half_plus_two", "2"): "5", ("resnet", "10"): "3"}
    got_available = sorted((s["metric"][contract.MODEL], s["metric"][contract.VERSION]) for s in available)
    assert got_available == [("half_plus_two", "2"), ("resnet", "10")]


@pytest.mark.parametrize("series", SERIES)
def test_the_units_own_gtest_passes_twice_in_one_process(series: str) -> None:
    """model_traffic_metrics_test.cc, as the patch adds it, built with Debian's googletest and run
    with --gtest_repeat=2: the metrics are process-wide, so a test that read absolute values would
    fail on the second pass (upstream's util_test.cc compares before and after, and so does this)."""
    binary = metrics_unit.build(
        PATCHES / series,
        None,
        CACHE,
        name="model_traffic_metrics_test",
        extra_link=("-lgmock_main", "-lgmock", "-lgtest", "-lpthread"),
    )
    output = metrics_unit.run(binary, args=["--gtest_repeat=2"])
    assert output.count("[  PASSED  ] 6 tests.") == 2, output
    assert "Repeating all tests (iteration 2)" in output
    assert "FAILED" not in output


def test_the_int64_t_series_ship_the_unit_sources_byte_for_byte() -> None:
    """patches/tools/unit/ is what make_series.py puts into every series; the shipped copies match it."""
    tools = {p.name: p.read_text() for p in (PATCHES / "tools" / "unit").iterdir()}
    for series in sorted(p for p in PATCHES.iterdir() if (p / "series").exists()):
        shipped = {Path(path).name: text for path, text in metrics_unit.unit_sources(series).items()}
        if "int64_t" in shipped["model_traffic_metrics.cc"]:
            assert shipped == tools, series.name


def test_new_files_rebuilds_added_files_only() -> None:
    patch = (
        "diff --git a/x/new.h b/x/new.h\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n"
        "+++ b/x/new.h\n@@ -0,0 +1,2 @@\n+line one\n+\n"
        "diff --git a/x/old.cc b/x/old.cc\nindex 2222222..3333333 100644\n--- a/x/old.cc\n+++ b/x/old.cc\n"
        "@@ -1,1 +1,2 @@\n context\n+added\n"
    )
    assert metrics_unit.new_files(patch) == {"x/new.h": "line one\n\n"}
