"""Compose's variable interpolation in values (never keys): `$VAR`, `${VAR}`, `${VAR:-default}`,
`${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`; `$$` is a `$`.
Defaults and alternatives nest (`${A:-${B}}`). Pure: the environment is passed in. An unset
variable without a default becomes "" and is reported, as Compose warns about it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.errors import InvalidArgument

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = (":-", ":?", ":+", "-", "?", "+")
_FORMS = "expected $VAR, ${VAR}, ${VAR:-default} or ${VAR:?error} ($$ for a literal $)"


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
        """`text` with every variable replaced; defaults may nest (`${A:-${B:-x}}`), as in Compose."""
        out: list[str] = []
        i = 0
        while (dollar := text.find("$", i)) >= 0:
            out.append(text[i:dollar])
            replaced, i = self._one(text, dollar, path)
            out.append(replaced)
        out.append(text[i:])
        return "".join(out)

    def _bad(self, text: str, path: str) -> InvalidArgument:
        return InvalidArgument(f"{self.file}: {path}: invalid interpolation in {text!r}: {_FORMS}")

    def _one(self, text: str, at: int, path: str) -> tuple[str, int]:
        """The replacement of the `$...` starting at `at`, and where the text after it starts."""
        rest = text[at + 1 :]
        if rest.startswith("$"):
            return "$", at + 2
        if (plain := _NAME.match(rest)) is not None:
            return self._lookup(plain.group()), at + 1 + plain.end()
        name = _NAME.match(rest, 1) if rest.startswith("{") else None
        if name is None:
            raise self._bad(text, path)
        end = self._closing(text, at + 1 + name.end(), path)
        body = text[at + 1 + name.end() : end]
        op = next((o for o in _OPS if body.startswith(o)), None)
        if op is None and body:
            raise self._bad(text, path)
        arg = body[len(op) :] if op else ""
        return self._apply(name.group(), op, arg, path), end + 1

    def _closing(self, text: str, start: int, path: str) -> int:
        """Index of the `}` closing the `${` before `start`, skipping nested `${...}` and `$$`."""
        depth, i = 1, start
        while i < len(text):
            if text.startswith("$$", i):
                i += 2
                continue
            if text.startswith("${", i):
                depth, i = depth + 1, i + 2
                continue
            if text[i] == "}":
                depth -= 1
                if depth == 0:
                    return i
            i += 1
        raise self._bad(text, path)

    def _lookup(self, name: str) -> str:
        value = self.env.get(name)
        if value is None and name not in self.unset:
            self.unset.append(name)
        return value or ""

    def _apply(self, name: str, op: str | None, arg: str, path: str) -> str:
        value = self.env.get(name)
        set_, non_empty = value is not None, bool(value)
        if op in (":-", "-"):
            use_default = not non_empty if op == ":-" else not set_
            return self.string(arg, path) if use_default else (value or "")
        if op in (":?", "?"):
            missing = not non_empty if op == ":?" else not set_
            if missing:
                why = self.string(arg, path) or f"{name} is required"
                raise InvalidArgument(f"{self.file}: {path}: required variable {name} is missing: {why}")
            return value or ""
        if op in (":+", "+"):
            present = non_empty if op == ":+" else set_
            return self.string(arg, path) if present else ""
        return self._lookup(name)
