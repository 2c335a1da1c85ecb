"""`shoal netplugin` (the node's overlay network daemon) and `shoal network config set|get`
(flannel's network config in etcd)."""

from __future__ import annotations

import importlib
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.errors import NotFound, invalid
from deploy.cli.common import MetricsAddressOpt, absolute

if TYPE_CHECKING:
    from controller.store.etcd import EtcdStore

NETNS_DIR = Path("/var/run/netns")
DEFAULT_PREFIX = "/coreos.com/network"  # netplugin.subnet.keyspace.DEFAULT_PREFIX, kept import-free

EtcdOpt = Annotated[
    str,
    typer.Option("--etcd", metavar="HOST:PORT[,...]", help="etcd client endpoints (http:// accepted)."),
]
PrefixOpt = Annotated[
    str,
    typer.Option("--prefix", metavar="KEY", help="etcd key prefix of the network (flannel's --etcd-prefix)."),
]


def netplugin(
    public_ip: Annotated[
        str,
        typer.Option(
            "--public-ip", metavar="IP", help="This node's address on the underlay; peers reach it here."
        ),
    ],
    etcd: EtcdOpt = "127.0.0.1:2379",
    iface: Annotated[
        str | None,
        typer.Option(
            "--iface", metavar="NAME", help="Underlay interface (default: the one holding --public-ip)."
        ),
    ] = None,
    netns: Annotated[
        str | None,
        typer.Option(
            "--netns",
            metavar="NAME",
            help="Lab mode: the node's host is this network namespace (all kernel changes happen there).",
        ),
    ] = None,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    lease_ttl: Annotated[
        int,
        typer.Option("--lease-ttl", metavar="SECONDS", help="Subnet lease TTL; renewed every third of it."),
    ] = 30,
    state_dir: Annotated[
        str,
        typer.Option("--state-dir", metavar="DIR", help="Remembers the subnet and VTEP MAC across restarts."),
    ] = "/var/lib/shoal/net",
    subnet_file: Annotated[
        str,
        typer.Option(
            "--subnet-file", metavar="PATH", help="flannel's subnet.env, written once the network is up."
        ),
    ] = "/run/shoal/subnet.env",
    metrics_address: MetricsAddressOpt = "",
    ipam_dir: Annotated[
        str,
        typer.Option(
            "--ipam-dir",
            metavar="DIR",
            help="The node agent's address pool (AGENT_STATE_DIR/network/ipam), counted in the metrics.",
        ),
    ] = "/var/lib/shoal/network/ipam",
) -> None:
    """Run the node's overlay network in the foreground until SIGTERM or Ctrl-C.

    Stopping leaves the subnet lease and the kernel state in place, so a restart does not disturb
    running containers. --host does not apply here.
    """
    from netplugin.daemon import NetpluginConfig
    from netplugin.subnet.keyspace import normalize_prefix

    if iface is not None:
        _check_ifname("--iface", iface)
    if netns is not None and (not netns or "/" in netns or not (NETNS_DIR / netns).exists()):
        raise invalid("--netns", netns, "no such network namespace (see `ip netns list`)")
    if not lease_ttl >= 1:
        raise invalid("--lease-ttl", lease_ttl, "must be at least 1 second (etcd's smallest lease)")
    if metrics_address:
        from agent.metrics_server import parse_address

        parse_address("--metrics-address", metrics_address)
    config = NetpluginConfig(
        etcd_endpoints=_endpoints(etcd),
        public_ip=_ipv4("--public-ip", public_ip),
        iface=iface,
        netns=netns,
        prefix=normalize_prefix(prefix),
        lease_ttl=lease_ttl,
        state_dir=Path(absolute(state_dir)),
        subnet_file=Path(absolute(subnet_file)),
        metrics_address=metrics_address,
        ipam_dir=Path(absolute(ipam_dir)),
    )
    # Imported here: the daemon pulls in etcd and pyroute2, which no usage error should wait for.
    daemon = importlib.import_module("netplugin.daemon")
    daemon.run(config)


# ---- shoal network config ----------------------------------------------------------------------

network_app = typer.Typer(help="The cluster network (flannel-compatible, in etcd).", no_args_is_help=True)
config_app = typer.Typer(help="The network config at <prefix>/config.", no_args_is_help=True)
network_app.add_typer(config_app, name="config")


