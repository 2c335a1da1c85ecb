"""The node's default network for containers, as netplugin set it up (flannel-style).

netplugin leases the node's subnet, creates the bridge and writes subnet.env; the agent reads that
file and, per container on the default network, makes a network namespace, plugs it into the
bridge with an address from IPAM and publishes its ports (DNAT on the node). The namespace lives
as long as the container (restarts included) and goes with `rm`.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from agent.errors import ShoalError, Unavailable
from netplugin.attach import attach, detach
from netplugin.bridge import DEFAULT_BRIDGE, ensure_bridge
from netplugin.dataplane.links import Links
from netplugin.env import parse_subnet_env
from netplugin.ipam import Ipam
from netplugin.ports import PortMapping
from netplugin.rules import Rules

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
"""Where `ip netns` keeps named namespaces; ours are `shoal-<container id[:16]>`."""


@dataclass(frozen=True)
class Connection:
    netns_path: str
    ip: IPv4Interface


def netns_name(container_id: str) -> str:
    return f"shoal-{container_id[:16]}"


class NodeNetwork:
    def __init__(self, env_file: Path, state_dir: Path, node_netns: str | None = None) -> None:
        """`node_netns`: the node's "host" is that namespace (the lab); None: this one."""
        try:
            env = parse_subnet_env(env_file.read_text(), str(env_file))
        except OSError as e:
            raise Unavailable(f"node network: cannot read {env_file} (is netplugin running?): {e}") from None
        self.env = env
        self.node_netns = node_netns
        self.ipam = Ipam(state_dir / "ipam", env.subnet)
        self.rules = Rules(node_netns)
        self.bridge = DEFAULT_BRIDGE
        with self._links() as links:
            ensure_bridge(links, self.bridge, gateway=env.gateway, mtu=env.mtu)

    def _links(self) -> Links:
        # One per call: pyroute2 binds its socket to the thread that first uses it, and the API
        # serves each request on whichever gRPC thread is free.
        return Links(netns=self.node_netns)

    def connect(self, container_id: str, publish: list[PortMapping]) -> Connection:
        """A namespace plugged into the bridge, with its ports published; all or nothing."""
        name = netns_name(container_id)
        path = str(NETNS_DIR / name)
        if not Path(path).exists():
            _ip_netns("add", name)
        try:
            with self._links() as links:
                attached = attach(links, self.ipam, container_id, path, self.bridge, self.env.mtu)
            if publish:
                self.rules.publish_all(attached.ip.ip, publish)
        except BaseException:
            self.disconnect(container_id)
            raise
        return Connection(path, attached.ip)

    def disconnect(self, container_id: str) -> None:
        """Undo connect; idempotent, and each step is tried even if an earlier one failed."""
        ip = self.ipam.lookup(container_id)
        errors: list[str] = []
        if ip is not None:
            try:
                self.rules.unpublish_container(ip.ip)
            except ShoalError as e:
                errors.append(str(e))
        # The namespace first: it takes the veth with it (asynchronously, ≈ 1 ms) where deleting a
        # live veth costs ≈ 20 ms; detach then only frees the address.
        name = netns_name(container_id)
        if (NETNS_DIR / name).exists():
            try:
                _ip_netns("delete", name)
            except ShoalError as e:
                errors.append(str(e))
        try:
            with self._links() as links:
                detach(links, self.ipam, container_id)
        except ShoalError as e:
            errors.append(str(e))
        if errors:
            log.warning("container %s: network teardown: %s", container_id[:12], "; ".join(errors))


def _ip_netns(action: str, name: str) -> None:
    result = subprocess.run(["ip", "netns", action, name], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Unavailable(f"ip netns {action} {name}: {result.stderr.strip()}")
