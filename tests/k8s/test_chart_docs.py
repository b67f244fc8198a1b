"""The chart's documentation stays complete: values.schema.json describes every value, README.md's
table lists every value with its default and description, and ci/ holds exactly the cases the tests
render (the three modes and every-option)."""

import json
from collections.abc import Iterator
from typing import Any

from chart_checks import CHART, CI_VALUES, MODES

from tfs_traffic.k8s import helm

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def properties(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property under `node`, by dotted path, nested ones included."""
    for key, sub in node.get("properties", {}).items():
        yield prefix + key, sub
        yield from properties(sub, f"{prefix}{key}.")
    if isinstance(node.get("items"), dict):
        yield from properties(node["items"], f"{prefix}[].")


def table_rows(node: dict[str, Any], defaults: Any, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """(key, default, description) of each README row: a section the chart defines key by key (a
    non-empty map with properties) is opened; anything else, a Kubernetes object included, is one row."""
    for key, sub in node["properties"].items():
        default = defaults.get(key)
        if "$ref" not in sub and "properties" in sub and isinstance(default, dict) and default:
            yield from table_rows(sub, default, f"{prefix}{key}.")
        else:
            yield prefix + key, default, sub["description"]


def test_the_schema_describes_every_value() -> None:
    described = list(properties(SCHEMA))
    for name, definition in SCHEMA["definitions"].items():
        described += [(name, definition), *properties(definition, f"definitions.{name}.")]
    assert len(described) > 100
    assert [path for path, node in described if not node.get("description")] == []


def test_the_readme_lists_every_value_with_its_default() -> None:
    defaults = helm.load_values_files([CHART / "values.yaml"])
    expected = list(table_rows(SCHEMA, defaults))
    rows = []
    for line in (CHART / "README.md").read_text().splitlines():
        # | `key` | type | `default` | description |, with `|` in a cell escaped as `\|`.
        cells = [c.strip().replace("\0", "|") for c in line.replace("\\|", "\0").strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 4:
            rows.append((cells[0].strip("`"), json.loads(cells[2].strip("`")), cells[3]))
    assert rows == expected


def test_ci_holds_the_cases_the_tests_render() -> None:
    """chart-testing installs every ci/*-values.yaml; the tests render each of them."""
    assert sorted(p.name for p in CI_VALUES.iterdir()) == sorted(
        [*(f"{mode}-values.yaml" for mode in MODES), "every-option-values.yaml"]
    )
