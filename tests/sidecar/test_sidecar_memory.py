"""Each AVAILABLE version's RAM by TF Serving's own estimate (docs/metrics.md, "Estimated memory").

`servables/tensorflow/util.cc` `EstimateResourceFromPathUsingDiskState` (2.20.0, and the same on every
line in `patches/`): `GetModelDiskSize` walks the version directory breadth first over `GetChildren`,
recursing into every child `IsDirectory` accepts and adding `GetFileSize` of every other, then
`total * kResourceEstimateRAMMultiplier (double 1.2) + kResourceEstimateRAMPadBytes (int 0)` is
truncated back to uint64. Real files in a temporary model directory, a real sim and a real sidecar.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sidecar_support import Sidecar, Sim, write_models
from waiting import wait_for

from tfs_traffic.contract import SIDECAR_AVAILABLE, SIDECAR_ESTIMATED_RAM
from tfs_traffic.sidecar.estimate import GaveUp, disk_size, ram_estimate

RAM = SIDECAR_ESTIMATED_RAM
MAX_FILES = 20


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Sim, Sidecar]]:
    """Models: `m` (versions 1, 2: the formula), `u` (1: unloaded and loaded again), `many` (1: more files
    than the bound), `r` (1: local to the sim, `gs://` in the sidecar's config). Poll every 0.2 s."""
    root = tmp_path_factory.mktemp("memory")
    config = write_models(root, {"m": [1, 2], "u": [1], "many": [1], "r": [1]})
    models = root / "models"
    # m/1: 1000 + 4321 + 17 + 3 + 2 + 0 + 100 (a symlink to a file: stat follows it) = 5443 bytes,
    # nested, hidden, empty and linked files all counted; estimate 5443 * 1.2 = 6531.6, truncated: 6531.
    write(models / "m/1/saved_model.pb", 1000)
    write(models / "m/1/variables/variables.data-00000-of-00001", 4321)
    write(models / "m/1/variables/variables.index", 17)
    write(models / "m/1/assets/deep/vocab.txt", 3)
    write(models / "m/1/.hidden", 2)
    write(models / "m/1/empty", 0)
    (models / "m/1/extra/empty_dir").mkdir(parents=True)
    write(root / "outside.bin", 100)
    (models / "m/1/linked.bin").symlink_to(root / "outside.bin")
    # m/2: 9 bytes, 10.8 truncated to 10 (rounding would say 11). Files beside the versions do not count.
    write(models / "m/2/saved_model.pb", 9)
    write(models / "m/fingerprint.pb", 1000)
    write(models / "u/1/saved_model.pb", 5)  # 6
    for i in range(MAX_FILES + 1):
        write(models / f"many/1/variables/shard-{i}", 1)
    write(models / "r/1/saved_model.pb", 10)
    sidecar_config = root / "sidecar.config"
    sidecar_config.write_text(config.read_text().replace(str(models / "r"), "gs://bucket/r"))
    extra = ["--estimate-max-files", str(MAX_FILES)]
    with (
        Sim(config, root / "sim.log", extra=["--poll-interval", "0.2s"]) as sim,
        Sidecar(sidecar_config, sim, root / "sidecar.log", proxy=False, extra=extra) as sidecar,
    ):
        yield models, sim, sidecar


def test_the_estimate_is_tf_servings_formula_exactly(stack: tuple[Path, Sim, Sidecar]) -> None:
    """5443 bytes (nested, hidden, empty, symlinked files) -> 6531; 9 bytes -> 10: truncation, not rounding."""
    _, _, sidecar = stack

    def of_m() -> dict[tuple[str, ...], float]:
        return {k: v for k, v in sidecar.gauge(RAM).items() if k[0] == "m"}

    assert wait_for(lambda: len(of_m()) == 2)
    assert of_m() == {("m", "1"): 6531.0, ("m", "2"): 10.0}


def test_the_arithmetic_is_cs_uint64_double_uint64() -> None:
    """C++ converts the uint64 total to double, multiplies by the double nearest 1.2 and truncates: past
    2**51 that differs from exact sixths-of-five arithmetic (here by rounding up)."""
    assert ram_estimate(9) == 10
    assert ram_estimate(3753120389933694) == 4503744467920433
    assert 3753120389933694 * 6 // 5 == 4503744467920432


def test_an_unloaded_version_drops_to_zero_and_a_reload_is_estimated_again(stack: tuple[Path, Sim, Sidecar]) -> None:
    """Unloaded: 0, as its availability gauge (both kept, at 0, for the process lifetime). Loaded again with
    other files: estimated again (once per load, not per poll)."""
    models, _, sidecar = stack
    assert wait_for(lambda: sidecar.gauge(RAM).get(("u", "1"))) == 6.0
    (models / "u/1/saved_model.pb").unlink()
    (models / "u/1").rmdir()
    assert wait_for(lambda: sidecar.gauge(SIDECAR_AVAILABLE).get(("u", "1")) == 0.0)
    assert wait_for(lambda: sidecar.gauge(RAM).get(("u", "1")) == 0.0)
    write(models / "u/1/saved_model.pb", 7)  # 8.4 -> 8
    assert wait_for(lambda: sidecar.gauge(RAM).get(("u", "1"))) == 8.0
    assert sidecar.gauge(SIDECAR_AVAILABLE)[("u", "1")] == 1.0


def test_a_remote_base_path_has_no_series_and_one_log_line(stack: tuple[Path, Sim, Sidecar]) -> None:
    """The sidecar does not read gs://, s3:// or hdfs://: no series, said once per model however often
    it polls and whatever loads."""
    models, _, sidecar = stack
    assert wait_for(lambda: sidecar.gauge(SIDECAR_AVAILABLE).get(("r", "1"))) == 1.0
    write(models / "r/2/saved_model.pb", 10)
    # Polled with the model in view since the start, and a second version loaded: still one line.
    assert wait_for(lambda: sidecar.gauge(SIDECAR_AVAILABLE).get(("r", "2"))) == 1.0
    assert [k for k in sidecar.gauge(RAM) if k[0] == "r"] == []
    lines = [line for line in sidecar.output().splitlines() if "base path gs://bucket/r is remote" in line]
    assert len(lines) == 1


def test_a_directory_over_the_bounds_gives_up_and_the_poller_goes_on(stack: tuple[Path, Sim, Sidecar]) -> None:
    """21 files over a bound of 20: one warning, no series; availability still follows the server, and a
    version loaded afterwards is estimated."""
    models, _, sidecar = stack
    assert wait_for(lambda: "gave up walking" in sidecar.output())
    lines = [line for line in sidecar.output().splitlines() if "gave up walking" in line]
    assert len(lines) == 1
    assert f"model many version 1: memory not estimated, gave up walking {models / 'many/1'}" in lines[0]
    assert f"more than {MAX_FILES} files" in lines[0]
    assert sidecar.gauge(SIDECAR_AVAILABLE)[("many", "1")] == 1.0
    assert ("many", "1") not in sidecar.gauge(RAM)
    write(models / "many/2/saved_model.pb", 15)  # 18
    assert wait_for(lambda: sidecar.gauge(SIDECAR_AVAILABLE).get(("many", "2"))) == 1.0
    assert wait_for(lambda: sidecar.gauge(RAM).get(("many", "2"))) == 18.0
    assert ("many", "1") not in sidecar.gauge(RAM)


def test_the_walk_gives_up_past_its_deadline(tmp_path: Path) -> None:
    """The time budget: checked at every entry, so a deadline already passed stops at the first."""
    write(tmp_path / "a", 1)
    assert disk_size(str(tmp_path)) == 1
    with pytest.raises(GaveUp, match="out of time"):
        disk_size(str(tmp_path), deadline=time.monotonic() - 1)


def test_relay_mode_exports_the_estimate_too(tmp_path: Path) -> None:
    """With --workers 2 the page is prometheus_client's multiprocess merge: the supervisor's gauge shows
    there as in status-only mode."""
    config = write_models(tmp_path, {"m": [3]})
    write(tmp_path / "models/m/3/saved_model.pb", 1_000_003)  # 1200003.6 -> 1200003
    with (
        Sim(config, tmp_path / "sim.log") as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log", workers=2) as sidecar,
    ):
        assert wait_for(lambda: sidecar.gauge(RAM)) == {("m", "3"): 1_200_003.0}
