"""Data the agent's API takes and returns, plus parsers for Docker-style flag values.

The parsers are pure and shared: the CLI uses them to give early errors and the agent
runs the same validation again before anything is written.
"""

from __future__ import annotations

import re
import signal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import invalid

# The service spec's HealthCheck is the agent's too (types.py imports only pydantic: no cycle).
from controller.api.types import HealthCheck as HealthCheck
from netplugin.ports import PortMapping, parse_port

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MIN_MEMORY = 6 * 1024 * 1024  # the Docker engine's lower bound


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MountSpec(Model):
    type: Literal["volume", "bind", "tmpfs"]
    source: str = ""
    """Volume name, host path, or empty for tmpfs."""
    target: str
    read_only: bool = False


class RestartPolicy(Model):
    name: Literal["no", "always", "on-failure", "unless-stopped"] = "no"
    max_retries: int = 0
    """For on-failure: 0 means unlimited."""


class Resources(Model):
    memory_bytes: int | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None


HEALTH_TEST_KINDS = ("CMD", "CMD-SHELL", "NONE")


class ContainerCreate(Model):
    """What `shoal container run` asks for (Docker's `docker run` model)."""

    image: str
    name: str | None = None
    command: list[str] | None = None
    """Replaces the image's Cmd."""
    entrypoint: list[str] | None = None
    """Replaces the image's Entrypoint (and then Cmd is dropped unless `command` is given)."""
    env: list[str] = Field(default_factory=list)
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    mounts: list[MountSpec] = Field(default_factory=list)
    restart: RestartPolicy = RestartPolicy()
    resources: Resources = Resources()
    network: Literal["default", "none", "host", "bridge"] = "default"
    """default: the node's bridge network when netplugin runs on the node, else none."""
    publish: list[str] = Field(default_factory=list)
    """Host ports to publish (bridge network only): `8080:80`, `8080:80/udp`."""
    stop_signal: str | None = None
    stop_timeout: float | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    privileged: bool = False
    cap_add: list[str] = Field(default_factory=list)
    healthcheck: HealthCheck | None = None
    """None or test ["NONE"]: no probes (health is not reported)."""


ContainerStatus = Literal["created", "running", "restarting", "exited", "dead"]


class ContainerState(Model):
    status: ContainerStatus = "created"
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    manually_stopped: bool = False
    """Set by `stop`/`kill`: unless-stopped and always do not restart it (until start)."""


class HealthLogEntry(Model):
    """One probe's result, as Docker's State.Health.Log."""

    start: str
    end: str
    exit_code: int
    """-1 when the probe could not run or timed out."""
    output: str


HealthStatus = Literal["starting", "healthy", "unhealthy"]


class HealthState(Model):
    """Of a running container with a healthcheck; not persisted (a restarted agent starts over)."""

    status: HealthStatus = "starting"
    failing_streak: int = 0
    log: list[HealthLogEntry] = Field(default_factory=list)
    """The last few results, oldest first."""


class ContainerInfo(Model):
    """What `inspect` returns."""

    id: str
    name: str
    created: str
    image: str
    image_id: str
    config: ContainerCreate
    args: list[str]
    """The resolved process argv (entrypoint + cmd)."""
    env: list[str]
    state: ContainerState
    mounts: list[MountSpec]
    rootfs: str
    log_path: str
    ip_address: str = ""
    """On the bridge network: the container's address on the node's subnet."""
    health: HealthState | None = None
    """When it has a healthcheck: the current run's, else the last run's (kept after the exit until
    the agent restarts: health is not persisted)."""


# ---- flag value parsers -----------------------------------------------------------------


