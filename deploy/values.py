"""Parsers for the values service flags and Compose files share: sizes, CPUs, durations, ports,
KEY=VALUE pairs. Each raises InvalidArgument naming the field, the value and the rule."""

from __future__ import annotations

import re

from agent.errors import invalid
from controller.api.types import PortSpec

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_RE = re.compile(rf"^(?:{_DURATION_PART_RE.pattern})+$")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PORT_RE = re.compile(r"^(?:(\d+):)?(\d+)(?:/(tcp|udp))?$")


def parse_bytes(field: str, text: str | int) -> int:
    """`512m`, `1g`, `1gb`, `1048576` -> bytes (binary units, as Docker and Compose)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise invalid(field, str(text), "must not be negative")
        return text
    m = _SIZE_RE.match(str(text).strip())
    if not m:
        raise invalid(field, str(text), "expected a size like 512m, 1g or 1048576")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_cpus(field: str, text: str | float) -> int:
    """`0.5` -> nano CPUs."""
    try:
        cpus = float(text)
    except (TypeError, ValueError):
        raise invalid(field, str(text), "expected a number of CPUs like 0.5 or 2") from None
    if cpus < 0 or cpus != cpus:
        raise invalid(field, str(text), "must not be negative")
    return int(cpus * 1e9)


def parse_duration(field: str, text: str | float) -> float:
    """A Go duration (`5s`, `1m30s`) or a number of seconds -> seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip()
        if _DURATION_RE.match(value):
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART_RE.findall(value))
        else:
            try:
                seconds = float(value)
            except ValueError:
                raise invalid(field, value, "expected a duration like 5s, 1m30s or 500ms") from None
    if seconds < 0:
        raise invalid(field, str(text), "must not be negative")
    return seconds


def parse_port(field: str, text: str) -> PortSpec:
    """`published:target[/proto]`, `target[/proto]` (published = target) or docker's long form
    `published=8080,target=80[,protocol=udp][,mode=host]`."""
    if "=" in text:
        parts = dict(kv.partition("=")[::2] for kv in text.split(","))
        unknown = set(parts) - {"published", "target", "protocol", "mode"}
        if unknown:
            raise invalid(
                field, text, f"unknown key {sorted(unknown)[0]} (published, target, protocol, mode)"
            )
        if not parts.get("target", "").isdigit():
            raise invalid(field, text, "target= must be a port number")
        target = int(parts["target"])
        published_text = parts.get("published", str(target))
        protocol = parts.get("protocol", "tcp")
        if (
            not published_text.isdigit()
            or protocol not in ("tcp", "udp")
            or parts.get("mode", "host") != "host"
        ):
            raise invalid(field, text, "expected published=PORT, protocol=tcp|udp, mode=host")
        return _port(field, text, int(published_text), target, protocol)
    m = _PORT_RE.match(text.strip())
    if not m:
        raise invalid(field, text, "expected [published:]target[/tcp|udp], e.g. 8080:80")
    target = int(m.group(2))
    published = int(m.group(1)) if m.group(1) else target
    return _port(field, text, published, target, m.group(3) or "tcp")


def _port(field: str, text: str, published: int, target: int, protocol: str) -> PortSpec:
    for port in (published, target):
        if not 1 <= port <= 65535:
            raise invalid(field, text, "ports must be between 1 and 65535")
    return PortSpec(published=published, target=target, protocol="udp" if protocol == "udp" else "tcp")


def parse_kv(field: str, text: str, value_required: bool = False) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key or (value_required and not sep):
        raise invalid(field, text, "expected KEY=VALUE")
    return key, value
