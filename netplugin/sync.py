"""Desired (from the lease set) -> diff against the kernel -> apply; and the repair loop.

Level-triggered: every `update` and every `repair` lists OUR entries in the kernel, diffs them
against the full desired set and applies only the difference, so a killed and restarted plugin
changes nothing that is already right (running flows are not disturbed), and an entry deleted by
hand comes back on the next repair. Routes are removed first and added last, so a route never
points at a neighbour or FDB entry that is not there yet (or any more).

Nothing is programmed until the first `update`: before the lease set is known an empty desired
set would wipe every route at start-up.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network
from typing import TypeVar

from netplugin.backends.base import Backend
from netplugin.config import NetworkConfig
from netplugin.dataplane.model import Changes, Desired, NetlinkDriver, UnderlayInfo, diff
from netplugin.subnet.model import SubnetLease

log = logging.getLogger(__name__)

E = TypeVar("E")

SyncObserver = Callable[[str, float, int], None]
"""Told after each diff+apply pass: (trigger: watch | relist | repair, seconds, entries re-added
by a repair); the daemon's metrics."""

# Deleting what is already gone is success: the kernel reached the state we wanted.
_GONE = {errno.ESRCH, errno.ENOENT}


class NetworkSync:
    def __init__(
        self,
        driver: NetlinkDriver,
        backend: Backend,
        config: NetworkConfig,
        local: SubnetLease,
        underlay: UnderlayInfo,
        on_sync: SyncObserver | None = None,
    ) -> None:
        self.driver = driver
        self.backend = backend
        self.config = config
        self.local = local
        self.underlay = underlay
        self._lock = threading.Lock()
        self._leases: dict[IPv4Network, SubnetLease] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rejected: tuple[str, ...] = ()
        self.last_changes = Changes()
        self.errors = 0  # kernel operations that failed (the next repair retries them)
        self.programmed = Desired()
        """What the last pass left in the kernel for remote leases."""
        self.on_sync = on_sync
        with self._lock:
            backend.ensure(driver, local)

    # -- the diff ----------------------------------------------------------------------------

    def desired(self) -> Desired:
        leases = self._leases or {}
        remotes = [
            lease
            for subnet, lease in sorted(leases.items())
            if subnet != self.local.subnet and lease.public_ip != self.local.public_ip
        ]
        return self.backend.desired(self.local, remotes, self.underlay)

    def actual(self) -> Desired:
        """Our entries in the kernel: routes with our protocol number, entries on our devices."""
        neighbours, fdb = set(), set()
        for dev in self.backend.devices:
            try:
                neighbours |= self.driver.list_neighbours(dev)
                fdb |= self.driver.list_fdb(dev)
            except OSError as e:
                if e.errno != errno.ENODEV:
                    raise
        return Desired.of(self.driver.list_routes(), neighbours, fdb)

    def update(self, leases: Mapping[IPv4Network, SubnetLease], trigger: str = "watch") -> None:
        """The FULL current lease set (ours included; it is skipped); trigger: watch or relist."""
        with self._lock:
            self._leases = dict(leases)
            self._converge(trigger)

    def repair(self) -> None:
        """Re-create local device state and re-diff against the kernel (entries deleted by hand)."""
        with self._lock:
            if self._leases is None:
                return
            self.backend.ensure(self.driver, self.local)
            self._converge("repair")

    def _converge(self, trigger: str) -> None:
        started = time.perf_counter()
        errors = self.errors
        added = self._diff_apply()
        # A clean pass leaves exactly what we wanted; after a failure, ask the kernel.
        self.programmed = self.desired() if self.errors == errors else self.actual()
        if self.on_sync is not None:
            self.on_sync(trigger, time.perf_counter() - started, added if trigger == "repair" else 0)

    def _diff_apply(self) -> int:
        """One pass; returns how many entries it added."""
        want = self.desired()
        if want.rejected != self.rejected:
            for message in want.rejected:
                log.error("%s", message)
            self.rejected = want.rejected
        changes = diff(want, self.actual())
        self.last_changes = changes
        if changes.empty:
            return 0
        log.info("data plane: applying %d change(s)", len(changes))
        return self._apply(changes)

    def _apply(self, c: Changes) -> int:
        d = self.driver
        self._each("delete route", c.del_routes, d.del_route)
        self._each("delete neighbour", c.del_neighbours, d.del_neighbour)
        self._each("delete fdb", c.del_fdb, d.del_fdb)
        added = self._each("add fdb", c.add_fdb, d.add_fdb)
        added += self._each("set neighbour", c.add_neighbours, d.add_neighbour)
        return added + self._each("add route", c.add_routes, d.add_route)

    def _each(self, what: str, entries: tuple[E, ...], op: Callable[[E], None]) -> int:
        """Apply `op` to each entry; returns how many succeeded."""
        done = 0
        for entry in entries:
            try:
                op(entry)
                done += 1
            except OSError as e:
                if what.startswith("delete") and e.errno in _GONE:
                    continue
                self.errors += 1
                if what == "add route" and e.errno == errno.EEXIST:
                    # Not listed as ours, so someone else's route holds that destination: leave it.
                    log.error(
                        "%s %s: the destination is taken by a route that is not ours; left alone", what, entry
                    )
                else:
                    log.error("%s %s failed: %s (the repair loop retries)", what, entry, e)
        return done

    # -- repair loop -------------------------------------------------------------------------

    def start_repair_loop(self, interval: float = 5.0) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="netsync-repair", daemon=True
        )
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.repair()
            except Exception:  # keep repairing: a transient kernel error must not end the loop
                log.exception("data plane repair failed")

    def close(self) -> None:
        """Stop the repair loop. The kernel state stays: a restarted plugin takes over undisturbed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
