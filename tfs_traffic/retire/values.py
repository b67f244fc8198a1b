"""The GitOps change of a retirement: a Helm values file whose `modelsConfig` is the new config, nothing else changed.

`tfs-traffic retire plan --values VALUES.yaml` writes this copy for a GitOps repository to commit
(README, "Retiring versions"); the chart renders `modelsConfig` into the models ConfigMap. A YAML
library would write the whole file back out — a round-trip loader keeps comments and key order, but
re-indents sequences and re-flows long lines to its own settings — so the file is edited as text
instead: only the lines of the top-level `modelsConfig` value are replaced, by a literal block
scalar (`|`) holding the new config, and every other byte is copied as it was. The copy is then
loaded and compared with the original: `modelsConfig` must read back as exactly the new config and
every other value as before, or nothing is written (a form this edit does not handle: one error line).
"""

import re
from typing import Any

import yaml

from tfs_traffic.errors import UsageError, yaml_problem

KEY = "modelsConfig"
_KEY_LINE = re.compile(r"""^(?:modelsConfig|"modelsConfig"|'modelsConfig')[ \t]*:(?=[ \t]|$)(?P<rest>.*)$""")
# What may follow `modelsConfig:` on a block scalar's first line: `|` or `>`, an indentation and/or chomping
# indicator, then an optional comment (YAML 1.2, 8.1.1).
_BLOCK_HEADER = re.compile(r"^[ \t]*[|>](?P<indicators>[1-9][+-]?|[+-][1-9]?)?(?P<comment>[ \t]+#.*)?[ \t]*$")
# ... or a one-line scalar: double-quoted, single-quoted or plain (not an anchor, alias, tag or flow collection).
_ONE_LINE = re.compile(
    r"""^[ \t]*(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#&*!|>'"{\[%@`][^#]*?)?(?P<comment>[ \t]+#.*)?[ \t]*$"""
)
DEFAULT_INDENT = 2


def rewrite_models_config(values_text: str, new_config: str) -> str:
    """`values_text` with its top-level `modelsConfig` set to `new_config`; every other line as it was.

    `modelsConfig` may be a block scalar (`|`, `|-`, `>`, with indicators and a comment), a one-line
    string, or missing (then it is added at the end). Raises UsageError for anything else, and when
    the copy would not read back as the original with only `modelsConfig` changed.
    """
    original = _load(values_text, "the values file")
    newline = "\r\n" if "\r\n" in values_text else "\n"
    lines = values_text.splitlines(keepends=True)
    keys = [(i, m) for i, line in enumerate(lines) if (m := _KEY_LINE.match(line.rstrip("\r\n")))]
    if len(keys) > 1:
        at = ", ".join(str(i + 1) for i, _ in keys)
        raise UsageError(f"the values file sets {KEY} {len(keys)} times (lines {at})")
    if keys:
        start, key = keys[0]
        end, indent, comment = _value_lines(lines, start, key.group("rest"))
        block = _block(new_config, indent, comment, newline)
        text = "".join(lines[:start]) + block + "".join(lines[end:])
    else:
        ending = "" if not values_text or values_text.endswith(("\n", "\r")) else newline
        text = values_text + ending + _block(new_config, DEFAULT_INDENT, "", newline)
    _check(original, _load(text, f"the values file with the new {KEY}"), new_config)
    return text


def _value_lines(lines: list[str], start: int, rest: str) -> tuple[int, int, str]:
    """(the line after the value, its block's indentation, the header's comment) of the key at `start`, `rest`
    what follows its colon."""
    header = _BLOCK_HEADER.match(rest)
    if header is None:
        one_line = _ONE_LINE.match(rest)
        if one_line is None or _continues(lines, start + 1):
            raise UsageError(
                f"{KEY} (line {start + 1}) is neither a block scalar (|) nor a one-line string: set it by hand"
            )
        return start + 1, DEFAULT_INDENT, one_line.group("comment") or ""
    indicators = header.group("indicators") or ""
    digits = "".join(c for c in indicators if c.isdigit())
    indent = int(digits) if digits else 0
    end = start + 1
    for i in range(start + 1, len(lines)):
        line = lines[i].rstrip("\r\n")
        if not line.strip(" "):
            continue  # an empty line belongs to the block only if content follows it
        width = len(line) - len(line.lstrip(" "))
        if indent == 0:
            if width == 0:
                break
            indent = width  # auto-detected from the first line with content
        if width < indent:
            break
        end = i + 1
    return end, indent or DEFAULT_INDENT, header.group("comment") or ""


def _continues(lines: list[str], i: int) -> bool:
    """Whether the value goes on past its first line (a multi-line plain or quoted scalar, a nested mapping)."""
    for line in lines[i:]:
        text = line.rstrip("\r\n")
        if text.strip():
            return text[0] in " \t" and not text.lstrip().startswith("#")
    return False


def _block(config: str, indent: int, comment: str, newline: str) -> str:
    """`modelsConfig: |` with `config` as a literal block scalar at `indent`."""
    if not config:
        return f'{KEY}: ""{comment}{newline}'
    stripped = config.rstrip("\n")
    trailing = len(config) - len(stripped)
    chomping = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    # A first line that starts with a space would be taken for the block's indentation: say it explicitly.
    explicit = str(indent) if stripped[:1] == " " else ""
    body = "".join((" " * indent + line if line else "") + newline for line in stripped.split("\n"))
    body += newline * (trailing - 1 if trailing > 1 else 0)
    return f"{KEY}: |{explicit}{chomping}{comment}{newline}{body}"


def _load(text: str, what: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        line, problem = yaml_problem(e)
        where = f" (line {line})" if line is not None else ""
        raise UsageError(f"{what} is not valid YAML{where}: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{what} is not a mapping of values")
    return loaded


def _check(before: dict[str, Any], after: dict[str, Any], config: str) -> None:
    """The copy reads back as the original with only `modelsConfig` changed, to exactly `config`."""
    if after.get(KEY) != config:
        raise UsageError(f"{KEY} cannot be written as a block scalar that reads back as the new config")
    changed = sorted(k for k in before.keys() | after.keys() if k != KEY and before.get(k) != after.get(k))
    if changed:
        raise UsageError(f"rewriting {KEY} would change {', '.join(map(str, changed))}: set it by hand")


def models_config_of(values_text: str, source: str) -> str | None:
    """The text of the values file's top-level `modelsConfig` (None when it sets none); UsageError
    for a file that is not a mapping of values or a `modelsConfig` that is not a string."""
    value = _load(values_text, source).get(KEY)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{source}: {KEY} is not a string (a models config's text)")
    return value


def copy_path(values: str) -> str:
    """Where `retire plan --values FILE` writes its copy by default: FILE.retired beside it, the
    extension kept (`values.yaml` -> `values.retired.yaml`)."""
    from pathlib import Path

    path = Path(values)
    return str(path.with_name(f"{path.stem}.retired{path.suffix}"))
