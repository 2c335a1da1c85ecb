"""Every spec and node-update rule refuses with one line naming the field, and writes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent.errors import InvalidArgument
from controller.api import keyspace as ks
from controller.api.control import Control
from controller.api.types import NodeInfo, ServiceSpec
from controller.api.validation import parse_model, validate_node_update, validate_spec
from controller.store.memory import MemoryStore

FULL: dict[str, Any] = {
    "name": "web_1.a-b",
    "image": "registry.local:5000/team/web:1.2@sha256:" + "a" * 64,
    "command": ["sh", "-c", "echo hi"],
    "entrypoint": [],
    "env": ["A=1", "B=", "C", "D=x=y"],
    "labels": {"team": "a", "empty": ""},
    "replicas": 0,
    "resources": {
        "limits": {"nano_cpus": 2_000_000_000, "memory_bytes": 1 << 30, "pids": 0},
        "reservations": {"nano_cpus": 500_000_000, "memory_bytes": 1 << 20, "pids": 10},
    },
    "placement": {
        "constraints": ["node.labels.disk==ssd", "node.hostname!=h1"],
        "preferences": ["spread=node.labels.zone"],
        "max_replicas_per_node": 2,
    },
    "restart_policy": {"condition": "on-failure", "delay": 0, "max_attempts": 3, "window": 60},
    "ports": [
        {"target": 80, "published": 8080},
        {"target": 53, "published": 8080, "protocol": "udp"},
        {"target": 443, "published": 65535},
    ],
    "scheduling": "binpack",
    "mounts": [
        {"type": "volume", "source": "data_1.x", "target": "/data"},
        {"type": "bind", "source": "/srv/conf", "target": "/etc/conf", "read_only": True},
    ],
    "user": "1000:1000",
    "working_dir": "/data",
    "stop_signal": "SIGINT",
    "stop_grace_period": 0,
}


def spec(**changes: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"name": "web", "image": "busybox", **changes})


def job(**changes: Any) -> ServiceSpec:
    return spec(mode="replicated-job", **changes)


def test_a_spec_using_every_field_within_the_rules_is_accepted() -> None:
    validate_spec(ServiceSpec.model_validate(FULL))
    validate_spec(job(total_completions=100_000, max_concurrent=1))
    validate_spec(spec(replicas=100_000))


BAD: list[tuple[str, ServiceSpec, str]] = [
    ("name", spec(name=""), "must be 1-63"),
    ("name", spec(name="-web"), "starting with a letter or digit"),
    ("name", spec(name="a/b"), "must be 1-63"),
    ("name", spec(name="a" * 64), "must be 1-63"),
    ("image", spec(image=""), "required"),
    ("image", spec(image="Busybox"), "lowercase"),
    ("image", spec(image="busybox:bad tag"), "whitespace"),
    ("command[1]", spec(command=["sh", "a\0b"]), "NUL"),
    ("entrypoint[0]", spec(entrypoint=["\0"]), "NUL"),
    ("env[1]", spec(env=["A=1", "=x"]), "non-empty KEY"),
    ("env[0]", spec(env=[""]), "non-empty KEY"),
    ("env[0]", spec(env=["A=\0"]), "NUL"),
    ("labels", spec(labels={"": "x"}), "non-empty"),
    ("replicas", spec(replicas=-1), "between 0 and 100000"),
    ("replicas", spec(replicas=100_001), "between 0 and 100000"),
    ("total_completions", job(total_completions=0), "between 1 and 100000"),
    ("total_completions", job(total_completions=100_001), "between 1 and 100000"),
    ("max_concurrent", job(max_concurrent=0), "between 1 and 100000"),
    ("resources.limits.nano_cpus", spec(resources={"limits": {"nano_cpus": -1}}), ">= 0"),
    ("resources.reservations.memory_bytes", spec(resources={"reservations": {"memory_bytes": -5}}), ">= 0"),
    (
        "resources.limits.memory_bytes",
        spec(resources={"limits": {"memory_bytes": 10}, "reservations": {"memory_bytes": 20}}),
        "resources.reservations.memory_bytes (20)",
    ),
    (
        "placement.constraints[1]",
        spec(placement={"constraints": ["node.id==a", "node.role==manager"]}),
        "role",
    ),
    ("placement.constraints[0]", spec(placement={"constraints": ["disk=ssd"]}), "expected <key>=="),
    ("placement.preferences[0]", spec(placement={"preferences": ["spread=node.id"]}), "spread=node.labels"),
    ("placement.max_replicas_per_node", spec(placement={"max_replicas_per_node": -1}), ">= 0"),
    ("restart_policy.delay", spec(restart_policy={"delay": -0.5}), ">= 0"),
    ("restart_policy.delay", spec(restart_policy={"delay": float("inf")}), ">= 0"),
    ("restart_policy.window", spec(restart_policy={"window": -1}), ">= 0"),
    ("restart_policy.max_attempts", spec(restart_policy={"max_attempts": -1}), ">= 0"),
    ("ports[0].target", spec(ports=[{"target": 0, "published": 80}]), "between 1 and 65535"),
    ("ports[0].published", spec(ports=[{"target": 80, "published": 65536}]), "between 1 and 65535"),
    (
        "ports[1].published",
        spec(ports=[{"target": 80, "published": 8080}, {"target": 81, "published": 8080}]),
        "already published by ports[0]",
    ),
    ("mounts[0].target", spec(mounts=[{"type": "volume", "source": "v", "target": "data"}]), "absolute"),
    ("mounts[0].target", spec(mounts=[{"type": "volume", "source": "v", "target": "/a/../b"}]), "'..'"),
    ("mounts[0].target", spec(mounts=[{"type": "volume", "source": "v", "target": "/"}]), "root"),
    (
        "mounts[1].target",
        spec(
            mounts=[
                {"type": "volume", "source": "v", "target": "/data"},
                {"type": "bind", "source": "/srv", "target": "/data/"},
            ]
        ),
        "already mounted by mounts[0]",
    ),
    ("mounts[0].source", spec(mounts=[{"type": "volume", "source": "", "target": "/d"}]), "volume name"),
    ("mounts[0].source", spec(mounts=[{"type": "volume", "source": "a/b", "target": "/d"}]), "volume name"),
    ("mounts[0].source", spec(mounts=[{"type": "bind", "source": "srv", "target": "/d"}]), "absolute"),
    ("user", spec(user=""), "expected user, uid"),
    ("user", spec(user="a:b:c"), "expected user, uid"),
    ("user", spec(user="a b"), "expected user, uid"),
    ("working_dir", spec(working_dir="app"), "absolute"),
    ("stop_signal", spec(stop_signal="SIGNOPE"), "signal name"),
    ("stop_grace_period", spec(stop_grace_period=-1), ">= 0"),
    ("stop_grace_period", spec(stop_grace_period=float("nan")), ">= 0"),
]


@pytest.mark.parametrize(("field", "bad", "rule"), BAD, ids=[f"{f}:{r}" for f, _, r in BAD])
def test_each_rule_names_the_field_and_nothing_is_written(field: str, bad: ServiceSpec, rule: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_spec(bad)
    message = str(refused.value)
    assert message.startswith(f"invalid {field} "), message
    assert rule in message and "\n" not in message

    store = MemoryStore()
    control = Control(store)
    _, before = store.list("")
    with pytest.raises(InvalidArgument, match=r"^" + re.escape(f"invalid {field} ")):
        control.create_service(bad)
    assert store.list("") == ([], before)

    # A refused update leaves the stored service as it was.
    stored = control.create_service(spec())
    _, at = store.list("")
    update = bad if field == "name" else bad.model_copy(update={"name": "web"})
    with pytest.raises(InvalidArgument, match=r"^" + re.escape(f"invalid {field} ")):
        control.update_service("web", update)
    assert store.list("")[1] == at
    assert control.inspect_service("web") == stored


PYDANTIC: list[tuple[dict[str, Any], str]] = [
    ({"mode": "swarm"}, "invalid mode 'swarm': input should be 'replicated', 'global' or 'replicated-job'"),
    ({"replicas": "many"}, "invalid replicas 'many': input should be a valid integer"),
    ({"colour": "red"}, "invalid colour 'red': extra inputs are not permitted"),
    ({"ports": [{"target": 80, "published": 81, "protocol": "sctp"}]}, "invalid ports[0].protocol 'sctp'"),
    ({"ports": [{"target": 80}]}, "invalid ports[0].published: field required"),
    ({"restart_policy": {"condition": "always"}}, "invalid restart_policy.condition 'always'"),
    ({"command": "sh -c x"}, "invalid command 'sh -c x': input should be a valid list"),
    ({"mounts": [{"type": "tmpfs", "source": "", "target": "/t"}]}, "invalid mounts[0].type 'tmpfs'"),
]


@pytest.mark.parametrize(("changes", "message"), PYDANTIC)
def test_malformed_input_is_one_line_naming_field_and_value(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_model(ServiceSpec, {"name": "web", "image": "busybox", **changes})
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_missing_required_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^invalid image: field required$"):
        parse_model(ServiceSpec, {"name": "web"})


NODE_BAD: list[tuple[dict[str, Any], str]] = [
    ({"availability": "paused"}, "invalid availability 'paused': must be one of active, pause, drain"),
    ({"label_add": {"": "x"}}, "invalid label_add '': label keys must be non-empty"),
    ({"label_add": {"a b": "x"}}, "invalid label_add 'a b'"),
    ({"label_rm": ["x/y"]}, "invalid label_rm 'x/y'"),
    ({"label_add": {"a": "1"}, "label_rm": ["a"]}, "invalid label_rm 'a': cannot both add and remove"),
    ({"label_add": {"a": "\0"}}, "invalid label_add.a"),
]


@pytest.mark.parametrize(("update", "message"), NODE_BAD)
def test_node_update_rules(update: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"availability": None, "label_add": {}, "label_rm": [], **update}
    with pytest.raises(InvalidArgument) as refused:
        validate_node_update(**args)
    assert str(refused.value).startswith(message)

    store = MemoryStore()
    node = NodeInfo(id="n1", hostname="h1", address="10.0.0.1", nano_cpus=1, memory_bytes=1)
    store.put(ks.node_key("n1"), ks.encode(node))
    _, before = store.list("")
    with pytest.raises(InvalidArgument):
        Control(store).update_node("n1", **args)
    assert store.list("")[1] == before


def test_node_update_accepts_valid_changes() -> None:
    validate_node_update("drain", {"zone": "a", "disk.type_x-1": ""}, ["old"])
    validate_node_update(None, {}, [])
