"""The agent's Prometheus metrics: per-container series (cAdvisor style) read at scrape time,
plus node-level counters and histograms for restarts, image pulls and health probes.

The per-container values are never copied into gauges: each scrape takes the node's records
(`Node.records()`), reads every running container's cgroup files and its `/proc/<pid>/net/dev`
once, and builds the families from that snapshot. A container that vanishes mid-scrape is left
out of that scrape. Building the families from samples is pure (`container_families`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.errors import ShoalError
from agent.metrics_server import family_names, new_registry
from agent.runtime import cgroups
from agent.runtime.cgroups import CgroupStats
from agent.runtime.netdev import NetCounters, read_net_dev

if TYPE_CHECKING:
    from agent.node import Node, Record

log = logging.getLogger(__name__)

SERVICE_LABEL = "com.shoal.service.name"
TASK_LABEL = "com.shoal.task.id"
CONTAINER_LABELS = ("id", "name", "image", "service", "task")
AGENT_STATES = ("running", "exited", "created", "paused")
# Where the agent's own statuses fall among Docker's: restarting in place still counts as running.
_STATE_OF = {"running": "running", "restarting": "running", "exited": "exited", "dead": "exited"}

# Restart delays double from 0.1 s up to the 60 s cap (agent.config.BackoffSettings).
BACKOFF_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 60.0)
PULL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


# ---- pure: what a record says, and the families built from samples -------------------------


@dataclass(frozen=True)
class ContainerView:
    """The parts of a container record the metrics need."""

    id: str
    name: str
    image: str
    service: str
    task: str
    status: str
    pid: int
    restarts: int
    started_at: float
    """Unix time the current run started (0 when never started)."""
    cgroups_path: str
    host_network: bool

    @property
    def labels(self) -> list[str]:
        return [self.id, self.name, self.image, self.service, self.task]


@dataclass(frozen=True)
class ContainerSample:
    view: ContainerView
    cgroup: CgroupStats
    oom_kills: int
    net: NetCounters


def parse_time(text: str) -> float:
    """The agent's RFC 3339 times (`...Z`) -> unix seconds; 0 for empty or unreadable."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0
    except ValueError:
        return 0.0


def view_of(record: Record) -> ContainerView:
    state = record.state  # one read: the state object is replaced whole, never changed in place
    labels = record.config.labels
    return ContainerView(
        id=record.id,
        name=record.name,
        image=record.image,
        service=labels.get(SERVICE_LABEL, ""),
        task=labels.get(TASK_LABEL, ""),
        status=state.status,
        pid=state.pid,
        restarts=state.restart_count,
        started_at=parse_time(state.started_at),
        cgroups_path=record.cgroups_path,
        host_network=record.config.network == "host",
    )


def state_counts(statuses: Iterable[str]) -> dict[str, int]:
    """shoal_agent_containers{state}: every state present, zero when none is in it."""
    counts = dict.fromkeys(AGENT_STATES, 0)
    for status in statuses:
        state = _STATE_OF.get(status, "created")
        counts[state] += 1
    return counts


def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    labels = list(CONTAINER_LABELS)

    def counter(name: str, doc: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=labels)

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    return {
        "cpu": counter("shoal_container_cpu_usage_seconds", "CPU time the container used (cpuacct.usage)."),
        "mem": gauge(
            "shoal_container_memory_working_set_bytes",
            "Memory usage minus inactive page cache (as cAdvisor's working set).",
        ),
        "limit": gauge(
            "shoal_container_memory_limit_bytes", "The container's memory limit; 0 when unlimited."
        ),
        "pids": gauge("shoal_container_pids", "Processes and threads in the container."),
        "rx": counter("shoal_container_network_receive_bytes", "Bytes received on the container's eth0."),
        "tx": counter("shoal_container_network_transmit_bytes", "Bytes sent on the container's eth0."),
        "oom": counter("shoal_container_oom_kills", "Processes of the container the OOM killer killed."),
        "restarts": counter("shoal_container_restarts", "In-place restarts of this container."),
        "start": gauge(
            "shoal_container_start_time_seconds", "Unix time the container's current run started."
        ),
    }


def containers_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "shoal_agent_containers",
        "Containers on this node by state (restarting counts as running).",
        labels=["state"],
    )


