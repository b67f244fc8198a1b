"""`retire plan --values`: a Helm values file whose `modelsConfig` is the new config and nothing else changed.

On the repository's real values files (k8s/values.example.yaml, the chart's own values.yaml and every
ci/ file): the copy differs from the input only in the lines of the `modelsConfig` block (or by a
block added at the end when the file had none), Helm's own values reader reads the new config back
exactly, and Helm's engine renders it into the models ConfigMap. Then each form the value may take
in a file, and the forms the edit refuses.
"""

import difflib
from pathlib import Path
from typing import Any

import pytest

from tfs_traffic.errors import UsageError
from tfs_traffic.k8s import helm
from tfs_traffic.retire.values import rewrite_models_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "chart"
FILES = [ROOT / "k8s" / "values.example.yaml", CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]

# What a retirement does to the example's config: version 3 of recommender leaves its policy.
EXAMPLE_BEFORE = "    model_version_policy { specific { versions: 3 versions: 4 versions: 5 } }\n"
EXAMPLE_AFTER = "    model_version_policy { specific { versions: 4 versions: 5 } }\n"


def _new_config(path: Path) -> str:
    """A changed config for the file: the example's version 3 retired; elsewhere a line added on top."""
    values = helm.load_values_files([CHART / "values.yaml", path])
    config: str = values["modelsConfig"]
    if EXAMPLE_BEFORE in config:
        return config.replace(EXAMPLE_BEFORE, EXAMPLE_AFTER)
    return "# retired by tfs-traffic retire\n" + config


