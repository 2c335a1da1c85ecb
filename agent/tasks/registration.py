"""A node's registration: its record under nodes/ and its liveness key under nodes-alive/.

The liveness key hangs off a lease with the node's TTL that a keepalive renews every TTL/3; when
the lease is lost (the store expired it while we were cut off) a new one is granted and the key
put again. The lease id is persisted so an agent restarted within the TTL keeps its lease and its
node never looks down; close() therefore does not revoke it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path

from agent.errors import Conflict, IntegrityError, NotFound, ShoalError
from agent.tasks.worker import Backoff
from controller.api import keyspace
from controller.api.types import NodeInfo
from controller.store.base import Put, Store, absent, unchanged

log = logging.getLogger(__name__)

DEFAULT_TTL = 3.0
_CAS_ATTEMPTS = 10


class NodeRegistration:
    def __init__(
        self, store: Store, info: NodeInfo, ttl: float = DEFAULT_TTL, lease_file: Path | None = None
    ):
        """info.labels are applied only when the record is created: afterwards labels and
        availability are the admin's. lease_file remembers the lease across agent restarts."""
        self.store = store
        self.info = info
        self.ttl = ttl
        self.lease_file = lease_file
        self.lease_id = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def node_id(self) -> str:
        return self.info.id

    @property
    def interval(self) -> float:
        return self.ttl / 3

    # -- one-shot steps (also driven by a hollow fleet) -----------------------------------

    def register(self) -> None:
        """Create or update nodes/<id>, then make sure nodes-alive/<id> exists on a live lease."""
        self._upsert_node()
        if self.lease_id == 0:
            self.lease_id = self._reuse_lease() or self._grant()
        self._ensure_alive()

    def renew(self) -> None:
        """One keepalive; a lost lease is replaced."""
        try:
            self.store.keepalive(self.lease_id)
        except NotFound:
            self.lease_lost()

    def lease_lost(self) -> None:
        log.warning("node %s: lease %x was lost; registering a new one", self.node_id, self.lease_id)
        self.lease_id = self._grant()
        self._ensure_alive()

    # -- the keepalive thread (a real agent) ----------------------------------------------

    def start(self) -> None:
        """Register and keep alive on a thread, retrying with backoff while the store is away."""
        self._thread = threading.Thread(target=self._loop, name=f"registration-{self.node_id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop renewing WITHOUT revoking: the lease runs out by itself unless a restarted agent
        takes it over first."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        backoff = Backoff(cap=max(self.interval, 0.1))
        registered = False
        while not self._closed.is_set():
            try:
                if registered:
                    self.renew()
                else:
                    self.register()
                    registered = True
                    log.info("node %s registered (lease %x, ttl %gs)", self.node_id, self.lease_id, self.ttl)
                backoff.reset()
                wait = self.interval
            except ShoalError as e:
                wait = backoff.next()
                log.warning("node %s: registration failed (retrying in %.1fs): %s", self.node_id, wait, e)
            self._closed.wait(wait)

    # -- details ---------------------------------------------------------------------------

    def _upsert_node(self) -> None:
        key = keyspace.node_key(self.node_id)
        for _ in range(_CAS_ATTEMPTS):
            kv = self.store.get(key)
            if kv is None:
                if self.store.txn([absent(key)], [Put(key, keyspace.encode(self.info))]).succeeded:
                    return
                continue
            try:
                current = keyspace.decode(NodeInfo, key, kv.value)
            except IntegrityError as e:
                log.error("node %s: replacing an unreadable node record: %s", self.node_id, e)
                current = self.info
            i = self.info
            updated = current.model_copy(
                update={
                    "hostname": i.hostname,
                    "address": i.address,
                    "nano_cpus": i.nano_cpus,
                    "memory_bytes": i.memory_bytes,
                    "agent_api": i.agent_api,
                }
            )
            if updated == current and kv.value == keyspace.encode(current):
                return
            guard = unchanged(key, kv.mod_revision)
            if self.store.txn([guard], [Put(key, keyspace.encode(updated))]).succeeded:
                return
        raise Conflict(f"node {self.node_id}: its record kept changing while it registered; try again")

    def _grant(self) -> int:
        lease = self.store.grant_lease(math.ceil(self.ttl))
        self._save_lease(lease.id)
        return lease.id

    def _reuse_lease(self) -> int:
        """The persisted lease, if it is still alive (an agent restarted within the TTL)."""
        if self.lease_file is None:
            return 0
        try:
            saved = json.loads(self.lease_file.read_text())
            lease_id = int(saved["lease"]) if saved.get("node") == self.node_id else 0
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        if not lease_id:
            return 0
        try:
            self.store.keepalive(lease_id)
        except NotFound:
            return 0
        log.info("node %s: kept lease %x from before the restart", self.node_id, lease_id)
        return lease_id

    def _save_lease(self, lease_id: int) -> None:
        if self.lease_file is None:
            return
        self.lease_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.lease_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"node": self.node_id, "lease": lease_id}))
        os.replace(tmp, self.lease_file)

    def _ensure_alive(self) -> None:
        key = keyspace.alive_key(self.node_id)
        kv = self.store.get(key)
        if kv is not None and kv.lease == self.lease_id:
            return  # still there on our lease: no write, no readiness blip
        try:
            self.store.put(key, self.node_id.encode(), lease=self.lease_id)
        except NotFound:
            # The lease ran out between grant/keepalive and this put: take a new one.
            self.lease_id = self._grant()
            self.store.put(key, self.node_id.encode(), lease=self.lease_id)
