"""The Store seam: the narrow key-value interface the control plane needs from etcd.

Both implementations (etcd.py, memory.py) follow etcd v3 semantics, so code written
against the fake behaves the same on the real thing; tests/contract checks that.
Keys are str, values bytes: encoding belongs to the keyspace module, not here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

from agent.errors import ShoalError

CompareTarget = Literal["mod_revision", "create_revision", "version", "value"]
CompareOp = Literal["==", "!=", "<", ">"]


class Compacted(ShoalError):
    """The history a watch asked for was compacted: re-list, then watch from the new revision."""

    grpc_code = "OUT_OF_RANGE"

    def __init__(self, revision: int) -> None:
        super().__init__(f"revision {revision} was compacted; list again and watch from the list's revision")
        self.revision = revision


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int  # 0 when the key has no lease, as in etcd


@dataclass(frozen=True)
class Event:
    type: Literal["put", "delete"]
    kv: KeyValue  # for a delete: the key, empty value, mod_revision = the deleting revision
    prev: KeyValue | None  # the value before this event, when the store still had it


@dataclass(frozen=True)
class Compare:
    """One transaction guard. On an absent key every revision/version reads as 0 and a
    value compare is false, so create_revision == 0 means "absent" (create-if-absent)."""

    key: str
    target: CompareTarget
    op: CompareOp
    operand: int | bytes


def absent(key: str) -> Compare:
    """Guard for create-if-absent (flannel's subnet lease acquisition)."""
    return Compare(key, "create_revision", "==", 0)


def unchanged(key: str, mod_revision: int) -> Compare:
    """Guard for a read-modify-write: the key was not written since it was read."""
    return Compare(key, "mod_revision", "==", mod_revision)


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int | None = None


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class Get:
    key: str


Op = Put | Delete | Get
# Aligned with the ops that ran: Get -> KeyValue | None, Delete -> bool (a key was deleted), Put -> None.
OpResult = KeyValue | bool | None


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store revision after the transaction
    responses: tuple[OpResult, ...]


@dataclass(frozen=True)
class Lease:
    id: int
    ttl: int  # as granted: etcd may raise a small TTL to its minimum


class Watch(Protocol):
    """Batches of events in revision order; never an empty batch.

    Iteration raises Compacted if the start revision is (or becomes) compacted, and
    Unavailable if the store goes away. close() may be called from any thread; it ends
    the iteration of a thread blocked in next().
    """

    def __iter__(self) -> Iterator[list[Event]]: ...

    def __next__(self) -> list[Event]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Watch: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Store(Protocol):
    def get(self, key: str) -> KeyValue | None: ...

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Keys under prefix in key order, and the store revision the read was at."""
        ...

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        """Returns the revision of the write. NotFound if the lease does not exist."""
        ...

    def delete(self, key: str) -> bool:
        """True if the key existed. Deleting an absent key writes nothing."""
        ...

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """All compares true: run success, else failure, atomically at one revision.
        InvalidArgument if a key is written twice in one branch (etcd refuses that)."""
        ...

    def grant_lease(self, ttl: int) -> Lease: ...

    def keepalive(self, lease_id: int) -> int:
        """Renew the lease; returns its TTL. NotFound once it has expired or was revoked."""
        ...

    def keepalive_many(self, lease_ids: Sequence[int]) -> dict[int, int]:
        """Renew many leases in one call (one stream on etcd): lease id -> TTL, 0 for a lease that
        expired or was revoked. What a process holding hundreds of leases (a hollow fleet) uses."""
        ...

    def revoke(self, lease_id: int) -> None:
        """Delete the lease and its keys. NotFound if it does not exist."""
        ...

    def watch_prefix(self, prefix: str, start_revision: int) -> Watch:
        """Events under prefix from start_revision on (0: from the next write)."""
        ...

    def compact(self, revision: int) -> None:
        """Drop history before revision (tests; production etcd auto-compacts)."""
        ...

    def close(self) -> None: ...
