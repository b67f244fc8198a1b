"""Run every benchmark module (or those named on the command line) and print their ratios."""

import importlib
import pkgutil
import sys
import time

import bench


def main(names: list[str]) -> int:
    modules = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    selected = [m for m in modules if not names or m.removeprefix("bench_") in names or m in names]
    if not selected:
        print(f"no benchmark matches {names}; available: {', '.join(modules)}", file=sys.stderr)
        return 2
    for name in selected:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"== {name} done in {time.perf_counter() - started:.1f}s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
