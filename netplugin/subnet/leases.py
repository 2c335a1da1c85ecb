"""Subnet leases in etcd: taking one (LeaseManager) and following everyone's (LeaseWatcher).

A lease is the key `<prefix>/subnets/<ip>-<len>` on an etcd lease with a short TTL. It is created
in a transaction guarded on the key being absent, so two nodes racing never share a subnet; a
restarted node gets its previous subnet back (remembered in its state dir, or found by its
PublicIP). The keepalive renews the etcd lease every TTL/3 and checks the key is still there: if
the lease ran out while we were paused, the SAME subnet is taken again when it is still free, and
when someone else got it meanwhile the owner is told (the daemon then exits, as flanneld does).
Closing never revokes: a restarted plugin keeps its subnet, and one that never returns frees it
after the TTL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from agent.errors import Conflict, IntegrityError, NotFound, ShoalError, invalid
from controller.store.base import Compacted, Event, KeyValue, Put, Store, Watch, absent, unchanged
from netplugin.config import NetworkConfig
from netplugin.subnet import keyspace
from netplugin.subnet.allocator import choose_subnet
from netplugin.subnet.model import SubnetLease

__all__ = ["LeaseManager", "LeaseWatcher", "SubnetLease", "SubnetLost", "load_previous", "read_leases"]

log = logging.getLogger(__name__)

DEFAULT_TTL = 30
RACE_RETRIES = 10
STATE_FILE = "subnet.json"


class SubnetLost(Conflict):
    """Our subnet's key now belongs to another node: the local network no longer matches etcd."""


# -- reading leases --------------------------------------------------------------------------


def read_leases(prefix: str, kvs: list[KeyValue]) -> dict[IPv4Network, tuple[KeyValue, SubnetLease | None]]:
    """Listed keys -> subnet -> (key-value, lease or None when the value is unreadable).
    Keys that do not name a subnet are skipped with a warning (they block nothing)."""
    out: dict[IPv4Network, tuple[KeyValue, SubnetLease | None]] = {}
    for kv in kvs:
        try:
            subnet = keyspace.parse_subnet_key(prefix, kv.key)
        except IntegrityError as e:
            log.warning("ignoring %s", e)
            continue
        try:
            out[subnet] = (kv, keyspace.decode_lease(subnet, kv.key, kv.value))
        except IntegrityError as e:
            log.warning("%s", e)
            out[subnet] = (kv, None)
    return out


# -- the state dir: our subnet across restarts ---------------------------------------------


def load_previous(state_dir: Path) -> IPv4Network | None:
    """The subnet this node leased last time, if the state dir remembers one."""
    try:
        saved = json.loads((state_dir / STATE_FILE).read_text())
        return IPv4Network(saved["subnet"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable %s: %s", state_dir / STATE_FILE, e)
        return None


def _save(state_dir: Path, lease: SubnetLease) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"subnet": str(lease.subnet), "public_ip": str(lease.public_ip)}))
    os.replace(tmp, path)


# -- taking and keeping our lease --------------------------------------------------------------


