"""What every Shoal daemon shares for Prometheus: `shoal_build_info` and the `/metrics` listener.

Each daemon keeps its own CollectorRegistry (not the global one), so several controllers or agents
in one test process never collide.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.registry import Collector

from agent.errors import Unavailable, invalid

log = logging.getLogger(__name__)


def shoal_version() -> str:
    try:
        return version("shoal")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "0.0.0+unknown"


class Registry(CollectorRegistry):
    """A CollectorRegistry that lists its collectors (prometheus_client keeps its list private)."""

    def __init__(self) -> None:
        super().__init__(auto_describe=True)
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self.collectors.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self.collectors.remove(collector)


def new_registry(component: str) -> Registry:
    """A registry holding `shoal_build_info{component,version,python_version} 1`."""
    registry = Registry()
    info = Gauge(
        "shoal_build_info",
        "Always 1; labels say which Shoal build and component this is.",
        ["component", "version", "python_version"],
        registry=registry,
    )
    info.labels(component, shoal_version(), platform.python_version()).set(1)
    return registry


def family_names(registry: Registry) -> set[str]:
    """Every family the registry's collectors describe, named as exposed (counters with `_total`).
    Described, not collected: a collector may export nothing at the moment (a controller that
    does not lead)."""
    names: set[str] = set()
    for collector in list(registry.collectors):
        describe = getattr(collector, "describe", None) or collector.collect
        for family in describe():
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


@dataclass
class MetricsServer:
    server: WSGIServer
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_address(flag: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise invalid(flag, value, "expected HOST:PORT (port 0 picks a free one)")
    return host.strip("[]"), int(port)


def serve_metrics(
    address: str, registry: CollectorRegistry, flag: str = "--metrics-address"
) -> MetricsServer:
    """Serve `registry` on http://HOST:PORT/metrics in a daemon thread (port 0 picks one). Daemons
    call this first, so a taken port fails (one line, Unavailable) before anything else starts."""
    host, port = parse_address(flag, address)
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise Unavailable(f"{flag} {address}: cannot listen: {e.strerror or e}") from None
    metrics = MetricsServer(server, host, int(server.server_address[1]))
    log.info("serving metrics on %s", metrics.url)
    return metrics
