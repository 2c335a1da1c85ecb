"""A fleet of hollow agents in one process: `python -m agent.tasks.hollow --etcd URL --count N --prefix P`.

Each hollow node runs the real registration, TaskWorker and plan code over a FakeRuntime, so a
laptop can show a controller hundreds of nodes. What would cost N of everything is shared: one
EtcdStore (one gRPC channel), ONE watch on assignments/ demultiplexed by node into the workers'
feeds, one keepalive round for all leases (a single etcd stream), batched status writes and one
timer thread for the fakes' scripted exits. Node ids are `<prefix><i>`, 1-based, zero-padded to
equal width. Prints `hollow: N nodes ready` on stdout once all are registered; SIGTERM or SIGINT
stops it without revoking the leases (the nodes go down after their TTL, as real agents would).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from agent.errors import InvalidArgument, ShoalError, invalid
from agent.models import parse_size, validate_name
from agent.supervisor import Supervisor
from agent.tasks.fake_runtime import FakeRuntime
from agent.tasks.registration import NodeRegistration
from agent.tasks.status import BatchedStatusWriter
from agent.tasks.worker import Backoff, TaskWorker
from controller.api import keyspace
from controller.api.types import NodeInfo
from controller.store.base import Compacted, Event, KeyValue, Store, Watch

log = logging.getLogger("agent.tasks.hollow")

KEEPALIVE_CHUNK = 500
"""Leases renewed per keepalive stream."""
REGISTER_THREADS = 8


def node_ids(prefix: str, count: int) -> list[str]:
    width = len(str(count))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


class HollowFleet:
    def __init__(
        self,
        store: Store,
        infos: Sequence[NodeInfo],
        ttl: float = 10.0,
        resync_interval: float = 60.0,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.timers = Supervisor()
        self.registrations = [NodeRegistration(store, info, ttl) for info in infos]
        writer = BatchedStatusWriter(store)
        self.runtimes = {info.id: FakeRuntime(self.timers) for info in infos}
        self.workers = {
            info.id: TaskWorker(
                info.id,
                store,
                self.runtimes[info.id],
                writer,
                own_watch=False,
                resync_interval=resync_interval,
            )
            for info in infos
        }
        self._closed = threading.Event()
        self._watch_lock = threading.Lock()
        self._watch: Watch | None = None
        self._threads = [
            threading.Thread(target=self._watch_loop, name="hollow-watch", daemon=True),
            threading.Thread(target=self._keepalive_loop, name="hollow-keepalive", daemon=True),
        ]
        self.keepalive_seconds = 0.0
        """Duration of the last keepalive round (all leases)."""

    def start(self) -> None:
        """Register every node (returns once all are registered), then run workers and threads."""
        self.timers.start()
        with ThreadPoolExecutor(REGISTER_THREADS, thread_name_prefix="hollow-register") as pool:
            list(pool.map(_register_until_done, self.registrations, [self._closed] * len(self.registrations)))
        for worker in self.workers.values():
            worker.start()
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._closed.set()
        with self._watch_lock:
            watch = self._watch
        if watch is not None:
            watch.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)
        for worker in self.workers.values():
            worker.close()
        self.timers.stop()

    # -- one watch for every node ---------------------------------------------------------

    def _watch_loop(self) -> None:
        backoff = Backoff()
        while not self._closed.is_set():
            try:
                revision = self._snapshot()
                watch = self.store.watch_prefix(keyspace.ASSIGNMENTS, revision + 1)
                with self._watch_lock:
                    self._watch = watch
                if self._closed.is_set():
                    watch.close()
                    break
                backoff.reset()
                with watch:
                    for batch in watch:
                        self._demux(batch)
            except Compacted:
                log.info("assignment history compacted; listing again")
            except ShoalError as e:
                if self._closed.is_set():
                    break
                delay = backoff.next()
                log.warning("assignment watch failed (retrying in %.1fs): %s", delay, e)
                self._closed.wait(delay)

    def _snapshot(self) -> int:
        assignments, revision = self.store.list(keyspace.ASSIGNMENTS)
        statuses, _ = self.store.list(keyspace.STATUS)
        by_node = _by_node(assignments)
        status_by_node = _by_node(statuses)
        for node_id, worker in self.workers.items():
            worker.reset(by_node.get(node_id, []), status_by_node.get(node_id, []))
        return revision

    def _demux(self, batch: list[Event]) -> None:
        by_node: dict[str, list[Event]] = defaultdict(list)
        for ev in batch:
            by_node[keyspace.node_of(ev.kv.key)].append(ev)
        for node_id, events in by_node.items():
            worker = self.workers.get(node_id)
            if worker is not None:
                worker.feed(events)

    # -- one keepalive round for every lease ----------------------------------------------

    def _keepalive_loop(self) -> None:
        interval = self.ttl / 3
        while not self._closed.wait(interval):
            started = time.monotonic()
            try:
                self.keepalive_round()
            except ShoalError as e:
                log.warning("keepalive round failed (retrying in 1s): %s", e)
                self._closed.wait(min(1.0, interval))
                continue
            self.keepalive_seconds = time.monotonic() - started
            log.debug("keepalive of %d leases took %.3fs", len(self.registrations), self.keepalive_seconds)

    def keepalive_round(self) -> None:
        regs = self.registrations
        for i in range(0, len(regs), KEEPALIVE_CHUNK):
            chunk = regs[i : i + KEEPALIVE_CHUNK]
            ttls = self.store.keepalive_many([r.lease_id for r in chunk])
            for r in chunk:
                if ttls.get(r.lease_id, 0) <= 0:
                    r.lease_lost()


def _register_until_done(registration: NodeRegistration, closed: threading.Event) -> None:
    backoff = Backoff(cap=2.0)
    while not closed.is_set():
        try:
            registration.register()
            return
        except ShoalError as e:
            delay = backoff.next()
            log.warning(
                "node %s: registration failed (retrying in %.1fs): %s", registration.node_id, delay, e
            )
            closed.wait(delay)


def _by_node(kvs: list[KeyValue]) -> dict[str, list[KeyValue]]:
    out: dict[str, list[KeyValue]] = defaultdict(list)
    for kv in kvs:
        out[keyspace.node_of(kv.key)].append(kv)
    return out


# ---- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent.tasks.hollow", description=__doc__.split("\n")[0])
    p.add_argument(
        "--etcd", required=True, metavar="URL", help="etcd endpoint(s), host:port, comma-separated"
    )
    p.add_argument("--count", required=True, type=int, metavar="N", help="number of hollow nodes")
    p.add_argument("--prefix", required=True, metavar="P", help="node ids are <P><i>")
    p.add_argument("--cpus", type=float, default=4.0, metavar="N", help="CPUs each node offers (default 4)")
    p.add_argument("--memory", default="8g", metavar="SIZE", help="memory each node offers (default 8g)")
    p.add_argument("--ttl", type=float, default=10.0, metavar="SECONDS", help="node lease TTL (default 10)")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="node label (repeatable)")
    return p


def _infos(args: argparse.Namespace) -> list[NodeInfo]:
    if args.count < 1:
        raise invalid("--count", args.count, "must be at least 1")
    if not args.cpus > 0:
        raise invalid("--cpus", args.cpus, "must be greater than zero")
    if not args.ttl >= 1:
        raise invalid("--ttl", args.ttl, "must be at least 1 second (etcd's smallest lease)")
    memory = parse_size("--memory", args.memory)
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise invalid("--label", item, "expected KEY=VALUE")
        labels[key] = value
    ids = node_ids(args.prefix, args.count)
    validate_name("--prefix", ids[0])
    return [
        NodeInfo(
            id=i,
            hostname=i,
            address="127.0.0.1",
            nano_cpus=int(args.cpus * 1e9),
            memory_bytes=memory,
            labels=labels,
        )
        for i in ids
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        infos = _infos(args)
    except InvalidArgument as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    from controller.store.etcd import EtcdStore  # ~0.2 s: after the arguments are known to be good

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    store = EtcdStore(args.etcd.split(","))
    fleet = HollowFleet(store, infos, ttl=args.ttl)
    started = time.monotonic()
    try:
        fleet.start()
        if not done.is_set():
            print(f"hollow: {len(infos)} nodes ready", flush=True)
            log.info("%d nodes registered in %.1fs", len(infos), time.monotonic() - started)
        done.wait()
    finally:
        fleet.close()
        store.close()
    log.info("stopped; leases left to expire")
    return 0


if __name__ == "__main__":
    sys.exit(main())