def _block_lines(text: str) -> range:
    """The lines of the top-level `modelsConfig` value: from its key to its last indented line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("modelsConfig:"))
    end = start + 1
    for i in range(start + 1, len(lines)):
        if lines[i] and not lines[i].startswith(" "):
            break
        if lines[i].strip():
            end = i + 1
    return range(start, end)


def _changed_lines(before: str, after: str) -> tuple[set[int], set[int]]:
    """The line numbers that differ, in `before` and in `after`."""
    old, new = before.splitlines(), after.splitlines()
    changed_old, changed_new = set(), set()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag != "equal":
            changed_old |= set(range(i1, i2))
            changed_new |= set(range(j1, j2))
    return changed_old, changed_new


def _rendered_config(values: dict[str, Any]) -> str:
    _, manifests = helm.template(values, chart_dir=CHART, release="recommender", namespace="serving")
    [configmap] = [m.obj for m in manifests if m.obj["metadata"]["name"].endswith("-models")]
    return str(configmap["data"]["models.config"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_models_config_block_changes_and_helm_renders_the_new_config(path: Path, tmp_path: Path) -> None:
    before = path.read_text()
    config = _new_config(path)
    after = rewrite_models_config(before, config)
    changed_before, changed_after = _changed_lines(before, after)
    if "\nmodelsConfig:" in "\n" + before:
        assert changed_after and changed_after <= set(_block_lines(after))
        assert changed_before <= set(_block_lines(before))
    else:  # the chart's default applied: the copy adds the key at the end, and changes nothing else
        assert changed_before == set()
        assert after.startswith(before) and after[len(before) :].startswith("modelsConfig: |\n")
    copy = tmp_path / path.name
    copy.write_text(after)
    read = helm.load_values_files([copy])  # Helm's own values reader
    original = helm.load_values_files([path])
    assert read["modelsConfig"] == config
    assert {k: v for k, v in read.items() if k != "modelsConfig"} == {
        k: v for k, v in original.items() if k != "modelsConfig"
    }
    # The modes' ci files are rendered over the example values (tests/k8s does the same), every-option on its own.
    mode_file = path.parent.name == "ci" and "every-option" not in path.name
    over = [ROOT / "k8s" / "values.example.yaml"] if mode_file else []
    values = helm.load_values_files([*over, copy])
    assert _rendered_config(values) == config.removesuffix("\n")


def test_the_example_retirement_changes_one_line() -> None:
    before = (ROOT / "k8s" / "values.example.yaml").read_text()
    after = rewrite_models_config(before, _new_config(ROOT / "k8s" / "values.example.yaml"))
    diff = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)]
    assert diff[2:] == [diff[2], "-  " + EXAMPLE_BEFORE.rstrip("\n"), "+  " + EXAMPLE_AFTER.rstrip("\n")]


NEW = 'model_config_list {\n  config { name: "m" base_path: "/models/m" }\n}\n'
REST = "# the values\nreplicaCount: 2  # two\nservice:\n  type: ClusterIP\n"


@pytest.mark.parametrize(
    ("value", "config", "header"),
    [
        ("|\n  old {\n  }\n", NEW, "|"),
        ("|-  # kept comment\n    old\n\n    more\n", NEW, "|  # kept comment"),  # indentation kept too
        (">\n  folded\n  text\n", NEW, "|"),
        ("|2\n  old\n", NEW, "|"),
        ('"model_config_list {}"  # one line', NEW, "|  # one line"),
        ("'quoted'", NEW, "|"),
        ("", NEW, "|"),  # null
        ("|\n  old\n", "no newline at the end", "|-"),
        ("|\n  old\n", "two newlines\n\n", "|+"),
        ("|\n  old\n", "  a first line that starts with spaces\nthen\n", "|2"),
    ],
)
def test_each_form_of_the_value_is_replaced_by_a_literal_block(
    value: str, config: str, header: str, tmp_path: Path
) -> None:
    before = f"{REST}modelsConfig: {value}" + ("" if value.endswith("\n") else "\n") + "# after\nimage:\n  tag: x\n"
    after = rewrite_models_config(before, config)
    (tmp_path / "values.yaml").write_text(after)
    assert helm.load_values_files([tmp_path / "values.yaml"])["modelsConfig"] == config
    start = after.index("modelsConfig:")
    assert after[:start] == REST
    assert after[start:].splitlines()[0] == f"modelsConfig: {header}"
    assert after.endswith("# after\nimage:\n  tag: x\n")


def test_crlf_files_stay_crlf_and_a_missing_final_newline_is_added_before_the_block() -> None:
    before = "a: 1\r\nmodelsConfig: |\r\n  old\r\nb: 2\r\n"
    after = rewrite_models_config(before, "x {\n}\n")
    assert after == "a: 1\r\nmodelsConfig: |\r\n  x {\r\n  }\r\nb: 2\r\n"
    assert rewrite_models_config("a: 1", "x\n") == "a: 1\nmodelsConfig: |\n  x\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modelsConfig: &cfg |\n  x\nother: *cfg\n", "neither a block scalar"),
        ("modelsConfig:\n  nested: map\n", "neither a block scalar"),
        ("modelsConfig: a\n  continued plain\n", "neither a block scalar"),
        ("modelsConfig: |\n  a\nmodelsConfig: |\n  b\n", r"sets modelsConfig 2 times \(lines 1, 3\)"),
        ("modelsConfig: |\n  a\n b: [\n", "not valid YAML"),
        ("- a list\n", "not a mapping of values"),
        ("modelsConfig: |\n  a\n\nb: 1\n", "cannot be written as a block scalar"),  # |+ would take the blank line
    ],
)
def test_what_it_cannot_rewrite_exactly_is_one_error_line(text: str, message: str) -> None:
    config = "ends in two newlines\n\n" if "b: 1" in text else NEW
    with pytest.raises(UsageError, match=message):
        rewrite_models_config(text, config)


def test_a_nested_models_config_is_not_the_charts_key() -> None:
    before = "x:\n  modelsConfig: |\n    a\n"
    assert rewrite_models_config(before, NEW) == before + "modelsConfig: |\n" + "".join(
        "  " + line + "\n" for line in NEW.splitlines()
    )
