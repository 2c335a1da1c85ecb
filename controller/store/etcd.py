"""Store over etcd v3 (the only module that imports etcd3).

python3-etcd3 0.13 supplies the generated gRPC stubs and messages; its high-level
client is bypassed on purpose: transaction() drops the response header (we need the
revision), a failed call marks the endpoint dead for 300 s, its error mapping drops
the server's message, and its Watcher thread hits a NameError (`six`) when a stream
ends. Calls go straight to the stubs over our own channel instead.
"""

from __future__ import annotations

import builtins
import ipaddress
import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc
from etcd3 import etcdrpc

from agent.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable
from controller.store.base import (
    Compacted,
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Lease,
    Op,
    OpResult,
    Put,
    TxnResult,
)

_OPS = {
    "==": etcdrpc.Compare.EQUAL,
    "!=": etcdrpc.Compare.NOT_EQUAL,
    "<": etcdrpc.Compare.LESS,
    ">": etcdrpc.Compare.GREATER,
}
_CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # http_proxy in the environment must not capture etcd traffic
    ("grpc.initial_reconnect_backoff_ms", 100),  # recover quickly once etcd is back
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),  # notice a dead etcd under an idle watch;
    ("grpc.keepalive_timeout_ms", 5_000),  # etcd refuses pings more often than every 5 s
    ("grpc.http2.max_pings_without_data", 0),
]


def _target(endpoints: Sequence[str]) -> str:
    """A gRPC target; several endpoints become one channel that fails over (pick_first)."""
    hosts = [e.removeprefix("http://") for e in endpoints]
    if not hosts or any("://" in h for h in hosts):
        raise InvalidArgument(f"invalid etcd endpoints {list(endpoints)!r}: need host:port, plain http only")
    if len(hosts) == 1:
        return hosts[0]
    for h in hosts:
        try:
            ipaddress.IPv4Address(h.rpartition(":")[0])
        except ValueError:
            raise InvalidArgument(
                f"invalid etcd endpoint {h!r}: several endpoints must be IPv4 address:port"
            ) from None
    return "ipv4:" + ",".join(hosts)


def _range_end(prefix: bytes) -> bytes:
    # etcd's prefix convention: increment the last byte below 0xff; b"\0" means "to the end".
    s = bytearray(prefix)
    for i in reversed(range(len(s))):
        if s[i] < 0xFF:
            s[i] += 1
            return bytes(s[: i + 1])
    return b"\0"


def _kv(m: Any) -> KeyValue:
    return KeyValue(
        key=m.key.decode(),
        value=bytes(m.value),
        create_revision=int(m.create_revision),
        mod_revision=int(m.mod_revision),
        version=int(m.version),
        lease=int(m.lease),
    )


