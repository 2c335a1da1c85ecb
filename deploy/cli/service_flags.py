"""`shoal service create|update` flags -> a ServiceSpec. Pure: parsing and merging, no I/O.

Values are checked here only as far as parsing needs (a size must be a size); the controller
validates the resulting spec as a whole and its error names the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.errors import invalid
from controller.api.types import Mount, PortSpec, RestartPolicy, ServiceSpec
from deploy.cli.health_flags import HealthFlags, apply_health_flags
from deploy.cli.update_flags import UpdateFlags, apply_update_flags
from deploy.values import parse_bytes, parse_cpus, parse_duration, parse_kv, parse_port


@dataclass(frozen=True)
class SpecFlags:
    """Every flag that sets part of a spec; None (or empty) leaves that part as it is."""

    image: str | None = None
    command: list[str] | None = None
    entrypoint: str | None = None
    mode: str | None = None
    replicas: int | None = None
    max_concurrent: int | None = None
    env_add: list[str] = field(default_factory=list)
    env_rm: list[str] = field(default_factory=list)
    label_add: list[str] = field(default_factory=list)
    label_rm: list[str] = field(default_factory=list)
    constraint_add: list[str] = field(default_factory=list)
    constraint_rm: list[str] = field(default_factory=list)
    pref_add: list[str] = field(default_factory=list)
    pref_rm: list[str] = field(default_factory=list)
    publish_add: list[str] = field(default_factory=list)
    publish_rm: list[str] = field(default_factory=list)
    max_replicas_per_node: int | None = None
    reserve_memory: str | None = None
    reserve_cpu: str | None = None
    limit_memory: str | None = None
    limit_cpu: str | None = None
    limit_pids: int | None = None
    restart_condition: str | None = None
    restart_delay: str | None = None
    restart_max_attempts: int | None = None
    restart_window: str | None = None
    mount_add: list[str] = field(default_factory=list)
    mount_rm: list[str] = field(default_factory=list)
    """Container paths (targets) whose mounts go."""
    user: str | None = None
    workdir: str | None = None
    stop_signal: str | None = None
    stop_grace_period: str | None = None
    health: HealthFlags = field(default_factory=HealthFlags)
    """--health-* and --no-healthcheck."""
    update: UpdateFlags = field(default_factory=UpdateFlags)
    """--update-*."""
    rollback: UpdateFlags = field(default_factory=UpdateFlags)
    """--rollback-*."""


def build_spec(name: str, flags: SpecFlags) -> ServiceSpec:
    """`service create`: a new spec from the flags."""
    if not flags.image:
        raise invalid("IMAGE", "", "an image is required")
    base = ServiceSpec(name=name, image=flags.image)
    if flags.mode == "replicated-job":
        # A job's tasks must be able to end: docker's default condition for jobs is on-failure
        # ("any" would restart a finished task in place forever).
        base = base.model_copy(update={"restart_policy": RestartPolicy(condition="on-failure")})
    return apply_flags(base, flags)


def apply_flags(spec: ServiceSpec, flags: SpecFlags) -> ServiceSpec:
    """`service update`: the spec with the flags applied (removals first, then additions)."""
    data: dict[str, Any] = spec.model_dump()
    if flags.image is not None:
        data["image"] = flags.image
    if flags.command is not None:
        data["command"] = flags.command or None
    if flags.entrypoint is not None:
        data["entrypoint"] = flags.entrypoint.split() or None
    if flags.mode is not None:
        if flags.mode not in ("replicated", "global", "replicated-job"):
            raise invalid("--mode", flags.mode, "expected replicated, global or replicated-job")
        data["mode"] = flags.mode
    if flags.replicas is not None:
        if flags.replicas < 0:
            raise invalid("--replicas", str(flags.replicas), "must not be negative")
        # For a job, --replicas is how many completions it needs (as docker's).
        data["total_completions" if data["mode"] == "replicated-job" else "replicas"] = flags.replicas
    if flags.max_concurrent is not None:
        data["max_concurrent"] = flags.max_concurrent
    data["env"] = _merge_env(data["env"], flags.env_add, flags.env_rm)
    labels = {k: v for k, v in data["labels"].items() if k not in flags.label_rm}
    labels.update(parse_kv("--label", item) for item in flags.label_add)
    data["labels"] = labels
    placement = data["placement"]
    placement["constraints"] = _merge_list(
        placement["constraints"], flags.constraint_add, flags.constraint_rm
    )
    placement["preferences"] = _merge_list(placement["preferences"], flags.pref_add, flags.pref_rm)
    if flags.max_replicas_per_node is not None:
        placement["max_replicas_per_node"] = flags.max_replicas_per_node
    data["ports"] = _merge_ports(data["ports"], flags.publish_add, flags.publish_rm)
    res = data["resources"]
    if flags.reserve_memory is not None:
        res["reservations"]["memory_bytes"] = parse_bytes("--reserve-memory", flags.reserve_memory)
    if flags.reserve_cpu is not None:
        res["reservations"]["nano_cpus"] = parse_cpus("--reserve-cpu", flags.reserve_cpu)
    if flags.limit_memory is not None:
        res["limits"]["memory_bytes"] = parse_bytes("--limit-memory", flags.limit_memory)
    if flags.limit_cpu is not None:
        res["limits"]["nano_cpus"] = parse_cpus("--limit-cpu", flags.limit_cpu)
    if flags.limit_pids is not None:
        res["limits"]["pids"] = flags.limit_pids
    restart = data["restart_policy"]
    if flags.restart_condition is not None:
        if flags.restart_condition not in ("none", "on-failure", "any"):
            raise invalid("--restart-condition", flags.restart_condition, "expected none, on-failure or any")
        restart["condition"] = flags.restart_condition
    if flags.restart_delay is not None:
        restart["delay"] = parse_duration("--restart-delay", flags.restart_delay)
    if flags.restart_max_attempts is not None:
        restart["max_attempts"] = flags.restart_max_attempts
    if flags.restart_window is not None:
        restart["window"] = parse_duration("--restart-window", flags.restart_window)
    mounts = [m for m in data["mounts"] if m["target"] not in flags.mount_rm]
    for text in flags.mount_add:
        new = parse_mount(text)
        mounts = [m for m in mounts if m["target"] != new.target] + [new.model_dump()]
    data["mounts"] = mounts
    for key, value in (
        ("user", flags.user),
        ("working_dir", flags.workdir),
        ("stop_signal", flags.stop_signal),
    ):
        if value is not None:
            data[key] = value or None  # "" goes back to the image's setting
    if flags.stop_grace_period is not None:
        data["stop_grace_period"] = parse_duration("--stop-grace-period", flags.stop_grace_period)
    data["healthcheck"] = apply_health_flags(data["healthcheck"], flags.health)
    data["update_config"] = apply_update_flags(data["update_config"], flags.update, "update")
    data["rollback_config"] = apply_update_flags(data["rollback_config"], flags.rollback, "rollback")
    return ServiceSpec.model_validate(data)


_MOUNT_KEYS = {"type": "type", "source": "source", "src": "source", "target": "target"}
_MOUNT_KEYS |= {"destination": "target", "dst": "target", "readonly": "read_only", "ro": "read_only"}


def parse_mount(text: str) -> Mount:
    """Docker's `--mount type=volume|bind,source=S,target=T[,readonly]` (type defaults to volume)."""
    fields: dict[str, Any] = {"type": "volume"}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        name = _MOUNT_KEYS.get(key.strip().lower())
        if name is None:
            raise invalid("--mount", text, f"unknown key {key!r} (expected type, source, target, readonly)")
        if name == "read_only":
            if value.lower() not in ("", "true", "1", "false", "0") or (sep and not value):
                raise invalid("--mount", text, "readonly takes no value, or true|false")
            fields[name] = value.lower() in ("", "true", "1")
        else:
            fields[name] = value
    if fields["type"] not in ("volume", "bind"):
        raise invalid("--mount", text, "type must be volume or bind")
    for required in ("source", "target"):
        if not fields.get(required):
            raise invalid("--mount", text, f"{required}= is required")
    return Mount.model_validate(fields)


