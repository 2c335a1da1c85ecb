"""`shoal netplugin`: one node's overlay network, wired from the parts, until SIGTERM.

Start-up: wait for the network config in etcd, validate it; find the underlay (the interface
holding --public-ip); let the backend prepare its device (and the VTEP MAC a restart keeps);
lease a subnet (the previous one when possible); ensure the bridge (the subnet's first address,
the backend's MTU); masquerade + forward rules; then follow every node's lease into the kernel
(watch -> NetworkSync.update, plus the repair loop) and keep our lease alive. subnet.env is
written last, so its presence means the node's network is up.

Stopping (SIGTERM/SIGINT) leaves the lease and every kernel entry in place: a restarted plugin
takes them over without disturbing running flows, and a node that never returns loses its lease
after the TTL. Losing the subnet to another node (we were away past the TTL) stops the daemon
with an error, as flanneld does: the bridge addresses no longer match the cluster.

With --netns the node's "host" is that network namespace (the lab): links, routes and iptables
are changed inside it while this process stays in the root namespace, next to etcd on loopback.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from agent.errors import ShoalError, Unavailable
from controller.store.base import Store
from netplugin.config import NetworkConfig, parse_config
from netplugin.env import SubnetEnv, read_subnet_env, write_subnet_env
from netplugin.subnet import keyspace
from netplugin.subnet.leases import DEFAULT_TTL, LeaseManager, LeaseWatcher, SubnetLost, load_previous
from netplugin.subnet.model import SubnetLease

if TYPE_CHECKING:
    from agent.metrics_server import MetricsServer
    from netplugin.dataplane.netlink import Netlink
    from netplugin.metrics import NetpluginMetrics
    from netplugin.sync import NetworkSync

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_STATE_DIR = Path("/var/lib/shoal/net")
DEFAULT_SUBNET_FILE = Path("/run/shoal/subnet.env")
DEFAULT_IPAM_DIR = Path("/var/lib/shoal/network/ipam")
"""Where a default agent (state dir /var/lib/shoal) keeps its container addresses."""


@dataclass(frozen=True)
class NetpluginConfig:
    etcd_endpoints: tuple[str, ...]
    public_ip: IPv4Address
    iface: str | None = None
    netns: str | None = None
    prefix: str = keyspace.DEFAULT_PREFIX
    lease_ttl: int = DEFAULT_TTL
    state_dir: Path = DEFAULT_STATE_DIR
    subnet_file: Path = DEFAULT_SUBNET_FILE
    bridge: str = "shoal0"
    repair_interval: float = 5.0
    config_poll_interval: float = 1.0
    metrics_address: str = ""
    """HOST:PORT for Prometheus metrics (port 0: any free one); empty: no listener."""
    ipam_dir: Path = DEFAULT_IPAM_DIR
    """The agent's IPAM state (`<agent state dir>/network/ipam`): container addresses in use."""


def gateway_of(subnet: IPv4Network) -> IPv4Interface:
    """The bridge's address: the subnet's first host address, with the subnet's prefix."""
    return IPv4Interface((subnet.network_address + 1, subnet.prefixlen))


def wait_for_config(
    store: Store, prefix: str, stop: threading.Event, poll: float = 1.0
) -> NetworkConfig | None:
    """The validated config, once it exists (None if `stop` is set first). An invalid config is
    an InvalidArgument at once: nothing is set up from a config we cannot read."""
    key = keyspace.config_key(prefix)
    waiting_logged = False
    delay = 0.0
    while not stop.is_set():
        try:
            kv = store.get(key)
        except ShoalError as e:
            delay = min(max(delay * 2, 0.1), 5.0)
            log.warning("reading the network config at %s failed (retrying in %.1fs): %s", key, delay, e)
            stop.wait(delay)
            continue
        if kv is not None:
            return parse_config(kv.value)
        if not waiting_logged:
            log.info("waiting for the network config at %s (write it with `shoal network config set`)", key)
            waiting_logged = True
        stop.wait(poll)
    return None


def previous_subnet(state_dir: Path, subnet_file: Path, network: IPv4Network) -> IPv4Network | None:
    """Our subnet from the last run: the state dir first, then subnet.env (as flannel does)."""
    remembered = load_previous(state_dir)
    if remembered is not None:
        return remembered
    try:
        env = read_subnet_env(subnet_file)
    except ShoalError as e:
        log.warning("ignoring %s", e)
        return None
    return env.subnet if env is not None and env.network == network else None