def parse_size(field: str, text: str) -> int:
    """`512m`, `1g`, `1048576` -> bytes (binary units, as Docker)."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise invalid(field, text, "expected a positive size like 512m, 1g or 1048576")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise invalid(field, text, "must be greater than zero")
    return value


def parse_memory(text: str) -> int:
    value = parse_size("--memory", text)
    if value < MIN_MEMORY:
        raise invalid("--memory", text, "minimum memory limit is 6m")
    return value


def parse_cpus(text: str) -> int:
    """`1.5` -> nano CPUs."""
    try:
        cpus = float(text)
    except ValueError:
        raise invalid("--cpus", text, "expected a number of CPUs like 0.5 or 2") from None
    if not cpus > 0:
        raise invalid("--cpus", text, "must be greater than zero")
    return int(cpus * 1e9)


def parse_pids_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise invalid("--pids-limit", text, "expected a whole number") from None
    if value <= 0:
        raise invalid("--pids-limit", text, "must be greater than zero")
    return value


def parse_restart(text: str) -> RestartPolicy:
    """`no`, `always`, `unless-stopped`, `on-failure[:max]`."""
    name, _, count = text.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise invalid("--restart", text, "expected no, always, on-failure[:max-retries] or unless-stopped")
    if count and name != "on-failure":
        raise invalid("--restart", text, "a maximum retry count is only allowed with on-failure")
    retries = 0
    if count:
        if not count.isdigit():
            raise invalid("--restart", text, "the maximum retry count must be a whole number")
        retries = int(count)
    return RestartPolicy(name=name, max_retries=retries)


def parse_env(items: list[str]) -> list[str]:
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if not ENV_KEY_RE.match(key):
            raise invalid("-e", item, "expected KEY=value with a name of letters, digits and _")
        out.append(item if sep else f"{key}=")
    return out


def parse_volume(text: str) -> MountSpec:
    """`-v` syntax: `name:/path[:ro]` (named volume) or `/host:/path[:ro]` (bind)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise invalid("-v", text, "expected SOURCE:TARGET[:ro|rw]")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise invalid("-v", text, "the mode must be ro or rw")
    validate_container_path("-v", target)
    if source.startswith("/"):
        validate_host_path("-v", source)
        return MountSpec(type="bind", source=source, target=target, read_only=mode == "ro")
    validate_name("-v", source)
    return MountSpec(type="volume", source=source, target=target, read_only=mode == "ro")


def parse_tmpfs(text: str) -> MountSpec:
    target = text.split(":", 1)[0]
    validate_container_path("--tmpfs", target)
    return MountSpec(type="tmpfs", target=target)


