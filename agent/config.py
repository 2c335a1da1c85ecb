"""Agent settings. Every path is configurable so several agents can share one machine."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


def machine_cpus() -> float:
    return float(os.cpu_count() or 1)


def machine_memory() -> int:
    """MemTotal from /proc/meminfo, bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class BackoffSettings:
    """Restart backoff, defaults as the Docker engine."""

    initial: float = 0.1
    """Delay before the first restart, seconds."""
    factor: float = 2.0
    """Multiplier applied after each restart that did not stay up."""
    cap: float = 60.0
    """Largest delay, seconds."""
    reset_after: float = 10.0
    """A run that lasted this long resets the delay to `initial`."""


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path = Path("/var/lib/shoal")
    """Images, containers, volumes and logs (survives agent restarts)."""
    run_dir: Path = Path("/run/shoal")
    """The gRPC socket and runc's state root."""
    runc: str = "runc"
    """runc binary."""
    cgroup_parent: str = "shoal"
    """Containers' cgroups live under /sys/fs/cgroup/<controller>/<cgroup_parent>/<id>."""
    default_registry: str | None = None
    """Registry for short image names (`busybox` -> `<default_registry>/busybox:latest`)."""
    bind_allow: tuple[Path, ...] = ()
    """Host path prefixes that bind mounts may use; empty means none."""
    allow_privileged: bool = False
    allow_host_namespaces: bool = False
    """Permits `--network host`."""
    allowed_cap_add: frozenset[str] = frozenset()
    """Capabilities that `--cap-add` may add beyond Docker's default set."""
    log_max_size: int = 10 * 1024 * 1024
    """Rotate a container's log when it reaches this many bytes."""
    log_max_files: int = 5
    """Log files kept per container, the current one included."""
    stop_timeout: float = 10.0
    """Seconds between the stop signal and SIGKILL."""
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    metrics_address: str = ""
    """HOST:PORT to serve Prometheus metrics on (port 0: any free one); empty: no listener."""

    # ---- cluster membership (all unused unless `etcd` is set) ----
    etcd: str | None = None
    """etcd endpoints, comma-separated `host:port`: register the node and run assigned tasks."""
    node_id: str = field(default_factory=socket.gethostname)
    advertise_address: str = "127.0.0.1"
    """The address other nodes reach this one at (published in the node record)."""
    node_labels: dict[str, str] = field(default_factory=dict)
    """Applied when the node record is created; afterwards labels are the admin's."""
    advertise_cpus: float = field(default_factory=machine_cpus)
    """CPUs the scheduler may place on this node."""
    advertise_memory: int = field(default_factory=machine_memory)
    """Memory the scheduler may place on this node, bytes."""
    node_ttl: float = 3.0
    """Seconds without a keepalive after which the node counts as down."""
    network_env: Path | None = None
    """netplugin's subnet.env: with it, containers join the node's bridge network by default."""
    network_netns: str | None = None
    """The namespace netplugin programs as this node's host (the lab); None: the agent's own."""

    @property
    def network_dir(self) -> Path:
        """IPAM state of the bridge network."""
        return self.state_dir / "network"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def runc_root(self) -> Path:
        return self.run_dir / "runc"

    @property
    def images_dir(self) -> Path:
        return self.state_dir / "images"

    @property
    def containers_dir(self) -> Path:
        return self.state_dir / "containers"

    @property
    def volumes_dir(self) -> Path:
        return self.state_dir / "volumes"

    @property
    def lease_file(self) -> Path:
        """The node's liveness lease, kept so a restarted agent takes it over."""
        return self.state_dir / "node-lease.json"
