"""Reading a Compose file safely: at most 1 MiB, YAML aliases expanded at most MAX_NODES times
(a "billion laughs" file is refused before anything is built), duplicate keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import InvalidArgument

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
"""YAML nodes after alias expansion; a large real file has a few thousand."""


def compose_error(file: str, path: str, rule: str) -> InvalidArgument:
    """The one shape of a Compose error: file, field path, rule."""
    return InvalidArgument(f"{file}: {path}: {rule}" if path else f"{file}: {rule}")


def read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise compose_error(str(path), "", f"cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise compose_error(str(path), "", f"the file is larger than {MAX_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise compose_error(str(path), "", "the file is not UTF-8 text") from None


def parse_yaml(text: str, file: str) -> Any:
    """The document as plain dicts, lists and scalars."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        node = yaml.compose(text)
        if node is None:
            return None
        _check_expansion(node, file)
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise compose_error(file, where, problem) from None
    except YAMLError as exc:
        raise compose_error(file, "", " ".join(str(exc).split())) from None


def _check_expansion(root: Any, file: str) -> None:
    """Count the nodes as if every alias were copied out; stop at MAX_NODES (also ends cycles)."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    stack = [root]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise compose_error(
                file, "", f"the document expands to more than {MAX_NODES} nodes (YAML aliases are capped)"
            )
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
