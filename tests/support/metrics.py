"""Reading a daemon's /metrics as Prometheus would: find the URL it logged, scrape, lint, parse."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import wait_for

PROMTOOL = "/usr/bin/promtool"
_URL_RE = re.compile(r"serving metrics on (http://\S+/metrics)")

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""(sample name, labels) -> value."""


def logged_url(log_file: Path, alive: Callable[[], bool], timeout: float = 30) -> str:
    """The URL a daemon logged ("serving metrics on http://...") once it started its listener."""
    found: list[str] = []

    def logged() -> bool:
        assert alive(), f"the daemon exited:\n{log_file.read_text(errors='replace')}"
        m = _URL_RE.search(log_file.read_text(errors="replace")) if log_file.exists() else None
        if m:
            found.append(m.group(1))
        return bool(m)

    wait_for(logged, timeout=timeout, what=f"a metrics URL in {log_file}")
    return found[0]


# No proxy: urlopen() would send a loopback scrape to $http_proxy when one is set.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(url: str) -> str:
    with _DIRECT.open(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on the exposition (stdin), as an operator would lint it."""
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def parse(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def values(series: Series, name: str, /, **labels: str) -> list[tuple[dict[str, str], float]]:
    """Samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return [(dict(lbls), v) for (n, lbls), v in series.items() if n == name and want <= lbls]


def value(series: Series, name: str, /, **labels: str) -> float:
    """The one sample of `name` matching `labels`."""
    found = values(series, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0][1]
