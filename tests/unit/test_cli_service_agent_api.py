"""NodeInfo.agent_api: what `shoal logs|exec` use to reach a task's node. Registration keeps it
current (an agent moved to another socket re-registers it) without touching the admin's fields."""

from __future__ import annotations

import json

from agent.tasks.registration import NodeRegistration
from controller.api import keyspace
from controller.api.types import NodeInfo
from controller.store.memory import MemoryStore


def _info(api: str) -> NodeInfo:
    return NodeInfo(
        id="n1", hostname="h", address="10.0.0.1", nano_cpus=10**9, memory_bytes=1 << 30, agent_api=api
    )


def _stored(store: MemoryStore) -> NodeInfo:
    kv = store.get(keyspace.node_key("n1"))
    assert kv is not None
    return keyspace.decode(NodeInfo, kv.key, kv.value)


def test_registration_records_and_updates_the_agent_api() -> None:
    store = MemoryStore()
    NodeRegistration(store, _info("unix:///run/a/agent.sock")).register()
    assert _stored(store).agent_api == "unix:///run/a/agent.sock"
    admin = _stored(store).model_copy(update={"availability": "drain", "labels": {"zone": "a"}})
    store.put(keyspace.node_key("n1"), keyspace.encode(admin))
    NodeRegistration(store, _info("unix:///run/b/agent.sock")).register()
    node = _stored(store)
    assert node.agent_api == "unix:///run/b/agent.sock"
    assert (node.availability, node.labels) == ("drain", {"zone": "a"}), "the admin's fields stay"


def test_records_written_before_the_field_existed_still_decode() -> None:
    store = MemoryStore()
    envelope = json.loads(keyspace.encode(_info("unix:///x")))
    del envelope["data"]["agent_api"]  # as an older agent wrote it
    store.put(keyspace.node_key("n1"), json.dumps(envelope).encode())
    assert _stored(store).agent_api == ""