def container_families(samples: Sequence[ContainerSample], states: Mapping[str, int]) -> list[Metric]:
    """The per-container families plus shoal_agent_containers, from one scrape's samples."""
    f = _families()
    for s in samples:
        labels = s.view.labels
        f["cpu"].add_metric(labels, s.cgroup.cpu_seconds)
        f["mem"].add_metric(labels, s.cgroup.memory_working_set_bytes)
        f["limit"].add_metric(labels, s.cgroup.memory_limit_bytes or 0)
        f["pids"].add_metric(labels, s.cgroup.pids)
        f["rx"].add_metric(labels, s.net.rx_bytes)
        f["tx"].add_metric(labels, s.net.tx_bytes)
        f["oom"].add_metric(labels, s.oom_kills)
        f["restarts"].add_metric(labels, s.view.restarts)
        f["start"].add_metric(labels, s.view.started_at)
    totals = containers_family()
    for state in AGENT_STATES:
        totals.add_metric([state], states.get(state, 0))
    return [*f.values(), totals]


# ---- I/O: one container's sample -------------------------------------------------------------


def sample(view: ContainerView) -> ContainerSample | None:
    """Read the container's cgroup files and net/dev once each; None when it is gone."""
    try:
        net = NetCounters() if view.host_network else read_net_dev(view.pid)
        stats = cgroups.read_stats(view.cgroups_path)
    except ShoalError:
        return None
    return ContainerSample(view, stats, cgroups.oom_kill_count(view.cgroups_path), net)


class ContainerCollector:
    """A prometheus_client Collector over the node's records (none until a node is attached)."""

    def __init__(self, records: Callable[[], Sequence[Record]] | None = None) -> None:
        self.records = records

    def describe(self) -> Iterator[Metric]:
        yield from _families().values()
        yield containers_family()

    def collect(self) -> Iterator[Metric]:
        views = [view_of(r) for r in self.records()] if self.records is not None else []
        samples = []
        for view in views:
            if view.status == "running" and view.pid > 0:
                s = sample(view)
                if s is not None:
                    samples.append(s)
        yield from container_families(samples, state_counts(v.status for v in views))


# ---- the agent's registry --------------------------------------------------------------------


class AgentMetrics:
    """Everything `shoal agent` exports; constructible without a node (then no container series)."""

    def __init__(self, node: Node | None = None) -> None:
        self.registry = new_registry("agent")
        r = self.registry
        self.restart_backoff = Histogram(
            "shoal_container_restart_backoff_seconds",
            "Delays the agent chose before restarting a container in place.",
            buckets=BACKOFF_BUCKETS,
            registry=r,
        )
        self.pull_duration = Histogram(
            "shoal_image_pull_duration_seconds",
            "Image pulls from a registry, start to finish (successful or not).",
            buckets=PULL_BUCKETS,
            registry=r,
        )
        self.pull_bytes = Counter(
            "shoal_image_pull_bytes_total", "Blob bytes downloaded from registries.", registry=r
        )
        self.pulls = Counter("shoal_image_pulls_total", "Image pulls by result.", ["result"], registry=r)
        self.health_checks = Counter(
            "shoal_health_checks_total",
            "Health probes by result (the probe's, not the health state).",
            ["result"],
            registry=r,
        )
        for result in ("success", "error"):
            self.pulls.labels(result)
        for result in ("success", "failure"):
            self.health_checks.labels(result)
        self.containers = ContainerCollector()
        r.register(self.containers)
        if node is not None:
            self.attach(node)

    def attach(self, node: Node) -> None:
        """Export `node`'s containers from now on."""
        self.containers.records = node.records

    # hooks (each a no-op for callers that hold no metrics object)

    def observe_restart_backoff(self, delay: float) -> None:
        self.restart_backoff.observe(delay)

    def observe_pull(self, seconds: float, blob_bytes: int, ok: bool) -> None:
        self.pull_duration.observe(seconds)
        self.pull_bytes.inc(blob_bytes)
        self.pulls.labels("success" if ok else "error").inc()

    def observe_health(self, passed: bool) -> None:
        """One probe's result: a failure need not make the container unhealthy (retries)."""
        self.health_checks.labels("success" if passed else "failure").inc()


def metric_names() -> set[str]:
    return family_names(AgentMetrics().registry)
