"""The chart's documentation stays complete: values.schema.json describes every value, and ci/
holds exactly the cases the tests render (the three modes and every-option)."""

import json
from collections.abc import Iterator
from typing import Any

from chart_checks import CHART, CI_VALUES, MODES

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def properties(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property under `node`, by dotted path, nested ones included."""
    for key, sub in node.get("properties", {}).items():
        yield prefix + key, sub
        yield from properties(sub, f"{prefix}{key}.")
    if isinstance(node.get("items"), dict):
        yield from properties(node["items"], f"{prefix}[].")


def test_the_schema_describes_every_value() -> None:
    described = list(properties(SCHEMA))
    for name, definition in SCHEMA["definitions"].items():
        described += [(name, definition), *properties(definition, f"definitions.{name}.")]
    assert len(described) > 100
    assert [path for path, node in described if not node.get("description")] == []


def test_ci_holds_the_cases_the_tests_render() -> None:
    """chart-testing installs every ci/*-values.yaml; the tests render each of them."""
    assert sorted(p.name for p in CI_VALUES.iterdir()) == sorted(
        [*(f"{mode}-values.yaml" for mode in MODES), "every-option-values.yaml"]
    )