def _error(err: grpc.RpcError, what: str, endpoint: str) -> ShoalError:
    code, details = err.code(), " ".join(str(err.details() or "").split())
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{what}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(f"invalid {what}: {details}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return Conflict(f"{what}: {details}")
    if code == grpc.StatusCode.OUT_OF_RANGE and "future revision" in details:
        return InvalidArgument(f"invalid {what}: {details}")
    return Unavailable(f"etcd {endpoint} {what} failed: {code.name}: {details}")


class EtcdStore:
    def __init__(self, endpoints: builtins.list[str], timeout: float = 5.0) -> None:
        """timeout bounds each unary call (not watches, which live until closed)."""
        self._endpoint = ",".join(endpoints)
        self._timeout = timeout
        self._channel = grpc.insecure_channel(_target(endpoints), options=_CHANNEL_OPTIONS)
        self._kvs = etcdrpc.KVStub(self._channel)
        self._leases = etcdrpc.LeaseStub(self._channel)
        self._watch_stub = etcdrpc.WatchStub(self._channel)
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()

    def _call(self, what: str, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise _error(err, what, self._endpoint) from None

    # -- key-value -----------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        resp = self._call(f"get {key}", self._kvs.Range, etcdrpc.RangeRequest(key=key.encode()))
        return _kv(resp.kvs[0]) if resp.kvs else None

    def list(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        p = prefix.encode()
        resp = self._call(
            f"list {prefix}", self._kvs.Range, etcdrpc.RangeRequest(key=p, range_end=_range_end(p))
        )
        return [_kv(m) for m in resp.kvs], int(resp.header.revision)

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        req = etcdrpc.PutRequest(key=key.encode(), value=value, lease=lease or 0)
        return int(self._call(f"put {key}", self._kvs.Put, req).header.revision)

    def delete(self, key: str) -> bool:
        resp = self._call(
            f"delete {key}", self._kvs.DeleteRange, etcdrpc.DeleteRangeRequest(key=key.encode())
        )
        return int(resp.deleted) > 0

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        req = etcdrpc.TxnRequest(
            compare=[_compare(c) for c in compares],
            success=[_request_op(op) for op in success],
            failure=[_request_op(op) for op in failure],
        )
        resp = self._call("txn", self._kvs.Txn, req)
        results: builtins.list[OpResult] = []
        for r in resp.responses:
            kind = r.WhichOneof("response")
            if kind == "response_range":
                kvs = r.response_range.kvs
                results.append(_kv(kvs[0]) if kvs else None)
            elif kind == "response_delete_range":
                results.append(int(r.response_delete_range.deleted) > 0)
            else:
                results.append(None)
        return TxnResult(bool(resp.succeeded), int(resp.header.revision), tuple(results))

    # -- leases --------------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> Lease:
        resp = self._call("lease grant", self._leases.LeaseGrant, etcdrpc.LeaseGrantRequest(TTL=ttl))
        if resp.error:
            raise Unavailable(f"etcd {self._endpoint} lease grant failed: {resp.error}")
        return Lease(int(resp.ID), int(resp.TTL))

    def keepalive(self, lease_id: int) -> int:
        # One request on a fresh stream: simple, and a keepalive is rare (TTL/3).
        req = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)
        try:
            resp = next(iter(self._leases.LeaseKeepAlive(iter([req]), timeout=self._timeout)))
        except grpc.RpcError as err:
            raise _error(err, f"lease keepalive {lease_id:x}", self._endpoint) from None
        except StopIteration:
            raise Unavailable(f"etcd {self._endpoint} lease keepalive {lease_id:x}: no answer") from None
        if int(resp.TTL) <= 0:  # etcd answers TTL 0 for a lease it does not know
            raise NotFound(f"lease {lease_id:x} not found (expired or revoked)")
        return int(resp.TTL)

    def keepalive_many(self, lease_ids: Sequence[int]) -> dict[int, int]:
        # All requests on one stream: etcd answers each in order before it sees the end of the
        # requests, so one round trip renews them all (≈1000 leases in a few tens of ms).
        if not lease_ids:
            return {}
        requests = [etcdrpc.LeaseKeepAliveRequest(ID=i) for i in lease_ids]
        out: dict[int, int] = {}
        try:
            for n, resp in enumerate(self._leases.LeaseKeepAlive(iter(requests), timeout=self._timeout), 1):
                out[int(resp.ID)] = max(int(resp.TTL), 0)
                if n == len(requests):
                    break
        except grpc.RpcError as err:
            raise _error(err, f"lease keepalive of {len(lease_ids)} leases", self._endpoint) from None
        if len(out) < len(set(lease_ids)):
            raise Unavailable(
                f"etcd {self._endpoint} lease keepalive: {len(out)} of {len(requests)} answered"
            )
        return out

    def revoke(self, lease_id: int) -> None:
        self._call(
            f"lease revoke {lease_id:x}", self._leases.LeaseRevoke, etcdrpc.LeaseRevokeRequest(ID=lease_id)
        )

    # -- watches and history -------------------------------------------------------------

    def watch_prefix(self, prefix: str, start_revision: int) -> EtcdWatch:
        watch = EtcdWatch(self._watch_stub, prefix, start_revision, self._endpoint)
        self._watches.add(watch)
        return watch

    def compact(self, revision: int) -> None:
        try:
            self._kvs.Compact(
                etcdrpc.CompactionRequest(revision=revision, physical=True), timeout=self._timeout
            )
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in str(err.details()):
                raise Compacted(revision) from None
            raise _error(err, f"compact {revision}", self._endpoint) from None

    def close(self) -> None:
        for watch in builtins.list(self._watches):
            watch.close()
        self._channel.close()


class EtcdWatch:
    """One gRPC watch stream per Watch: closing it is just cancelling the call."""

    def __init__(self, stub: Any, prefix: str, start_revision: int, endpoint: str) -> None:
        self._endpoint = endpoint
        self._what = f"watch {prefix} from {start_revision}"
        self._closed = threading.Event()
        # The request stream stays open until close(): ending it would end the watch.
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        p = prefix.encode()
        create = etcdrpc.WatchCreateRequest(
            key=p, range_end=_range_end(p), start_revision=start_revision, prev_kv=True
        )
        self._requests.put(etcdrpc.WatchRequest(create_request=create))
        self._call = stub.Watch(self._request_stream())
        # Wait for "created" so an unreachable etcd fails here, not at the first next().
        self._pending = self._receive()

    def _request_stream(self) -> Iterator[Any]:
        while (req := self._requests.get()) is not None:
            yield req

    def _receive(self) -> builtins.list[Event] | None:
        """Next response as events; None at the end of a closed watch."""
        try:
            resp = next(self._call)
        except grpc.RpcError as err:
            if self._closed.is_set():
                return None
            self.close()  # also frees the thread that feeds our request stream
            raise _error(err, self._what, self._endpoint) from None
        except StopIteration:
            if self._closed.is_set():
                return None
            self.close()
            raise Unavailable(f"etcd {self._endpoint} {self._what}: stream ended") from None
        if resp.compact_revision:
            self.close()
            raise Compacted(int(resp.compact_revision))
        if resp.canceled:
            self.close()
            raise Unavailable(f"etcd {self._endpoint} cancelled {self._what}: {resp.cancel_reason}")
        return [_event(e) for e in resp.events]

    def __iter__(self) -> Iterator[builtins.list[Event]]:
        return self

    def __next__(self) -> builtins.list[Event]:
        while not self._closed.is_set():
            batch, self._pending = self._pending, None
            if batch is None:
                batch = self._receive()
                if batch is None:
                    break
            if batch:  # skip "created" and progress responses
                return batch
        raise StopIteration

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._requests.put(None)
            self._call.cancel()

    def __enter__(self) -> EtcdWatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _event(e: Any) -> Event:
    prev = _kv(e.prev_kv) if e.HasField("prev_kv") else None
    return Event("delete" if e.type == e.DELETE else "put", _kv(e.kv), prev)


def _compare(c: Compare) -> Any:
    m = etcdrpc.Compare(key=c.key.encode(), result=_OPS[c.op])
    if c.target == "value":
        if not isinstance(c.operand, bytes):
            raise InvalidArgument(f"invalid compare operand {c.operand!r}: value needs bytes")
        m.target, m.value = etcdrpc.Compare.VALUE, c.operand
        return m
    if not isinstance(c.operand, int):
        raise InvalidArgument(f"invalid compare operand {c.operand!r}: {c.target} needs an int")
    if c.target == "mod_revision":
        m.target, m.mod_revision = etcdrpc.Compare.MOD, c.operand
    elif c.target == "create_revision":
        m.target, m.create_revision = etcdrpc.Compare.CREATE, c.operand
    else:
        m.target, m.version = etcdrpc.Compare.VERSION, c.operand
    return m


def _request_op(op: Op) -> Any:
    key = op.key.encode()
    if isinstance(op, Put):
        return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=op.value, lease=op.lease or 0))
    if isinstance(op, Delete):
        return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))
    if isinstance(op, Get):
        return etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key))
    raise InvalidArgument(f"invalid txn op {op!r}: expected Put, Delete or Get")