def validate_name(field: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise invalid(field, name, "names start with a letter or digit and use only [a-zA-Z0-9_.-]")


def validate_container_path(field: str, path: str) -> None:
    if not path.startswith("/"):
        raise invalid(field, path, "the container path must be absolute")
    if ".." in path.split("/"):
        raise invalid(field, path, "paths may not contain '..'")


def validate_host_path(field: str, path: str) -> None:
    if not path.startswith("/"):
        raise invalid(field, path, "the host path must be absolute")
    if ".." in path.split("/"):
        raise invalid(field, path, "paths may not contain '..'")


def parse_signal(field: str, text: str) -> int:
    """`TERM`, `SIGTERM` or `15` -> signal number."""
    name = text.upper()
    if name.isdigit():
        num = int(name)
        if 0 < num < signal.NSIG:
            return num
    else:
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return int(signal.Signals[name])
        except KeyError:
            pass
    raise invalid(field, text, "expected a signal name like SIGTERM or a number")


def validate_create(req: ContainerCreate) -> None:
    """Checks that do not need the agent's state (the agent adds policy checks)."""
    if req.name is not None:
        validate_name("--name", req.name)
    if not req.image:
        raise invalid("image", req.image, "an image is required")
    parse_env(req.env)
    for m in req.mounts:
        validate_container_path("mount target", m.target)
        if m.type == "bind":
            validate_host_path("bind source", m.source)
        elif m.type == "volume":
            validate_name("volume name", m.source)
    r = req.resources
    if r.memory_bytes is not None and r.memory_bytes < MIN_MEMORY:
        raise invalid("--memory", r.memory_bytes, "minimum memory limit is 6m")
    if r.nano_cpus is not None and r.nano_cpus <= 0:
        raise invalid("--cpus", r.nano_cpus, "must be greater than zero")
    if r.pids_limit is not None and r.pids_limit <= 0:
        raise invalid("--pids-limit", r.pids_limit, "must be greater than zero")
    if req.restart.max_retries < 0:
        raise invalid("--restart", req.restart.max_retries, "the maximum retry count must not be negative")
    parse_publish(req.publish)
    if req.stop_signal is not None:
        parse_signal("--stop-signal", req.stop_signal)
    if req.stop_timeout is not None and req.stop_timeout < 0:
        raise invalid("--stop-timeout", req.stop_timeout, "must not be negative")
    if req.healthcheck is not None:
        validate_healthcheck("healthcheck", req.healthcheck)


def validate_healthcheck(field: str, hc: HealthCheck) -> None:
    """Docker's rules; `field` prefixes the field names in errors (`healthcheck.interval`)."""
    if not hc.test:
        raise invalid(f"{field}.test", hc.test, 'must not be empty (use ["NONE"] to disable)')
    kind = hc.test[0]
    if kind not in HEALTH_TEST_KINDS:
        raise invalid(f"{field}.test", hc.test, "must start with CMD, CMD-SHELL or NONE")
    if kind != "NONE" and not any(word.strip() for word in hc.test[1:]):
        raise invalid(f"{field}.test", hc.test, f"{kind} needs a command after it")
    if any("\0" in word for word in hc.test):
        raise invalid(f"{field}.test", hc.test, "may not contain NUL")
    for name in ("interval", "timeout"):
        value = getattr(hc, name)
        if not value > 0 or value == float("inf"):
            raise invalid(f"{field}.{name}", value, "must be a duration greater than zero")
    if not 0 <= hc.start_period < float("inf"):
        raise invalid(f"{field}.start_period", hc.start_period, "must not be negative")
    if hc.retries < 1:
        raise invalid(f"{field}.retries", hc.retries, "must be at least 1")


# ---- API results ------------------------------------------------------------------------


class LogEntry(Model):
    time: str
    """RFC 3339 with nanoseconds, UTC."""
    stream: Literal["stdout", "stderr"]
    line: str
    """The text including its trailing newline, when it had one."""


class ExecChunk(Model):
    """One piece of an exec's output; the last chunk carries the exit code."""

    stream: Literal["stdout", "stderr", "exit"]
    data: str = ""
    exit_code: int | None = None


class ContainerStats(Model):
    id: str
    name: str
    cpu_seconds: float
    memory_working_set_bytes: int
    memory_limit_bytes: int | None
    pids: int
    network_rx_bytes: int = 0
    """On the container's eth0 (0 on network none or host)."""
    network_tx_bytes: int = 0


class ProcessInfo(Model):
    pid: int
    """The pid on the host."""
    user: str
    command: str


class Change(Model):
    kind: Literal["A", "C", "D"]
    path: str


class ImageInfo(Model):
    id: str
    """The config digest (sha256:...), as Docker's image ID."""
    repo_tags: list[str]
    repo_digests: list[str]
    size: int
    """Sum of the compressed layer sizes, bytes."""
    created: str
    layers: list[str]
    """Layer diff IDs, base first."""
    dangling: bool = False


def parse_publish(specs: list[str]) -> list[PortMapping]:
    """`8080:80`, `8080:80/udp` -> mappings; InvalidArgument naming the bad one."""
    mappings = [parse_port(spec, "--publish") for spec in specs]
    seen: set[tuple[int, str]] = set()
    for spec, m in zip(specs, mappings, strict=True):
        if (m.host_port, m.protocol) in seen:
            raise invalid("--publish", spec, f"host port {m.host_port}/{m.protocol} is published twice")
        seen.add((m.host_port, m.protocol))
    return mappings
