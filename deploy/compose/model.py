"""The part of the Compose specification a Shoal cluster honours, as pydantic models.

`split_ignored` first takes out the keys a cluster cannot honour (they are listed in one
warning); what remains must match these models exactly (unknown keys are errors there).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool | None


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class RestartPolicyC(Strict):
    condition: Literal["none", "on-failure", "any"] = "any"
    delay: str | float | None = None
    max_attempts: int | None = Field(default=None, ge=0)
    window: str | float | None = None


class AmountsC(Strict):
    cpus: str | float | None = None
    memory: str | int | None = None
    pids: int | None = Field(default=None, ge=0)


class ResourcesC(Strict):
    limits: AmountsC = AmountsC()
    reservations: AmountsC = AmountsC()


class PreferenceC(Strict):
    spread: str


class PlacementC(Strict):
    constraints: list[str] = Field(default_factory=list)
    preferences: list[PreferenceC] = Field(default_factory=list)
    max_replicas_per_node: int | None = Field(default=None, ge=0)


class UpdateConfigC(Strict):
    """deploy.update_config / deploy.rollback_config (Compose's keys; unset keys keep Docker's defaults)."""

    parallelism: int | None = Field(default=None, ge=0)
    delay: str | float | None = None
    failure_action: Literal["pause", "continue", "rollback"] | None = None
    monitor: str | float | None = None
    max_failure_ratio: float | None = Field(default=None, ge=0, le=1)
    order: Literal["stop-first", "start-first"] | None = None


class DeployC(Strict):
    mode: Literal["replicated", "global", "replicated-job"] = "replicated"
    replicas: int | None = Field(default=None, ge=0)
    restart_policy: RestartPolicyC | None = None
    resources: ResourcesC = ResourcesC()
    placement: PlacementC = PlacementC()
    labels: list[str] | dict[str, Scalar] = Field(default_factory=dict)
    update_config: UpdateConfigC | None = None
    rollback_config: UpdateConfigC | None = None


class PortC(Strict):
    target: int = Field(ge=1, le=65535)
    published: int | str | None = None
    protocol: Literal["tcp", "udp"] = "tcp"
    mode: Literal["host", "ingress"] = "ingress"
    name: str | None = None
    app_protocol: str | None = None


class VolumeC(Strict):
    """A service's `volumes:` entry in the long syntax."""

    type: Literal["volume", "bind"]
    source: str | None = None
    target: str = Field(min_length=1)
    read_only: bool = False
    consistency: str | None = None
    """Docker Desktop's hint; no effect on Linux."""


class VolumeDeclC(Strict):
    """A top-level `volumes:` declaration. Volumes live on each node (local driver) and are created
    on first use; `name` and `external` choose the name, as in Compose."""

    name: str | None = None
    external: bool = False
    driver: Literal["local"] | None = None
    labels: list[str] | dict[str, Scalar] = Field(default_factory=dict)


class HealthcheckC(Strict):
    """`test` as a string is run by the container's shell (CMD-SHELL); `disable: true` = no check."""

    test: str | list[str] | None = None
    interval: str | float | None = None
    timeout: str | float | None = None
    retries: int | None = None
    start_period: str | float | None = None
    disable: bool = False


class ServiceC(Strict):
    image: str = Field(min_length=1)
    command: str | list[str] | None = None
    entrypoint: str | list[str] | None = None
    environment: list[str] | dict[str, Scalar] = Field(default_factory=list)
    env_file: str | list[str] = Field(default_factory=list)
    ports: list[int | str | PortC] = Field(default_factory=list)
    labels: list[str] | dict[str, Scalar] = Field(default_factory=dict)
    volumes: list[VolumeC | str] = Field(default_factory=list)
    """Long syntax first, so a bad mapping is reported against its keys."""
    user: str | int | None = None
    working_dir: str | None = None
    stop_signal: str | None = None
    stop_grace_period: str | float | None = None
    healthcheck: HealthcheckC | None = None
    deploy: DeployC = DeployC()


class ComposeC(Strict):
    services: dict[str, ServiceC] = Field(min_length=1)
    volumes: dict[str, VolumeDeclC | None] = Field(default_factory=dict)
    name: str | None = None


# Keys that are part of Compose but that a cluster (or Shoal's ServiceSpec, for now) cannot carry.
IGNORED_TOP = {"version", "networks", "configs", "secrets", "x-"}
IGNORED_SERVICE = {
    "build",
    "depends_on",
    "container_name",
    "networks",
    "restart",
    "hostname",
    "links",
    "external_links",
    "network_mode",
    "privileged",
    "cap_add",
    "cap_drop",
    "devices",
    "dns",
    "dns_search",
    "extra_hosts",
    "logging",
    "tmpfs",
    "ulimits",
    "init",
    "tty",
    "stdin_open",
    "expose",
    "secrets",
    "configs",
    "profiles",
    "pull_policy",
    "platform",
    "read_only",
    "shm_size",
    "sysctls",
    "security_opt",
    "cgroup_parent",
    "domainname",
    "ipc",
    "pid",
    "mem_limit",
    "cpus",
    "mem_reservation",
    "pids_limit",
}
IGNORED_DEPLOY = {"endpoint_mode"}
IGNORED_HEALTHCHECK = {"start_interval"}
"""Shoal's checks have no faster probing during start_period: the interval applies throughout."""


def split_ignored(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The document without the ignorable keys, and those keys' paths (`services.web.build`)."""
    ignored: list[str] = []
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in IGNORED_TOP or str(key).startswith("x-"):
            if key != "version":  # obsolete, and harmless: Compose itself ignores it
                ignored.append(str(key))
            continue
        out[key] = value
    services = out.get("services")
    if isinstance(services, dict):
        cleaned: dict[str, Any] = {}
        for name, service in services.items():
            if not isinstance(service, dict):
                cleaned[name] = service
                continue
            kept = {}
            for key, value in service.items():
                if key in IGNORED_SERVICE or str(key).startswith("x-"):
                    ignored.append(f"services.{name}.{key}")
                else:
                    kept[key] = value
            deploy = kept.get("deploy")
            if isinstance(deploy, dict):
                for key in sorted(set(deploy) & IGNORED_DEPLOY):
                    ignored.append(f"services.{name}.deploy.{key}")
                kept["deploy"] = {k: v for k, v in deploy.items() if k not in IGNORED_DEPLOY}
            healthcheck = kept.get("healthcheck")
            if isinstance(healthcheck, dict):
                for key in sorted(set(healthcheck) & IGNORED_HEALTHCHECK):
                    ignored.append(f"services.{name}.healthcheck.{key}")
                kept["healthcheck"] = {k: v for k, v in healthcheck.items() if k not in IGNORED_HEALTHCHECK}
            cleaned[name] = kept
        out["services"] = cleaned
    return out, ignored
