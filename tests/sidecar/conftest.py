"""The sidecar tests' shared fixture: the stand-in server and a sidecar in front of it."""

from collections.abc import Iterator

import pytest
from sidecar_support import Sidecar, Sim, write_models


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sim, Sidecar]]:
    """(sim, sidecar) for the whole test module: the stand-in serving the module's MODELS ({name: versions})
    with its LABELS ({name: {label: version}}, if any), and a sidecar with the module's WORKERS (1 unless
    it names another number) relaying to it. Tests that count read deltas: the pair outlives each test."""
    module = request.module
    root = tmp_path_factory.mktemp("stack")
    config = write_models(root, module.MODELS, getattr(module, "LABELS", None))
    workers = getattr(module, "WORKERS", 1)
    with Sim(config, root / "sim.log") as sim, Sidecar(config, sim, root / "sidecar.log", workers=workers) as sidecar:
        yield sim, sidecar
