"""`shoal agent`: the node daemon, in the foreground (run it under systemd or a supervisor)."""

from __future__ import annotations

import importlib
import ipaddress
import socket
from pathlib import Path
from typing import Annotated

import typer

from agent.errors import invalid
from deploy.cli.common import MetricsAddressOpt, absolute


def agent(
    state_dir: Annotated[
        str, typer.Option("--state-dir", metavar="DIR", help="Images, containers, volumes and logs.")
    ] = "/var/lib/shoal",
    run_dir: Annotated[
        str, typer.Option("--run-dir", metavar="DIR", help="The API socket and runc state.")
    ] = "/run/shoal",
    runc: Annotated[str, typer.Option("--runc", metavar="PATH", help="runc binary.")] = "runc",
    default_registry: Annotated[
        str | None,
        typer.Option(
            "--default-registry", metavar="HOST[:PORT]", help="Registry for short names like busybox."
        ),
    ] = None,
    bind_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--bind-allow",
            metavar="PATH",
            help="Host path prefix bind mounts may use (repeatable; none by default).",
        ),
    ] = None,
    allow_privileged: Annotated[
        bool, typer.Option("--allow-privileged", help="Permit --privileged containers.")
    ] = False,
    allow_host_network: Annotated[
        bool, typer.Option("--allow-host-network", help="Permit --network host.")
    ] = False,
    allow_cap_add: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-cap-add",
            metavar="CAP",
            help="Capability --cap-add may add beyond docker's defaults (repeatable).",
        ),
    ] = None,
    log_max_size: Annotated[
        str, typer.Option("--log-max-size", metavar="BYTES", help="Rotate a container's log at this size.")
    ] = "10m",
    log_max_files: Annotated[
        int, typer.Option("--log-max-files", metavar="N", help="Log files kept per container.")
    ] = 5,
    cgroup_parent: Annotated[
        str, typer.Option("--cgroup-parent", metavar="NAME", help="cgroup under which containers are placed.")
    ] = "shoal",
    restart_delay: Annotated[
        float, typer.Option("--restart-delay", metavar="SECONDS", help="Delay before the first restart.")
    ] = 0.1,
    restart_factor: Annotated[
        float, typer.Option("--restart-factor", metavar="X", help="Delay multiplier per quick restart.")
    ] = 2.0,
    restart_max_delay: Annotated[
        float, typer.Option("--restart-max-delay", metavar="SECONDS", help="Largest restart delay.")
    ] = 60.0,
    restart_reset_after: Annotated[
        float,
        typer.Option("--restart-reset-after", metavar="SECONDS", help="A run this long resets the delay."),
    ] = 10.0,
    stop_timeout: Annotated[
        float,
        typer.Option(
            "--stop-timeout",
            metavar="SECONDS",
            help="Default wait between a container's stop signal and SIGKILL (cluster tasks use it too).",
        ),
    ] = 10.0,
    etcd: Annotated[
        str | None,
        typer.Option(
            "--etcd",
            metavar="URL",
            help="Join the cluster whose state is in this etcd (host:port or http://host:port; "
            "comma-separate several): register the node and run the tasks assigned to it.",
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            "--node-id", metavar="ID", help="This node's id in the cluster (default: the hostname)."
        ),
    ] = None,
    advertise_address: Annotated[
        str,
        typer.Option("--advertise-address", metavar="IP", help="Address other nodes reach this node at."),
    ] = "127.0.0.1",
    node_label: Annotated[
        list[str] | None,
        typer.Option(
            "--node-label",
            metavar="KEY=VALUE",
            help="Node label for placement constraints (repeatable); applied only when the node "
            "first registers, afterwards labels are managed in the cluster.",
        ),
    ] = None,
    advertise_cpus: Annotated[
        float | None,
        typer.Option(
            "--advertise-cpus", metavar="N", help="CPUs offered to the scheduler (default: the machine's)."
        ),
    ] = None,
    advertise_memory: Annotated[
        str | None,
        typer.Option(
            "--advertise-memory",
            metavar="SIZE",
            help="Memory offered to the scheduler, like 512m or 4g (default: the machine's).",
        ),
    ] = None,
    node_ttl: Annotated[
        float,
        typer.Option(
            "--node-ttl",
            metavar="SECONDS",
            help="The node counts as down this long after its agent stops renewing its lease.",
        ),
    ] = 3.0,
    network_env: Annotated[
        str | None,
        typer.Option(
            "--network-env",
            metavar="PATH",
            help="netplugin's subnet.env: containers then join the node's bridge network by default.",
        ),
    ] = None,
    network_netns: Annotated[
        str | None,
        typer.Option(
            "--network-netns",
            metavar="NAME",
            help="The network namespace netplugin treats as this node's host (the local lab).",
        ),
    ] = None,
    metrics_address: MetricsAddressOpt = "",
) -> None:
    """Run the node agent in the foreground until SIGTERM or Ctrl-C.

    Its API socket is RUN_DIR/agent.sock (--host does not apply here).
    """
    from agent.config import AgentConfig, BackoffSettings, machine_cpus, machine_memory
    from agent.models import parse_size, validate_name

    if log_max_files < 1:
        raise invalid("--log-max-files", log_max_files, "must be at least 1")
    if not restart_delay > 0:
        raise invalid("--restart-delay", restart_delay, "must be greater than zero")
    if restart_factor < 1:
        raise invalid("--restart-factor", restart_factor, "must be at least 1")
    if restart_max_delay < restart_delay:
        raise invalid("--restart-max-delay", restart_max_delay, "must be at least --restart-delay")
    if restart_reset_after < 0:
        raise invalid("--restart-reset-after", restart_reset_after, "must not be negative")
    validate_name("--cgroup-parent", cgroup_parent)
    if stop_timeout < 0:
        raise invalid("--stop-timeout", stop_timeout, "must not be negative")
    cluster_flags = {
        "--node-id": node_id,
        "--node-label": node_label,
        "--advertise-cpus": advertise_cpus,
        "--advertise-memory": advertise_memory,
    }
    if etcd is None:
        for flag, value in cluster_flags.items():
            if value:
                raise invalid(flag, value, "only applies with --etcd")
    else:
        _validate_etcd(etcd)
    if node_id is not None:
        validate_name("--node-id", node_id)
    _validate_address(advertise_address)
    if advertise_cpus is not None and not advertise_cpus > 0:
        raise invalid("--advertise-cpus", advertise_cpus, "must be greater than zero")
    memory = parse_size("--advertise-memory", advertise_memory) if advertise_memory else machine_memory()
    if not node_ttl >= 1:
        raise invalid("--node-ttl", node_ttl, "must be at least 1 second (etcd's smallest lease)")
    if network_env is not None and not Path(network_env).is_file():
        raise invalid("--network-env", network_env, "no such file (netplugin writes it once it has a subnet)")
    if network_netns is not None:
        if network_env is None:
            raise invalid("--network-netns", network_netns, "only applies with --network-env")
        if not Path("/run/netns", network_netns).exists():
            raise invalid("--network-netns", network_netns, "no such network namespace")
    if metrics_address:
        from agent.metrics_server import parse_address

        parse_address("--metrics-address", metrics_address)
    config = AgentConfig(
        state_dir=Path(absolute(state_dir)),
        run_dir=Path(absolute(run_dir)),
        runc=runc,
        cgroup_parent=cgroup_parent,
        default_registry=default_registry,
        bind_allow=tuple(Path(absolute(p)) for p in bind_allow or []),
        allow_privileged=allow_privileged,
        allow_host_namespaces=allow_host_network,
        allowed_cap_add=frozenset(c.upper().removeprefix("CAP_") for c in allow_cap_add or []),
        log_max_size=parse_size("--log-max-size", log_max_size),
        log_max_files=log_max_files,
        backoff=BackoffSettings(restart_delay, restart_factor, restart_max_delay, restart_reset_after),
        stop_timeout=stop_timeout,
        etcd=etcd,
        node_id=node_id or socket.gethostname(),
        advertise_address=advertise_address,
        node_labels=_parse_labels(node_label or []),
        advertise_cpus=advertise_cpus if advertise_cpus is not None else machine_cpus(),
        advertise_memory=memory,
        node_ttl=node_ttl,
        network_env=Path(absolute(network_env)) if network_env else None,
        network_netns=network_netns,
        metrics_address=metrics_address,
    )
    # Imported here: the daemon pulls in the whole runtime, which no client command needs.
    daemon = importlib.import_module("agent.daemon")
    daemon.run(config)


def _validate_etcd(text: str) -> None:
    for endpoint in text.split(","):
        host, sep, port = endpoint.removeprefix("http://").rpartition(":")
        if "://" in endpoint.removeprefix("http://") or not sep or not host or not port.isdigit():
            raise invalid("--etcd", text, "expected host:port or http://host:port, comma-separated")
        if not 0 < int(port) < 65536:
            raise invalid("--etcd", text, "the port must be between 1 and 65535")


def _validate_address(text: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise invalid("--advertise-address", text, "expected an IP address like 10.0.0.5") from None


def _parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or any(ch.isspace() for ch in key):
            raise invalid("--node-label", item, "expected KEY=VALUE with a key without spaces")
        labels[key] = value
    return labels
