"""Checks every spec and node change must pass before the API writes anything.

Each check raises `invalid(field, value, rule)` for the first bad field, with a dotted field
name a user can find in their file (`ports[1].published`, `placement.constraints[0]`). Pydantic's
own errors (wrong type, unknown field, bad enum value) get the same one-line shape through
`from_validation_error`, so no request ever answers with a traceback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import InvalidArgument, invalid
from agent.images.reference import parse_reference
from agent.models import parse_signal, validate_healthcheck
from controller.api.types import Placement, ResourceAmounts, ServiceSpec, UpdateConfig
from controller.scheduler import parse_constraint, parse_preference, validate_placement

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
# As the agent's volume names (agent.models.NAME_RE).
VOLUME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
USER_RE = re.compile(r"[^:\s\0]+(:[^:\s\0]+)?")
# Node labels are matched by constraints (`node.labels.<name>`), so they follow its grammar.
NODE_LABEL_RE = re.compile(r"[A-Za-z0-9_.\-]+")
MAX_COUNT = 100_000
AVAILABILITIES = ("active", "pause", "drain")

M = TypeVar("M", bound=BaseModel)


# ---- pydantic's errors -----------------------------------------------------------------------


def field_path(loc: Iterable[int | str]) -> str:
    """('ports', 1, 'published') -> 'ports[1].published'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "request"


def from_validation_error(exc: ValidationError, prefix: str = "") -> InvalidArgument:
    """The first of pydantic's errors as one line naming the field, the value and the rule."""
    first = exc.errors(include_url=False)[0]
    field = field_path([*([prefix] if prefix else []), *first["loc"]])
    if first["type"] == "missing":
        return InvalidArgument(f"invalid {field}: field required")
    rule = first["msg"][:1].lower() + first["msg"][1:]
    return invalid(field, first.get("input"), rule)


def parse_model(kind: type[M], data: Mapping[str, Any], prefix: str = "") -> M:
    """`kind.model_validate(data)` with pydantic's errors turned into InvalidArgument."""
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix) from None


# ---- service specs ---------------------------------------------------------------------------


def validate_spec(spec: ServiceSpec) -> None:
    """Raise InvalidArgument for the first field of `spec` that breaks a rule."""
    validate_name(spec.name)
    if not spec.image:
        raise invalid("image", spec.image, "an image reference is required")
    parse_reference(spec.image, field="image")
    for field in ("command", "entrypoint"):
        for i, arg in enumerate(getattr(spec, field) or ()):
            if "\0" in arg:
                raise invalid(f"{field}[{i}]", arg, "may not contain NUL")
    _check_env(spec.env)
    _check_labels("labels", spec.labels)
    _check_range("replicas", spec.replicas, 0, MAX_COUNT)
    if spec.mode == "replicated-job":
        _check_range("total_completions", spec.total_completions, 1, MAX_COUNT)
        _check_range("max_concurrent", spec.max_concurrent, 1, MAX_COUNT)
    _check_resources(spec.resources.limits, spec.resources.reservations)
    _check_placement(spec.placement)
    policy = spec.restart_policy
    _check_seconds("restart_policy.delay", policy.delay)
    _check_seconds("restart_policy.window", policy.window)
    if policy.max_attempts < 0:
        raise invalid("restart_policy.max_attempts", policy.max_attempts, "must be >= 0 (0: unlimited)")
    _check_ports(spec)
    _check_mounts(spec)
    _check_process(spec)
    if spec.healthcheck is not None:
        validate_healthcheck("healthcheck", spec.healthcheck)
    _check_update_config("update_config", spec.update_config)
    _check_update_config("rollback_config", spec.rollback_config)


