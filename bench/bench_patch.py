"""ns per recorded call in the patch's metrics unit: cell looked up per call vs cached vs upstream's style.

The unit is built from patches/2.20.0 with g++ -O2 against tensorflow-cpu (as the tests build it)
together with bench/cpp/record_call_bench.cc; all three variants run in the same process.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "patches"))
import metrics_unit

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 2_000_000
REPEATS = 5


def measure(model: str) -> dict[str, float]:
    binary = metrics_unit.build(
        ROOT / "patches" / "2.20.0",
        ROOT / "bench" / "cpp" / "record_call_bench.cc",
        ROOT / "out" / "cpp-cache",
        name="record_call_bench",
    )
    output = metrics_unit.run(binary, args=[str(ITERATIONS), str(REPEATS), model])
    return {name: float(value) for name, value in (line.split() for line in output.splitlines())}


def main() -> None:
    for model in ("half_plus_two", "a_model_name_longer_than_sso"):
        ns = measure(model)
        print(
            f"model_name={model!r} ({ITERATIONS} calls x {REPEATS}, best): "
            f"per-call lookup {ns['lookup']:.1f} ns, cached cell {ns['cached']:.1f} ns, "
            f"upstream-style GetCell {ns['plain']:.1f} ns"
        )
        print(
            f"  lookup/cached = {ns['lookup'] / ns['cached']:.1f}x, "
            f"lookup/upstream-style = {ns['lookup'] / ns['plain']:.2f}x, "
            f"upstream-style/cached = {ns['plain'] / ns['cached']:.1f}x"
        )


if __name__ == "__main__":
    main()
