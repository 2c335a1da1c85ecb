"""Naming rules for Shoal's metrics that promtool does not enforce (metric catalog, issue #6).

`families(registry)` lists what a registry declares (every collector's describe(), so series that
only exist at times, such as leader-only ones, count too); `naming_problems` checks them, one
message per broken rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agent.metrics_server import Registry

PREFIX = "shoal_"
HISTOGRAM_UNITS = ("_seconds", "_bytes")
NOT_BASE_UNITS = ("milliseconds", "microseconds", "nanoseconds", "ms", "kilobytes", "megabytes", "kb", "mb")
SAMPLE_WORDS = ("count", "sum", "bucket", "total")
"""Words Prometheus appends to sample names: in a gauge's name they read as a counter or histogram."""
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Family:
    name: str
    """As Prometheus sees it: a counter's name includes `_total`."""
    type: str
    help: str


def families(registry: Registry) -> list[Family]:
    """Every family the registry's collectors describe (collect() for those without describe)."""
    out: dict[str, Family] = {}
    for collector in registry.collectors:
        describe = getattr(collector, "describe", None)
        metrics = describe() if describe is not None else collector.collect()
        for metric in metrics:
            # prometheus_client keeps a counter's name without `_total` and always exposes it with.
            name = metric.name + "_total" if metric.type == "counter" else metric.name
            out[name] = Family(name, metric.type, metric.documentation)
    return sorted(out.values(), key=lambda f: f.name)


def naming_problems(found: Iterable[Family]) -> list[str]:
    problems: list[str] = []
    for f in found:
        words = f.name.split("_")
        if not _NAME.fullmatch(f.name):
            problems.append(f"{f.name}: not lower_snake_case")
        if not f.name.startswith(PREFIX):
            problems.append(f"{f.name}: does not start with {PREFIX!r}")
        if not f.help.strip():
            problems.append(f"{f.name}: no help text")
        if any(w in NOT_BASE_UNITS for w in words):
            problems.append(f"{f.name}: not in base units (seconds, bytes)")
        if f.type == "counter":
            if not f.name.endswith("_total"):
                problems.append(f"{f.name}: a counter's name must end in _total")
        elif f.type in ("histogram", "summary"):
            if not f.name.endswith(HISTOGRAM_UNITS):
                problems.append(f"{f.name}: a {f.type}'s name must end in _seconds or _bytes")
        elif any(w in SAMPLE_WORDS for w in words):
            problems.append(f"{f.name}: a {f.type} must not have _count, _sum, _bucket or _total in its name")
    return problems
