"""Agent settings. Every path is configurable so several agents can share one machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
