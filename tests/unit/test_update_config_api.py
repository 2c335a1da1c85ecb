"""update_config / rollback_config / UpdateStatus through the API: validation, the wire, rollback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import InvalidArgument
from controller.api import keyspace as ks
from controller.api.server import serve
from controller.api.types import Service, ServiceSpec, UpdateConfig, UpdateStatus
from controller.api.validation import validate_spec
from controller.client import ControlClient
from controller.store.memory import MemoryStore


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    yield s
    s.close()


@pytest.fixture
def client(store: MemoryStore, tmp_path: Path) -> Iterator[ControlClient]:
    server = serve(store, f"unix://{tmp_path}/api.sock")
    c = ControlClient(f"unix://{tmp_path}/api.sock")
    try:
        yield c
    finally:
        c.close()
        server.stop(0)


def spec(**changes: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"name": "web", "image": "busybox", "replicas": 2} | changes)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"update_config": {"parallelism": -1}},
            "invalid update_config.parallelism -1: must be between 0 and",
        ),
        ({"update_config": {"delay": -2.0}}, "invalid update_config.delay -2.0: must be a number of seconds"),
        ({"rollback_config": {"monitor": float("inf")}}, "invalid rollback_config.monitor inf: must be"),
        (
            {"update_config": {"max_failure_ratio": 1.5}},
            "invalid update_config.max_failure_ratio 1.5: must be a fraction between 0 and 1",
        ),
        (
            {"rollback_config": {"failure_action": "rollback"}},
            "invalid rollback_config.failure_action 'rollback': a rollback can only pause or continue",
        ),
    ],
)
def test_rules_name_the_field(config: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        validate_spec(spec(**config))


def test_bad_enum_values_are_refused_over_the_wire(client: ControlClient, store: MemoryStore) -> None:
    sideways: dict[str, Any] = {"order": "sideways"}  # past the model's checks, as a foreign client could
    bad = spec().model_copy(update={"update_config": UpdateConfig.model_construct(**sideways)})
    with pytest.raises(
        InvalidArgument,
        match=r"^invalid update_config\.order 'sideways': input should be 'stop-first' or 'start-first'$",
    ):
        client.create_service(bad)
    assert store.get(ks.service_key("web")) is None


def test_configs_and_status_cross_the_wire(client: ControlClient, store: MemoryStore) -> None:
    config = UpdateConfig(
        parallelism=0,
        delay=2.5,
        failure_action="rollback",
        monitor=0.0,
        max_failure_ratio=0.5,
        order="start-first",
    )
    created = client.create_service(spec(update_config=config))
    assert created.spec.update_config == config and created.spec.rollback_config == UpdateConfig()
    # Docker's defaults when unset.
    assert UpdateConfig() == UpdateConfig(
        parallelism=1,
        delay=0.0,
        failure_action="pause",
        monitor=5.0,
        max_failure_ratio=0.0,
        order="stop-first",
    )
    assert created.update_status is None
    # The leader's bookkeeping, as it would store it.
    status = UpdateStatus(state="paused", message="update paused", started_at="a", completed_at="")
    kv = store.get(ks.service_key("web"))
    assert kv is not None
    stored = ks.decode(Service, kv.key, kv.value).model_copy(update={"update_status": status})
    store.put(kv.key, ks.encode(stored))
    assert client.inspect_service("web").update_status == status


def test_changing_only_the_update_policy_replaces_no_task(client: ControlClient) -> None:
    created = client.create_service(spec())
    changed = client.update_service("web", spec(update_config=UpdateConfig(parallelism=3)))
    assert changed.task_version == created.task_version and changed.version == created.version + 1


def test_a_user_update_resumes_a_paused_update(client: ControlClient, store: MemoryStore) -> None:
    client.create_service(spec())
    client.update_service("web", spec(image="busybox:2"))
    kv = store.get(ks.service_key("web"))
    assert kv is not None
    paused = ks.decode(Service, kv.key, kv.value).model_copy(
        update={"update_status": UpdateStatus(state="paused", message="update paused")}
    )
    store.put(kv.key, ks.encode(paused))
    resumed = client.update_service("web", spec(image="busybox:2", update_config=UpdateConfig(parallelism=2)))
    assert resumed.update_status is None