def _merge_list(items: list[str], add: list[str], rm: list[str]) -> list[str]:
    kept = [i for i in items if i not in rm]
    return kept + [a for a in add if a not in kept]


def _merge_env(env: list[str], add: list[str], rm: list[str]) -> list[str]:
    """By variable name: `--env-rm KEY`, and `--env-add KEY=V` replaces KEY's earlier value."""
    out: dict[str, str] = {}
    for item in env:
        out[item.partition("=")[0]] = item
    for key in rm:
        out.pop(key.partition("=")[0], None)
    for item in add:
        key, _ = parse_kv("--env", item, value_required=True)
        out[key] = item
    return list(out.values())


def _merge_ports(ports: list[dict[str, Any]], add: list[str], rm: list[str]) -> list[dict[str, Any]]:
    """`--publish-rm` takes the published port (as `8080` or `8080/udp`) or a whole spec."""
    gone: set[tuple[int, str]] = set()
    for text in rm:
        number, _, proto = text.partition("/")
        if number.isdigit():
            gone.add((int(number), proto or "tcp"))
        else:
            p = parse_port("--publish-rm", text)
            gone.add((p.published, p.protocol))
    kept = [p for p in ports if (p["published"], p["protocol"]) not in gone]
    for text in add:
        new = parse_port("--publish", text)
        kept = [p for p in kept if (p["published"], p["protocol"]) != (new.published, new.protocol)]
        kept.append(new.model_dump())
    return [PortSpec.model_validate(p).model_dump() for p in kept]
