"""A Compose file -> the ServiceSpecs of a stack (`<stack>_<service>`, labelled with the stack's
namespace). Everything is checked before anything is returned: one bad value and no spec is."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agent.errors import InvalidArgument
from agent.models import validate_healthcheck
from controller.api.types import (
    HealthCheck,
    Mount,
    Placement,
    PortSpec,
    ResourceAmounts,
    Resources,
    RestartPolicy,
    ServiceSpec,
    UpdateConfig,
)
from deploy.compose import NAMESPACE_LABEL
from deploy.compose.interpolate import Interpolation
from deploy.compose.load import compose_error, parse_yaml, read_text
from deploy.compose.model import (
    AmountsC,
    ComposeC,
    HealthcheckC,
    PortC,
    Scalar,
    ServiceC,
    UpdateConfigC,
    VolumeC,
    VolumeDeclC,
    split_ignored,
)
from deploy.values import parse_bytes, parse_cpus, parse_duration, parse_port

MAX_ENV_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Stack:
    name: str
    specs: list[ServiceSpec]
    ignored: list[str] = field(default_factory=list)
    """Paths of keys that were ignored (one warning lists them)."""
    unset: list[str] = field(default_factory=list)
    """Variables used but not set (they became empty strings)."""
    ingress: list[str] = field(default_factory=list)
    """Paths of ports in ingress mode (Compose's default), published in host mode instead."""

    def warnings(self) -> list[str]:
        out = []
        if self.ignored:
            out.append(
                "Ignoring unsupported options: " + ", ".join(self.ignored) + " (a cluster cannot honour them)"
            )
        for name in self.unset:
            out.append(f'The "{name}" variable is not set. Defaulting to a blank string.')
        if self.ingress:
            out.append(
                "Publishing " + ", ".join(self.ingress) + " in host mode: Shoal has no ingress routing"
                " mesh, so a port answers only on the nodes running one of its tasks"
                " (say mode: host to silence this)"
            )
        return out


def load_stack(path: Path, stack: str, env: Mapping[str, str]) -> Stack:
    file = str(path)
    _check_stack_name(stack)
    doc = parse_yaml(read_text(path), file)
    if not isinstance(doc, dict):
        raise compose_error(file, "", "expected a mapping with a services: section at the top")
    interpolation = Interpolation(env, file)
    doc = interpolation.value(doc, "")
    cleaned, ignored = split_ignored(doc)
    try:
        model = ComposeC.model_validate(cleaned)
    except ValidationError as exc:
        raise _from_pydantic(file, cleaned, exc) from None
    volumes = {key: _volume_name(stack, key, decl) for key, decl in model.volumes.items()}
    specs = [
        _spec(file, path.parent, stack, name, service, env, volumes)
        for name, service in sorted(model.services.items())
    ]
    ingress = [
        f"services.{name}.ports[{i}]"
        for name, service in sorted(model.services.items())
        for i, p in enumerate(service.ports)
        if not (isinstance(p, PortC) and p.mode == "host")
    ]
    return Stack(stack, specs, ignored, interpolation.unset, ingress)


def _check_stack_name(stack: str) -> None:
    from controller.api.validation import validate_name

    try:
        validate_name(stack)
    except InvalidArgument as exc:
        raise InvalidArgument(str(exc).replace("invalid name", "invalid stack name", 1)) from None


def _from_pydantic(file: str, data: Any, exc: ValidationError) -> InvalidArgument:
    """pydantic's first error, its location reduced to the keys the user wrote (union branches
    like `list[str]` are pydantic's, not the file's)."""
    first = exc.errors(include_url=False)[0]
    path = ""
    here = data
    for part in first["loc"]:
        if isinstance(here, dict) and part in here:
            here = here[part]
            path += f".{part}" if path else str(part)
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            here = here[part]
            path += f"[{part}]"
        elif (
            first["type"] in ("missing", "extra_forbidden")
            and isinstance(part, str)
            and part == first["loc"][-1]
        ):
            path += f".{part}" if path else part
    if first["type"] == "missing":
        return compose_error(file, path, "this field is required")
    if first["type"] == "extra_forbidden":
        return compose_error(file, path, "unknown key (not part of what Compose on a cluster accepts here)")
    rule = first["msg"][:1].lower() + first["msg"][1:]
    return compose_error(file, path, f"{here!r}: {rule}")


def _volume_name(stack: str, key: str, decl: VolumeDeclC | None) -> str:
    """A declared volume's name on the nodes: `<stack>_<key>` (namespaced, as `docker stack deploy`
    does) unless the declaration names it or marks it external."""
    if decl is not None and decl.name:
        return decl.name
    if decl is not None and decl.external:
        return key
    return f"{stack}_{key}"


def _spec(
    file: str,
    base: Path,
    stack: str,
    name: str,
    s: ServiceC,
    env: Mapping[str, str],
    volumes: Mapping[str, str],
) -> ServiceSpec:
    where = f"services.{name}"

    def wrap(field: str, fn: Any, *args: Any) -> Any:
        """Run a value parser with the field named by its path in the file."""
        try:
            return fn(*args)
        except InvalidArgument as exc:
            raise compose_error(file, f"{where}.{field}", _rule_of(exc)) from None

    d = s.deploy
    labels = _mapping(file, f"{where}.labels", s.labels) | _mapping(file, f"{where}.deploy.labels", d.labels)
    labels[NAMESPACE_LABEL] = stack
    environment: dict[str, str] = {}
    env_files = [s.env_file] if isinstance(s.env_file, str) else s.env_file
    for i, env_file in enumerate(env_files):
        environment |= _read_env_file(file, f"{where}.env_file[{i}]", base / env_file)
    environment |= _environment(s.environment, env)
    restart = RestartPolicy(condition="on-failure") if d.mode == "replicated-job" else RestartPolicy()
    if d.restart_policy is not None:
        rp = d.restart_policy
        restart = RestartPolicy(
            condition=rp.condition,
            delay=restart.delay
            if rp.delay is None
            else wrap("deploy.restart_policy.delay", parse_duration, "delay", rp.delay),
            max_attempts=rp.max_attempts or 0,
            window=0.0
            if rp.window is None
            else wrap("deploy.restart_policy.window", parse_duration, "window", rp.window),
        )
    data: dict[str, Any] = {
        "name": f"{stack}_{name}",
        "image": s.image,
        "command": _words(s.command),
        "entrypoint": _words(s.entrypoint),
        "env": [f"{k}={v}" for k, v in environment.items()],
        "labels": labels,
        "mode": d.mode,
        "resources": Resources(
            limits=_amounts(wrap, "deploy.resources.limits", d.resources.limits),
            reservations=_amounts(wrap, "deploy.resources.reservations", d.resources.reservations),
        ),
        "placement": Placement(
            constraints=list(d.placement.constraints),
            preferences=[f"spread={p.spread}" for p in d.placement.preferences],
            max_replicas_per_node=d.placement.max_replicas_per_node or 0,
        ),
        "restart_policy": restart,
        "ports": [_port(wrap, i, p) for i, p in enumerate(s.ports)],
        "mounts": [_mount(file, f"{where}.volumes[{i}]", base, v, volumes) for i, v in enumerate(s.volumes)],
        "user": None if s.user is None else str(s.user),
        "working_dir": s.working_dir,
        "stop_signal": s.stop_signal,
        "stop_grace_period": None
        if s.stop_grace_period is None
        else wrap("stop_grace_period", parse_duration, "stop_grace_period", s.stop_grace_period),
        "healthcheck": _healthcheck(file, where, wrap, s.healthcheck),
        "update_config": _update_config(file, where, wrap, "update_config", d.update_config),
        "rollback_config": _update_config(file, where, wrap, "rollback_config", d.rollback_config),
    }
    if d.mode == "replicated-job":
        data["total_completions"] = 1 if d.replicas is None else d.replicas
    elif d.replicas is not None:
        data["replicas"] = d.replicas
    spec = ServiceSpec.model_validate(data)
    from controller.api.validation import validate_spec

    try:
        validate_spec(spec)
    except InvalidArgument as exc:
        raise compose_error(file, where, str(exc)) from None
    return spec


def _split(exc: InvalidArgument) -> tuple[str, str]:
    """`invalid FIELD 'v': rule` -> (FIELD, `'v': rule`); ("", the text) for any other message."""
    text = str(exc)
    if text.startswith("invalid ") and " " in text[len("invalid ") :]:
        field, rule = text[len("invalid ") :].split(" ", 1)
        return field, rule
    return "", text


def _rule_of(exc: InvalidArgument) -> str:
    """`invalid FIELD 'v': rule` -> `'v': rule` (the path replaces the field)."""
    return _split(exc)[1]


def _words(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else list(value)


def _scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _mapping(file: str, path: str, value: list[str] | dict[str, Scalar]) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    out = {}
    for i, item in enumerate(value):
        key, _, val = item.partition("=")
        if not key:
            raise compose_error(file, f"{path}[{i}]", f"{item!r}: expected KEY=VALUE")
        out[key] = val
    return out


def _environment(value: list[str] | dict[str, Scalar], env: Mapping[str, str]) -> dict[str, str]:
    """`KEY` alone (or `KEY:` with no value) takes the value from the deploying shell, if set."""
    items = value.items() if isinstance(value, dict) else [_split_env(i) for i in value]
    out: dict[str, str] = {}
    for key, val in items:
        if val is None:
            if key in env:
                out[str(key)] = env[key]
        else:
            out[str(key)] = _scalar(val)
    return out


def _split_env(item: str) -> tuple[str, str | None]:
    key, sep, val = item.partition("=")
    return key, val if sep else None


def _read_env_file(file: str, path: str, env_file: Path) -> dict[str, str]:
    try:
        data = env_file.read_bytes()[: MAX_ENV_FILE_BYTES + 1]
    except OSError as exc:
        raise compose_error(file, path, f"cannot read {env_file}: {exc.strerror or exc}") from None
    if len(data) > MAX_ENV_FILE_BYTES:
        raise compose_error(file, path, f"{env_file} is larger than 1 MiB")
    out: dict[str, str] = {}
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, val = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise compose_error(file, path, f"{env_file} line {n}: expected KEY=VALUE")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        out[key.strip()] = val
    return out


def _amounts(wrap: Any, field: str, a: AmountsC) -> ResourceAmounts:
    return ResourceAmounts(
        nano_cpus=0 if a.cpus is None else wrap(f"{field}.cpus", parse_cpus, "cpus", a.cpus),
        memory_bytes=0 if a.memory is None else wrap(f"{field}.memory", parse_bytes, "memory", a.memory),
        pids=a.pids or 0,
    )


_SHORT_MODES = {"ro", "rw", "z", "Z", "nocopy"}


def _mount(file: str, path: str, base: Path, v: VolumeC | str, volumes: Mapping[str, str]) -> Mount:
    """Short (`SOURCE:TARGET[:MODE]`) or long syntax -> a Mount. A source that starts with `/`, `.`
    or `~` is a host path (relative to the Compose file's directory); otherwise a named volume,
    which must be declared under the top-level `volumes:` key (as Compose requires)."""
    if isinstance(v, str):
        parts = v.split(":")
        if len(parts) == 1:
            source, target, modes = None, parts[0], ""
        elif len(parts) in (2, 3):
            source, target, modes = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        else:
            raise compose_error(file, path, f"{v!r}: expected SOURCE:TARGET[:MODE]")
        options = set(modes.split(",")) - {""} if modes else set()
        if options - _SHORT_MODES:
            bad = ", ".join(sorted(options - _SHORT_MODES))
            raise compose_error(file, path, f"{v!r}: unknown mode {bad} (expected ro or rw)")
        read_only = "ro" in options
        is_bind = source is not None and source[:1] in ("/", ".", "~")
    else:
        source, target, read_only, is_bind = v.source, v.target, v.read_only, v.type == "bind"
    if not source:
        rule = "anonymous volumes are not supported on a cluster: name the volume (NAME:/path)"
        raise compose_error(file, path, f"{v!r}: {rule}")
    if is_bind:
        host = os.path.normpath(base.absolute() / os.path.expanduser(source))
        return Mount(type="bind", source=host, target=target, read_only=read_only)
    if source not in volumes:
        rule = f"volume {source!r} is not declared under the top-level volumes key"
        raise compose_error(file, path, rule)
    return Mount(type="volume", source=volumes[source], target=target, read_only=read_only)


def _port(wrap: Any, i: int, p: int | str | PortC) -> PortSpec:
    field = f"ports[{i}]"
    if isinstance(p, PortC):
        published = p.target if p.published in (None, "") else p.published
        text = f"{published}:{p.target}/{p.protocol}"
    else:
        text = str(p)
    port: PortSpec = wrap(field, parse_port, "port", text)
    return port


def _healthcheck(file: str, where: str, wrap: Any, h: HealthcheckC | None) -> HealthCheck | None:
    """Compose's healthcheck -> the spec's; None when absent or disabled (`disable: true`, NONE)."""
    path = f"{where}.healthcheck"
    if h is None:
        return None
    if h.disable:
        if h.test is not None and h.test != ["NONE"]:
            raise compose_error(file, f"{path}.disable", "true cannot be combined with a test")
        return None
    if h.test is None:
        rule = "this field is required (images carry no health check to inherit on Shoal)"
        raise compose_error(file, f"{path}.test", rule)
    test = ["CMD-SHELL", h.test] if isinstance(h.test, str) else list(h.test)
    if test == ["NONE"]:
        return None
    data: dict[str, Any] = {"test": test}
    for key in ("interval", "timeout", "start_period"):
        value = getattr(h, key)
        if value is not None:
            data[key] = wrap(f"healthcheck.{key}", parse_duration, key, value)
    if h.retries is not None:
        data["retries"] = h.retries
    check = HealthCheck.model_validate(data)
    try:
        validate_healthcheck(path, check)  # names the key by its path in the file
    except InvalidArgument as exc:
        raise compose_error(file, *_split(exc)) from None
    return check


def _update_config(
    file: str,
    where: str,
    wrap: Any,
    key: Literal["update_config", "rollback_config"],
    c: UpdateConfigC | None,
) -> UpdateConfig:
    """deploy.update_config / rollback_config -> the spec's; unset keys keep Docker's defaults."""
    if c is None:
        return UpdateConfig()
    data: dict[str, Any] = {k: v for k, v in c.model_dump().items() if v is not None}
    for duration in ("delay", "monitor"):
        if duration in data:
            data[duration] = wrap(f"deploy.{key}.{duration}", parse_duration, duration, data[duration])
    if key == "rollback_config" and data.get("failure_action") == "rollback":
        raise compose_error(
            file, f"{where}.deploy.{key}.failure_action", "'rollback': a rollback can only pause or continue"
        )
    return UpdateConfig.model_validate(data)