@config_app.command("set")
def config_set(
    network: Annotated[
        str, typer.Option("--network", metavar="CIDR", help="The cluster network, like 10.244.0.0/16.")
    ],
    etcd: EtcdOpt = "127.0.0.1:2379",
    prefix: PrefixOpt = DEFAULT_PREFIX,
    backend: Annotated[
        str, typer.Option("--backend", metavar="vxlan|host-gw", help="How packets cross between nodes.")
    ] = "vxlan",
    direct_routing: Annotated[
        bool,
        typer.Option("--direct-routing", help="vxlan: route directly to peers on the same L2 segment."),
    ] = False,
    subnet_len: Annotated[
        int | None,
        typer.Option(
            "--subnet-len", metavar="BITS", help="Each node's subnet prefix (default 24, as flannel)."
        ),
    ] = None,
    subnet_min: Annotated[
        str | None, typer.Option("--subnet-min", metavar="IP", help="First leasable subnet.")
    ] = None,
    subnet_max: Annotated[
        str | None, typer.Option("--subnet-max", metavar="IP", help="Last leasable subnet.")
    ] = None,
    vni: Annotated[
        int | None, typer.Option("--vni", metavar="N", help="vxlan: VXLAN id (default 1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", metavar="PORT", help="vxlan: UDP port (default 8472).")
    ] = None,
    mtu: Annotated[
        int | None,
        typer.Option(
            "--mtu", metavar="BYTES", help="Container MTU (default: the underlay's, minus 50 for vxlan)."
        ),
    ] = None,
) -> None:
    """Validate and write the network config; prints the JSON written.

    Nodes read it when their netplugin starts: change it before the first node joins.
    """
    from netplugin.config import validate_config
    from netplugin.subnet.keyspace import config_key, normalize_prefix

    if backend != "vxlan":
        for flag, value in (("--direct-routing", direct_routing or None), ("--vni", vni), ("--port", port)):
            if value is not None:
                raise invalid(flag, value, "only applies to --backend vxlan")
    be: dict[str, Any] = {"Type": backend}
    for name, value in (
        ("DirectRouting", direct_routing or None),
        ("VNI", vni),
        ("Port", port),
        ("MTU", mtu),
    ):
        if value is not None:
            be[name] = value
    raw: dict[str, Any] = {"Network": network, "Backend": be}
    for name, text in (("SubnetLen", subnet_len), ("SubnetMin", subnet_min), ("SubnetMax", subnet_max)):
        if text is not None:
            raw[name] = text
    config = validate_config(raw)
    key = config_key(normalize_prefix(prefix))
    store = _store(etcd)
    try:
        store.put(key, config.to_json())
    finally:
        store.close()
    typer.echo(config.to_json().decode())


@config_app.command("get")
def config_get(etcd: EtcdOpt = "127.0.0.1:2379", prefix: PrefixOpt = DEFAULT_PREFIX) -> None:
    """Print the network config JSON as stored (exit 3 if it is invalid, after printing it)."""
    from netplugin.config import parse_config
    from netplugin.subnet.keyspace import config_key, normalize_prefix

    key = config_key(normalize_prefix(prefix))
    store = _store(etcd)
    try:
        kv = store.get(key)
    finally:
        store.close()
    if kv is None:
        raise NotFound(
            f"no network config at {key}; write one with `shoal network config set --network CIDR`"
        )
    typer.echo(kv.value.decode(errors="replace"))
    parse_config(kv.value)


# ---- input helpers ------------------------------------------------------------------------------


def _store(etcd: str) -> EtcdStore:
    from controller.store.etcd import EtcdStore

    return EtcdStore(list(_endpoints(etcd)))


def _endpoints(text: str) -> tuple[str, ...]:
    endpoints = tuple(e.strip() for e in text.split(",") if e.strip())
    for endpoint in endpoints:
        host, sep, port = endpoint.removeprefix("http://").rpartition(":")
        if "://" in endpoint.removeprefix("http://") or not sep or not host or not port.isdigit():
            raise invalid("--etcd", text, "expected host:port or http://host:port, comma-separated")
        if not 0 < int(port) < 65536:
            raise invalid("--etcd", text, "the port must be between 1 and 65535")
    if not endpoints:
        raise invalid("--etcd", text, "expected host:port or http://host:port, comma-separated")
    return endpoints


def _ipv4(flag: str, text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise invalid(flag, text, "expected an IPv4 address like 10.0.0.5") from None


def _check_ifname(flag: str, name: str) -> None:
    if not 1 <= len(name) <= 15 or "/" in name or any(c.isspace() for c in name):
        raise invalid(flag, name, "interface names are 1-15 characters without '/' or spaces")