def validate_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise invalid(
            "name", name, "must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise invalid(field, value, f"must be between {low} and {high}")


def _check_env(env: list[str]) -> None:
    for i, entry in enumerate(env):
        key = entry.partition("=")[0]
        if not key:
            raise invalid(f"env[{i}]", entry, "expected KEY=VALUE or KEY with a non-empty KEY")
        if "\0" in entry:
            raise invalid(f"env[{i}]", entry, "may not contain NUL")


def _check_labels(field: str, labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        if not key:
            raise invalid(field, key, "label keys must be non-empty")
        if "\0" in key or "\0" in value:
            raise invalid(f"{field}.{key}", value, "labels may not contain NUL")


def _check_resources(limits: ResourceAmounts, reservations: ResourceAmounts) -> None:
    for kind, amounts in (("limits", limits), ("reservations", reservations)):
        for name in ResourceAmounts.model_fields:
            value = getattr(amounts, name)
            if value < 0:
                raise invalid(f"resources.{kind}.{name}", value, "must be >= 0")
    for name in ResourceAmounts.model_fields:
        limit, reserved = getattr(limits, name), getattr(reservations, name)
        if limit and limit < reserved:
            raise invalid(
                f"resources.limits.{name}",
                limit,
                f"must be >= resources.reservations.{name} ({reserved}) when set",
            )


def _check_placement(placement: Placement) -> None:
    # The scheduler's parser names the list; the user needs the entry.
    for field, items, parse in (
        ("placement.constraints", placement.constraints, parse_constraint),
        ("placement.preferences", placement.preferences, parse_preference),
    ):
        for i, text in enumerate(items):
            try:
                parse(text)
            except InvalidArgument as exc:
                raise InvalidArgument(
                    str(exc).replace(f"invalid {field} ", f"invalid {field}[{i}] ", 1)
                ) from None
    validate_placement(placement)


def _check_seconds(field: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise invalid(field, value, "must be a number of seconds >= 0")


def _check_ports(spec: ServiceSpec) -> None:
    seen: dict[tuple[str, int], int] = {}
    for i, port in enumerate(spec.ports):
        _check_range(f"ports[{i}].target", port.target, 1, 65535)
        _check_range(f"ports[{i}].published", port.published, 1, 65535)
        first = seen.setdefault((port.protocol, port.published), i)
        if first != i:
            raise invalid(
                f"ports[{i}].published",
                port.published,
                f"already published by ports[{first}] ({port.protocol}); a published port is used once",
            )


def _check_path(field: str, path: str, what: str) -> None:
    if not path.startswith("/"):
        raise invalid(field, path, f"{what} must be an absolute path")
    if ".." in path.split("/") or "\0" in path:
        raise invalid(field, path, "paths may not contain '..' or NUL")


def _check_mounts(spec: ServiceSpec) -> None:
    seen: dict[str, int] = {}
    for i, m in enumerate(spec.mounts):
        _check_path(f"mounts[{i}].target", m.target, "the container path")
        if m.target.rstrip("/") == "":
            raise invalid(f"mounts[{i}].target", m.target, "cannot mount over the container's root")
        first = seen.setdefault(m.target.rstrip("/"), i)
        if first != i:
            raise invalid(f"mounts[{i}].target", m.target, f"already mounted by mounts[{first}]")
        if m.type == "volume" and not VOLUME_RE.fullmatch(m.source):
            rule = (
                "a volume name starts with a letter or digit and uses only letters, digits, '_', '.' or '-'"
            )
            raise invalid(f"mounts[{i}].source", m.source, rule)
        if m.type == "bind":
            _check_path(f"mounts[{i}].source", m.source, "a bind source (host path)")


def _check_process(spec: ServiceSpec) -> None:
    if spec.user is not None and not USER_RE.fullmatch(spec.user):
        raise invalid("user", spec.user, "expected user, uid, user:group or uid:gid")
    if spec.working_dir is not None:
        _check_path("working_dir", spec.working_dir, "the working directory")
    if spec.stop_signal is not None:
        parse_signal("stop_signal", spec.stop_signal)
    if spec.stop_grace_period is not None:
        _check_seconds("stop_grace_period", spec.stop_grace_period)


def _check_update_config(field: str, config: UpdateConfig) -> None:
    _check_range(f"{field}.parallelism", config.parallelism, 0, MAX_COUNT)
    _check_seconds(f"{field}.delay", config.delay)
    _check_seconds(f"{field}.monitor", config.monitor)
    ratio = config.max_failure_ratio
    if not (math.isfinite(ratio) and 0 <= ratio <= 1):
        raise invalid(f"{field}.max_failure_ratio", ratio, "must be a fraction between 0 and 1")
    if field == "rollback_config" and config.failure_action == "rollback":
        raise invalid(
            f"{field}.failure_action", config.failure_action, "a rollback can only pause or continue"
        )


# ---- node updates ----------------------------------------------------------------------------


def validate_node_update(
    availability: str | None, label_add: Mapping[str, str], label_rm: Iterable[str]
) -> None:
    if availability is not None and availability not in AVAILABILITIES:
        raise invalid("availability", availability, f"must be one of {', '.join(AVAILABILITIES)}")
    for field, keys in (("label_add", list(label_add)), ("label_rm", list(label_rm))):
        for key in keys:
            if not NODE_LABEL_RE.fullmatch(key):
                raise invalid(field, key, "label keys must be non-empty letters, digits, '.', '_' or '-'")
    for key in label_rm:
        if key in label_add:
            raise invalid("label_rm", key, "cannot both add and remove a label")
    for key, value in label_add.items():
        if "\0" in value:
            raise invalid(f"label_add.{key}", value, "may not contain NUL")
