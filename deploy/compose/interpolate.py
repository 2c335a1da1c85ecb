"""Compose's variable interpolation in values (never keys): `$VAR`, `${VAR}`, `${VAR:-default}`,
`${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`; `$$` is a `$`.
Pure: the environment is passed in. An unset variable without a default becomes "" and is
reported, as Compose warns about it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.errors import InvalidArgument

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATTERN = re.compile(
    rf"\$(?:(?P<escaped>\$)|(?P<plain>{_NAME})|\{{(?P<braced>{_NAME})(?:(?P<op>:?[-?+])(?P<arg>[^}}]*))?\}}|(?P<bad>))"
)


class Interpolation:
    def __init__(self, env: Mapping[str, str], file: str) -> None:
        self.env = env
        self.file = file
        self.unset: list[str] = []
        """Variables used without a value or a default, in order of first use."""

    def value(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self.string(value, path)
        if isinstance(value, dict):
            return {k: self.value(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def string(self, text: str, path: str) -> str:
        def replace(m: re.Match[str]) -> str:
            if m.group("escaped"):
                return "$"
            if m.group("bad") is not None:
                raise InvalidArgument(
                    f"{self.file}: {path}: invalid interpolation in {text!r}: "
                    "expected $VAR, ${VAR}, ${VAR:-default} or ${VAR:?error} ($$ for a literal $)"
                )
            name = m.group("plain") or m.group("braced")
            op, arg = m.group("op"), m.group("arg") or ""
            value = self.env.get(name)
            set_, non_empty = value is not None, bool(value)
            if op in (":-", "-"):
                use_default = not non_empty if op == ":-" else not set_
                return arg if use_default else (value or "")
            if op in (":?", "?"):
                missing = not non_empty if op == ":?" else not set_
                if missing:
                    why = arg or f"{name} is required"
                    raise InvalidArgument(f"{self.file}: {path}: required variable {name} is missing: {why}")
                return value or ""
            if op in (":+", "+"):
                present = non_empty if op == ":+" else set_
                return arg if present else ""
            if value is None and name not in self.unset:
                self.unset.append(name)
            return value or ""

        return _PATTERN.sub(replace, text)