class Netplugin:
    """The running parts of one node's network; `close()` stops them and leaves the state."""

    def __init__(
        self,
        cfg: NetpluginConfig,
        store: Store,
        stop: threading.Event,
        on_lost: Callable[[SubnetLost], None] | None = None,
        metrics: NetpluginMetrics | None = None,
    ) -> None:
        """`stop` ends waits for an unreachable etcd during start-up; on_lost: see LeaseManager."""
        self.cfg = cfg
        self.store = store
        self._stop = stop
        self._on_lost = on_lost
        self.metrics = metrics
        self.driver: Netlink | None = None
        self.manager: LeaseManager | None = None
        self.sync: NetworkSync | None = None
        self.watcher: LeaseWatcher | None = None

    def start(self, net: NetworkConfig) -> SubnetLease:
        # Imported here: pyroute2 costs ~0.3 s and the CLI's usage errors should not pay for it.
        from netplugin.backends.registry import BACKENDS
        from netplugin.bridge import ensure_bridge
        from netplugin.dataplane.links import Links
        from netplugin.dataplane.netlink import Netlink
        from netplugin.rules import Rules, Vxlan
        from netplugin.sync import NetworkSync

        cfg = self.cfg
        self.driver = driver = Netlink(cfg.netns)
        underlay = driver.underlay(cfg.public_ip, cfg.iface)
        where = f" in netns {cfg.netns}" if cfg.netns else ""
        log.info(
            "underlay %s on %s%s (mtu %d, network %s)",
            underlay.public_ip,
            underlay.iface,
            where,
            underlay.mtu,
            underlay.network,
        )
        backend = BACKENDS[net.backend.type]()
        vni, vtep_mac = backend.prepare(driver, net, underlay, cfg.state_dir)

        metrics = self.metrics
        self.manager = LeaseManager(
            self.store,
            net,
            cfg.prefix,
            cfg.lease_ttl,
            state_dir=cfg.state_dir,
            on_lost=self._on_lost,
            on_renew_failure=metrics.renewal_failed if metrics is not None else None,
        )
        previous = previous_subnet(cfg.state_dir, cfg.subnet_file, net.network)
        manager = self.manager
        lease = self._retrying(
            "leasing a subnet",
            lambda: manager.acquire(cfg.public_ip, net.backend.type, vni, vtep_mac, previous),
        )
        self.manager.run_keepalive()

        gateway = gateway_of(lease.subnet)
        with Links(cfg.netns) as links:
            ensure_bridge(links, cfg.bridge, gateway=gateway, mtu=backend.mtu)
        vxlan = Vxlan(underlay.public_ip, net.backend.port) if net.backend.type == "vxlan" else None
        Rules(cfg.netns).ensure_cluster(net.network, lease.subnet, vxlan)

        self.sync = sync = NetworkSync(
            driver, backend, net, lease, underlay, metrics.observe_sync if metrics is not None else None
        )
        self.watcher = LeaseWatcher(
            self.store,
            cfg.prefix,
            lambda leases: sync.update(leases, "watch"),
            on_relist=lambda leases: sync.update(leases, "relist"),
        )
        self.sync.start_repair_loop(cfg.repair_interval)
        write_subnet_env(cfg.subnet_file, SubnetEnv(net.network, lease.subnet, backend.mtu, ipmasq=True))
        log.info(
            "node network up: subnet %s, %s on %s, mtu %d, backend %s; wrote %s",
            lease.subnet,
            gateway,
            cfg.bridge,
            backend.mtu,
            net.backend.type,
            cfg.subnet_file,
        )
        return lease

    def _retrying(self, what: str, step: Callable[[], T]) -> T:
        """Run `step`, retrying with backoff while etcd is unreachable (until stopped)."""
        delay = 0.0
        while True:
            try:
                return step()
            except Unavailable as e:
                delay = min(max(delay * 2, 0.5), 10.0)
                log.warning("%s failed (retrying in %.1fs): %s", what, delay, e)
                if self._stop.wait(delay):
                    raise

    def close(self) -> None:
        """Stop following and renewing; revoke nothing, delete nothing."""
        if self.watcher is not None:
            self.watcher.close()
        if self.sync is not None:
            self.sync.close()
        if self.manager is not None:
            self.manager.close()
        if self.driver is not None:
            self.driver.close()


def run(cfg: NetpluginConfig) -> None:
    """Run until SIGTERM/SIGINT. Raises ShoalError (the CLI prints one line) when start-up fails
    or the subnet was lost."""
    from controller.store.etcd import EtcdStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prefix = keyspace.normalize_prefix(cfg.prefix)
    done = threading.Event()
    lost: list[SubnetLost] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    def on_lost(err: SubnetLost) -> None:
        lost.append(err)
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)

    metrics: NetpluginMetrics | None = None
    metrics_server: MetricsServer | None = None
    if cfg.metrics_address:
        from agent.metrics_server import serve_metrics
        from netplugin.metrics import NetpluginMetrics

        metrics = NetpluginMetrics(ipam_dir=cfg.ipam_dir)
        metrics_server = serve_metrics(cfg.metrics_address, metrics.registry)
    store: Store = EtcdStore(list(cfg.etcd_endpoints))
    if metrics is not None:
        from controller.store.instrumented import InstrumentedStore

        store = InstrumentedStore(store, metrics.registry)
    plugin = Netplugin(cfg, store, done, on_lost, metrics)
    if metrics is not None:
        metrics.attach(plugin)
    try:
        net = wait_for_config(store, prefix, done, cfg.config_poll_interval)
        if net is None:
            return
        log.info("network config: %s", net.to_json().decode())
        try:
            plugin.start(net)
        except OSError as e:  # the kernel refused something: one line, not a traceback
            raise Unavailable(f"setting up the node network failed: {e}") from None
        except Unavailable:
            if not done.is_set():
                raise
            log.info("stopped while waiting for etcd during start-up")
        done.wait()
    finally:
        plugin.close()
        store.close()
        if metrics_server is not None:
            metrics_server.close()
    if lost:
        raise lost[0]
    log.info("netplugin stopped; the lease and the kernel state are left for the next start")