class LeaseManager:
    def __init__(
        self,
        store: Store,
        config: NetworkConfig,
        prefix: str = keyspace.DEFAULT_PREFIX,
        ttl: int = DEFAULT_TTL,
        *,
        state_dir: Path | None = None,
        rng: random.Random | None = None,
        on_lost: Callable[[SubnetLost], None] | None = None,
        on_renew_failure: Callable[[], None] | None = None,
    ) -> None:
        """state_dir remembers the subnet for the next start; on_lost is called (from the
        keepalive thread, which then stops) when the subnet went to another node;
        on_renew_failure after each renewal that failed (the daemon's metrics)."""
        if not ttl >= 1:
            raise invalid("--lease-ttl", ttl, "must be at least 1 second (etcd's smallest lease)")
        self.store = store
        self.config = config
        self.prefix = keyspace.normalize_prefix(prefix)
        self.ttl = ttl
        self.state_dir = state_dir
        self._rng = rng or random.Random()
        self._on_lost = on_lost
        self._on_renew_failure = on_renew_failure
        self._lease: SubnetLease | None = None
        self.lease_id = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> SubnetLease:
        if self._lease is None:
            raise RuntimeError("no subnet acquired yet")
        return self._lease

    @property
    def interval(self) -> float:
        return self.ttl / 3

    def acquire(
        self,
        public_ip: IPv4Address,
        backend_type: str,
        vni: int = 0,
        vtep_mac: str = "",
        previous: IPv4Network | None = None,
    ) -> SubnetLease:
        """Lease a subnet for this node (see allocator for which); OutOfSubnets when none is free."""
        lease_id = self.store.grant_lease(math.ceil(self.ttl)).id
        try:
            for _ in range(RACE_RETRIES):
                existing = read_leases(self.prefix, self.store.list(keyspace.subnets_prefix(self.prefix))[0])
                owners = {sn: (lease.public_ip if lease else None) for sn, (_, lease) in existing.items()}
                subnet = choose_subnet(self.config, owners, public_ip, previous, self._rng)
                lease = SubnetLease(subnet, public_ip, backend_type, vni, vtep_mac)
                held = existing.get(subnet)
                if self._put(lease, lease_id, held[0] if held else None):
                    self._lease, self.lease_id = lease, lease_id
                    if self.state_dir is not None:
                        _save(self.state_dir, lease)
                    how = "kept" if subnet == previous or held else "leased"
                    log.info("%s subnet %s for %s (ttl %ds)", how, subnet, public_ip, self.ttl)
                    return lease
                log.info("another node took subnet %s first; choosing again", subnet)
        except BaseException:
            self._revoke_quietly(lease_id)
            raise
        self._revoke_quietly(lease_id)
        raise Conflict(
            f"could not lease a subnet of {self.config.range_text()}: lost {RACE_RETRIES} races in a "
            "row to other nodes; try again"
        )

    def renew(self) -> None:
        """One keepalive: renew the etcd lease, then make sure our key is still there, on it,
        with our value (re-taking the same subnet after an expiry). SubnetLost if it is taken."""
        lease = self.lease
        try:
            self.store.keepalive(self.lease_id)
        except NotFound:
            log.warning("the lease on subnet %s expired; taking the subnet again", lease.subnet)
            self.lease_id = self.store.grant_lease(math.ceil(self.ttl)).id
        key = keyspace.subnet_key(self.prefix, lease.subnet)
        for _ in range(RACE_RETRIES):
            kv = self.store.get(key)
            if kv is not None and kv.lease == self.lease_id and kv.value == keyspace.encode_lease(lease):
                return
            if kv is not None:
                holder = _holder(lease.subnet, kv)
                if holder != lease.public_ip:
                    raise SubnetLost(
                        f"subnet {lease.subnet} is now leased by {holder or 'an unreadable lease'}; "
                        "this node's network no longer matches the cluster: restart it to lease another"
                    )
                log.warning("subnet %s: restoring our lease key (it was changed or moved)", lease.subnet)
            if self._put(lease, self.lease_id, kv):
                return
        raise Conflict(f"subnet {lease.subnet}: its lease key kept changing while we renewed it")

    def run_keepalive(self) -> None:
        """Renew on a thread every TTL/3 until close(); store outages are retried with backoff."""
        self._closed.clear()
        self._thread = threading.Thread(target=self._loop, name="subnet-keepalive", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop renewing WITHOUT revoking: see the module docstring."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- details -------------------------------------------------------------------------------

    def _put(self, lease: SubnetLease, lease_id: int, current: KeyValue | None) -> bool:
        key = keyspace.subnet_key(self.prefix, lease.subnet)
        guard = absent(key) if current is None else unchanged(key, current.mod_revision)
        put = Put(key, keyspace.encode_lease(lease), lease=lease_id)
        return self.store.txn([guard], [put]).succeeded

    def _loop(self) -> None:
        delay = 0.0
        wait = self.interval
        while not self._closed.wait(wait):
            try:
                self.renew()
                delay, wait = 0.0, self.interval
            except SubnetLost as e:
                log.error("%s", e)
                if self._on_renew_failure is not None:
                    self._on_renew_failure()
                if self._on_lost is not None:
                    self._on_lost(e)
                return
            except ShoalError as e:
                if self._on_renew_failure is not None:
                    self._on_renew_failure()
                delay = min(max(delay * 2, 0.1), self.interval)
                wait = delay
                log.warning("renewing subnet %s failed (retrying in %.1fs): %s", self.lease.subnet, wait, e)

    def _revoke_quietly(self, lease_id: int) -> None:
        try:
            self.store.revoke(lease_id)
        except ShoalError as e:
            log.warning("could not revoke unused lease %x (it expires by itself): %s", lease_id, e)


def _holder(subnet: IPv4Network, kv: KeyValue) -> IPv4Address | None:
    try:
        return keyspace.decode_lease(subnet, kv.key, kv.value).public_ip
    except IntegrityError:
        return None


# -- following every node's lease -------------------------------------------------------------


class LeaseWatcher:
    """Lists the leases, then follows the watch; re-lists after a compaction or an outage.

    on_change gets the FULL current set (ours included) after the first list and after every
    watch batch that changed it; it runs on the watcher's thread. Unreadable leases are left
    out (nothing can be routed to them) with a warning.
    """

    def __init__(
        self,
        store: Store,
        prefix: str,
        on_change: Callable[[dict[IPv4Network, SubnetLease]], None],
        *,
        start: bool = True,
        on_relist: Callable[[dict[IPv4Network, SubnetLease]], None] | None = None,
    ) -> None:
        """on_relist, when given, gets the full lists (the first and those after a compaction or
        an outage) instead of on_change, so a caller can tell them from watch batches."""
        self.store = store
        self.prefix = keyspace.normalize_prefix(prefix)
        self.on_change = on_change
        self.on_relist = on_relist
        self._published: dict[IPv4Network, SubnetLease] | None = None
        self._closed = threading.Event()
        self._synced = threading.Event()
        self._lock = threading.Lock()
        self._watch: Watch | None = None
        self._thread = threading.Thread(target=self._loop, name="subnet-watch", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self._thread.start()

    @property
    def leases(self) -> dict[IPv4Network, SubnetLease]:
        with self._lock:
            return dict(self._published or {})

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once the first full list was handed over (to on_relist when set, else on_change)."""
        return self._synced.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            watch = self._watch
        if watch is not None:
            watch.close()  # ends the iteration blocked on the watcher's thread
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        delay = 0.0
        while not self._closed.is_set():
            try:
                kvs, revision = self.store.list(keyspace.subnets_prefix(self.prefix))
                current = {sn: lease for sn, (_, lease) in read_leases(self.prefix, kvs).items() if lease}
                self._publish(current, force=True)
                watch = self.store.watch_prefix(keyspace.subnets_prefix(self.prefix), revision + 1)
                with self._lock:
                    self._watch = watch
                if self._closed.is_set():
                    watch.close()
                    break
                delay = 0.0
                with watch:
                    for batch in watch:
                        for event in batch:
                            self._apply(current, event)
                        self._publish(current)
            except Compacted:
                log.info("subnet lease history was compacted; listing again")
            except ShoalError as e:
                if self._closed.is_set():
                    break
                delay = min(max(delay * 2, 0.1), 5.0)
                log.warning("watching subnet leases failed (retrying in %.1fs): %s", delay, e)
                self._closed.wait(delay)

    def _apply(self, current: dict[IPv4Network, SubnetLease], event: Event) -> None:
        try:
            subnet = keyspace.parse_subnet_key(self.prefix, event.kv.key)
        except IntegrityError as e:
            log.warning("ignoring %s", e)
            return
        if event.type == "delete":
            current.pop(subnet, None)
            return
        try:
            current[subnet] = keyspace.decode_lease(subnet, event.kv.key, event.kv.value)
        except IntegrityError as e:
            log.warning("%s", e)
            current.pop(subnet, None)

    def _publish(self, current: Mapping[IPv4Network, SubnetLease], force: bool = False) -> None:
        if not force and current == self._published:
            return
        snapshot = dict(current)
        with self._lock:
            self._published = snapshot
        notify = self.on_relist if force and self.on_relist is not None else self.on_change
        try:
            notify(dict(snapshot))
        except Exception:  # the data plane's problem, not the watch's: its repair loop re-diffs
            log.exception("applying %d subnet leases failed", len(snapshot))
        self._synced.set()
