"""`shoal lab up|down|status` and the faults, over the state file.

up builds in order (namespaces, etcd, the etcd relay, registry, controllers, per host netplugin +
agent, then Prometheus if asked), saving the state after every step, so a failure at any point is
cleaned up by the same `down` a user runs.
"""

from __future__ import annotations

import shutil
import sys
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from agent.errors import Conflict, NotFound, ShoalError, Unavailable, invalid
from deploy.lab import cleanup, launch, netns, procs, prometheus
from deploy.lab.state import (
    ControllerState,
    LabState,
    NodeState,
    Proc,
    PrometheusState,
    load_state,
    save_state,
)

DEFAULT_STATE_DIR = Path("/var/lib/shoal-lab")
DEFAULT_RUN_DIR = Path("/run/shoal-lab")
DEFAULT_PREFIX = "shoal"
PREFIX_ENV = "SHOAL_LAB_PREFIX"
STATE_DIR_ENV = "SHOAL_LAB_DIR"
RUN_DIR_ENV = "SHOAL_LAB_RUN_DIR"
UNDERLAY = "10.250.0.0/24"
NETWORK = "10.244.0.0/16"
BACKENDS = ("vxlan", "host-gw")
NODE_TTL = 3
LEASE_TTL = 10
READY_TIMEOUT = 60.0


def validate(nodes: int, controllers: int, backend: str, prefix: str) -> None:
    if not 1 <= nodes <= 50:
        raise invalid("--nodes", nodes, "must be between 1 and 50")
    if not 1 <= controllers <= 5:
        raise invalid("--controllers", controllers, "must be between 1 and 5")
    if backend not in BACKENDS:
        raise invalid("--backend", backend, "must be vxlan or host-gw")
    if not prefix or len(prefix) > netns.MAX_PREFIX or not prefix.replace("-", "").isalnum():
        raise invalid("--prefix", prefix, f"must be 1-{netns.MAX_PREFIX} letters, digits or '-'")


def healthy(state: LabState) -> bool:
    return (
        state.complete
        and procs.alive(state.etcd.proc)
        and procs.alive(state.registry.proc)
        and procs.alive(state.relay.proc)
        and any(procs.alive(c.proc) for c in state.controllers)
        and all(procs.alive(n.agent) and procs.alive(n.netplugin) for n in state.nodes)
        and all(netns.exists(ns) for ns in state.namespaces)
    )


def up(
    state_dir: Path,
    run_dir: Path,
    prefix: str,
    nodes: int = 3,
    backend: str = "vxlan",
    controllers: int = 1,
    log: Any = print,
    with_prometheus: bool = False,
) -> tuple[LabState, bool]:
    """Build the lab; returns (state, created). A healthy lab already there is left as it is, but
    gains its Prometheus if asked for one it does not run."""
    validate(nodes, controllers, backend, prefix)
    old = load_state(state_dir)
    if old is not None:
        if healthy(old):
            if with_prometheus and not procs.alive(old.prometheus.proc):
                add_prometheus(old, log)
            return old, False
        log("a previous lab is incomplete or broken: removing it first")
        down(state_dir)
    for name in (f"{prefix}-sw", *(f"{prefix}-n{i}" for i in range(1, nodes + 1))):
        if netns.exists(name):
            raise Conflict(
                f"netns {name} exists but is not in {state_dir}: another lab uses prefix {prefix!r}"
            )
    state = LabState(
        prefix=prefix,
        state_dir=str(state_dir),
        run_dir=str(run_dir),
        backend=backend,
        underlay=UNDERLAY,
        network=NETWORK,
        switch=f"{prefix}-sw",
    )
    try:
        _build(state, nodes, controllers, log, with_prometheus)
    except BaseException:
        log("lab up failed: removing what it made")
        try:
            down(state_dir)
        except ShoalError as err:
            log(f"cleanup: {err}")
        raise
    return state, True


def _build(state: LabState, nodes: int, controllers: int, log: Any, with_prometheus: bool) -> None:
    state_dir, run_dir = Path(state.state_dir), Path(state.run_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_state(state)

    log(f"network: switch {state.switch}, {nodes} host(s) on {state.underlay}")
    netns.add(state.switch)
    state.namespaces.append(state.switch)
    save_state(state)
    netns.make_switch(state.switch)
    underlay = IPv4Network(state.underlay)
    state.relay.control = str(netns.add_control_address(state.switch, underlay))
    for i in range(1, nodes + 1):
        name = f"{state.prefix}-n{i}"
        netns.add(name)
        state.namespaces.append(name)
        address = netns.host_address(underlay, i)
        node = NodeState(
            name=f"node{i}",
            index=i,
            netns=name,
            port=f"p{i}",
            address=str(address),
            dir=str(state_dir / "nodes" / f"node{i}"),
            run_dir=str(run_dir / f"node{i}"),
            cgroup_parent=f"{state.prefix}-node{i}",
        )
        state.nodes.append(node)
        save_state(state)
        netns.plug_host(state.switch, name, node.port, address, underlay)

    log("etcd")
    client_port, peer_port = launch.free_ports(2)
    state.etcd.endpoint = f"127.0.0.1:{client_port}"
    state.etcd.data_dir = str(state_dir / "etcd" / "data")
    argv = launch.etcd_argv(f"{state.prefix}-etcd", Path(state.etcd.data_dir), client_port, peer_port)
    state.etcd.proc = procs.spawn(argv, state_dir / "etcd" / "etcd.log", env=launch.etcd_env())
    save_state(state)
    launch.wait_etcd(state.etcd.proc, state.etcd.endpoint)
    launch.network_config(state.etcd.endpoint, state.network, state.backend)
    _start_relay(state)

    log("registry (docker-registry) seeded with busybox")
    reg_dir = state_dir / "registry"
    reg_dir.mkdir(parents=True, exist_ok=True)
    state.registry.host = f"127.0.0.1:{launch.free_ports(1)[0]}"
    config = launch.registry_config(reg_dir, state.registry.host)
    state.registry.proc = procs.spawn([launch.REGISTRY_BIN, "serve", str(config)], reg_dir / "registry.log")
    save_state(state)
    launch.wait_registry(state.registry.proc, state.registry.host)
    launch.seed_busybox(state.registry.host, reg_dir / "seed")
    shutil.rmtree(reg_dir / "seed", ignore_errors=True)

    for i in range(1, controllers + 1):
        ctl = ControllerState(id=f"ctl{i}", listen=f"127.0.0.1:{launch.free_ports(1)[0]}")
        log(f"controller {ctl.id} on {ctl.listen}")
        metrics, ctl.metrics_url = launch.metrics_address()
        argv = [
            launch.SHOAL,
            "controller",
            "--etcd",
            state.etcd.endpoint,
            "--listen",
            ctl.listen,
            "--id",
            ctl.id,
            "--metrics-address",
            metrics,
        ]
        ctl.proc = procs.spawn(argv, state_dir / "controllers" / f"{ctl.id}.log")
        state.controllers.append(ctl)
        save_state(state)
        launch.wait_controller(ctl.proc, ctl.listen)

    plugins = []
    for node in state.nodes:
        log(f"{node.name}: netplugin and agent in {node.netns} ({node.address})")
        plugins.append((node, _start_netplugin(state, node)))
    for node, plugin in plugins:
        launch.wait_file(plugin, Path(node.dir) / "subnet.env", f"netplugin of {node.name}")
        metrics, node.metrics_url = launch.metrics_address()
        node.agent_argv = [*_agent_argv(state, node), "--metrics-address", metrics]
        start_agent(state, node)
    wait_ready(state)
    if with_prometheus:
        log("prometheus")
        prometheus.start(state)
    state.complete = True
    save_state(state)


def add_prometheus(state: LabState, log: Any) -> None:
    """Start Prometheus for a running lab; if that fails, it is removed again and the lab stays as
    it was."""
    log("prometheus")
    try:
        prometheus.start(state)
    except BaseException:
        prometheus.stop(state)
        state.prometheus = PrometheusState()
        save_state(state)
        raise


def _start_relay(state: LabState) -> None:
    """One relay for the lab: each host's daemons reach etcd through their own underlay link, so a
    partition cuts the host's control plane as well as its data plane (deploy/lab/relay.py)."""
    from deploy.lab.relay import NodeRoute, RelayConfig, relay_argv

    log_path = Path(state.state_dir) / "relay" / "relay.log"
    ports = launch.free_ports(len(state.nodes))
    for node, port in zip(state.nodes, ports, strict=True):
        node.relay_port = port
    host, _, etcd_port = state.etcd.endpoint.rpartition(":")
    config = RelayConfig(
        etcd=(host, int(etcd_port)),
        switch=state.switch,
        control=state.relay.control,
        nodes=tuple(NodeRoute(n.netns, n.relay_port) for n in state.nodes),
    )
    state.relay.proc = procs.spawn(relay_argv(sys.executable, config), log_path)
    save_state(state)
    launch.wait_relay(state.relay.proc, ports)


def _start_netplugin(state: LabState, node: NodeState) -> Proc:
    base = Path(node.dir)
    argv = [launch.SHOAL, "netplugin", "--etcd", node.etcd, "--public-ip", node.address]
    argv += ["--netns", node.netns, "--lease-ttl", str(LEASE_TTL), "--state-dir", str(base / "net")]
    argv += [
        "--subnet-file",
        str(base / "subnet.env"),
        "--ipam-dir",
        str(base / "state" / "network" / "ipam"),
    ]
    metrics, node.netplugin_metrics_url = launch.metrics_address()
    argv += ["--metrics-address", metrics]
    node.netplugin = procs.spawn(argv, base / "netplugin.log")
    save_state(state)
    return node.netplugin


def _agent_argv(state: LabState, node: NodeState) -> list[str]:
    base = Path(node.dir)
    return [
        launch.SHOAL,
        "agent",
        "--etcd",
        node.etcd,
        "--node-id",
        node.name,
        "--advertise-address",
        node.address,
        "--node-ttl",
        str(NODE_TTL),
        "--network-env",
        str(base / "subnet.env"),
        "--network-netns",
        node.netns,
        "--default-registry",
        state.registry.host,
        "--state-dir",
        str(base / "state"),
        "--run-dir",
        node.run_dir,
        "--cgroup-parent",
        node.cgroup_parent,
        "--stop-timeout",
        "2",
    ]


def start_agent(state: LabState, node: NodeState) -> None:
    node.agent = procs.spawn(node.agent_argv, Path(node.dir) / "agent.log")
    save_state(state)
    launch.wait_agent(node.agent, Path(node.socket), f"agent of {node.name}")


def _client(state: LabState) -> Any:
    """A client of the first live controller."""
    from controller.client import ControlClient

    for ctl in state.controllers:
        if procs.alive(ctl.proc):
            return ControlClient(ctl.listen, timeout=2)
    raise Unavailable("no controller of the lab is running")


def node_readiness(state: LabState) -> dict[str, bool]:
    with _client(state) as client:
        return {n.id: n.ready for n in client.list_nodes()}


def wait_ready(state: LabState, names: list[str] | None = None, ready: bool = True) -> None:
    """Until every named node (default: all) is ready (or, ready=False, not ready)."""
    wanted = names or [n.name for n in state.nodes]
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            seen = node_readiness(state)
        except ShoalError:
            seen = {}
        if all(seen.get(name, False) == ready for name in wanted):
            return
        for node in state.nodes:
            if node.name in wanted and node.agent is not None and not procs.alive(node.agent):
                raise Unavailable(
                    f"agent of {node.name} exited; its log ends: {procs.log_tail(node.agent, 5)}"
                )
        if time.monotonic() > deadline:
            raise Unavailable(
                f"nodes {', '.join(wanted)} not {'ready' if ready else 'down'} after {READY_TIMEOUT:g}s"
            )
        time.sleep(0.1)


# ---- down ---------------------------------------------------------------------------------


def down(state_dir: Path) -> LabState | None:
    """Remove everything the lab's state lists, then the state itself; None if there was no lab.
    Raises (keeping the state file) if anything could not be removed, so it can be run again."""
    state = load_state(state_dir)
    if state is None:
        return None
    prometheus.stop(state)
    for node in state.nodes:
        procs.kill9(node.agent)  # the containers are removed below, from the agent's own records
        cleanup.remove_agent_leftovers(Path(node.dir) / "state", Path(node.run_dir), node.cgroup_parent)
    for node in state.nodes:
        procs.stop(node.netplugin)
    procs.stop(state.relay.proc)  # before the namespaces go: its sockets live in them
    for ctl in state.controllers:
        procs.stop(ctl.proc)
    procs.stop(state.registry.proc)
    procs.stop(state.etcd.proc)
    for name in reversed(state.namespaces):
        netns.delete(name)
    left = leftovers(state)
    if left:
        raise Unavailable(f"lab down left {len(left)} thing(s) behind: {'; '.join(left)}")
    shutil.rmtree(state.run_dir, ignore_errors=True)
    shutil.rmtree(state_dir, ignore_errors=True)
    return state


def leftovers(state: LabState) -> list[str]:
    """What of the lab still exists: processes (by recorded pid), namespaces, mounts, cgroups."""
    left: list[str] = []
    everything = [("etcd", state.etcd.proc), ("registry", state.registry.proc), ("relay", state.relay.proc)]
    everything += [(c.id, c.proc) for c in state.controllers]
    everything.append(("prometheus", state.prometheus.proc))
    for node in state.nodes:
        everything += [(f"{node.name} agent", node.agent), (f"{node.name} netplugin", node.netplugin)]
    left += [f"process {what} (pid {p.pid})" for what, p in everything if p is not None and procs.alive(p)]
    left += [f"netns {name}" for name in state.namespaces if netns.exists(name)]
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    roots = [state.state_dir, state.run_dir]
    left += [f"mount {m.split()[1]}" for m in mounts if any(m.split()[1].startswith(r + "/") for r in roots)]
    for node in state.nodes:
        left += [f"cgroup {c}" for c in cleanup.leftover_cgroups(node.cgroup_parent)]
    return left


# ---- status and faults --------------------------------------------------------------------


def require(state_dir: Path) -> LabState:
    state = load_state(state_dir)
    if state is None:
        raise NotFound(f"no lab in {state_dir} (run `shoal lab up`)")
    return state


def leader(state: LabState) -> str | None:
    from controller.api import keyspace
    from controller.store.etcd import EtcdStore

    if not procs.alive(state.etcd.proc):
        return None
    store = EtcdStore([state.etcd.endpoint], timeout=2)
    try:
        kv = store.get(keyspace.LEADER)
        return kv.value.decode() if kv is not None else None
    except ShoalError:
        return None
    finally:
        store.close()


def status(state: LabState) -> dict[str, Any]:
    """The shape `shoal lab status -o json` prints (documented in the README)."""
    lead = leader(state)
    try:
        ready = node_readiness(state)
    except ShoalError:
        ready = {}

    def pid(p: Proc | None) -> int | None:
        return p.pid if p is not None and procs.alive(p) else None

    return {
        "prefix": state.prefix,
        "state_dir": state.state_dir,
        "backend": state.backend,
        "complete": state.complete,
        "nodes": [
            {
                "name": n.name,
                "netns": n.netns,
                "address": n.address,
                "agent_pid": pid(n.agent),
                "netplugin_pid": pid(n.netplugin),
                "agent_api": f"unix://{n.socket}",
                "etcd": n.etcd,
                "ready": ready.get(n.name, False),
                "metrics_url": n.metrics_url,
                "netplugin_metrics_url": n.netplugin_metrics_url,
            }
            for n in state.nodes
        ],
        "controllers": [
            {
                "id": c.id,
                "address": c.listen,
                "pid": pid(c.proc),
                "metrics_url": c.metrics_url,
                "leader": c.id == lead and pid(c.proc) is not None,
            }
            for c in state.controllers
        ],
        "etcd": {"endpoints": [state.etcd.endpoint], "pid": pid(state.etcd.proc)},
        "registry": {"address": state.registry.host, "pid": pid(state.registry.proc)},
        "prometheus": {"url": state.prometheus.url or None, "pid": pid(state.prometheus.proc)},
        "relay": {"control": state.relay.control, "pid": pid(state.relay.proc)},
    }


def _node(state: LabState, name: str) -> NodeState:
    node = state.node(name)
    if node is None:
        raise NotFound(f"no node {name!r} in the lab (nodes: {', '.join(n.name for n in state.nodes)})")
    return node


def stop_node(state: LabState, name: str) -> NodeState:
    """kill -9 the node's agent; its containers keep running (their monitors do not need it)."""
    node = _node(state, name)
    procs.kill9(node.agent)
    return node


def start_node(state: LabState, name: str) -> NodeState:
    node = _node(state, name)
    if not procs.alive(node.agent):
        start_agent(state, node)
    return node


def partition(state: LabState, name: str, cut: bool) -> NodeState:
    """Set the node's underlay link down (or up again) at its switch port. That cuts its data plane
    (overlay traffic to other hosts) AND its control plane: its agent and netplugin reach etcd only
    through that link (the relay), so its node lease and subnet lease run out, the node turns not
    ready and, after the controller's node-down grace, its tasks are placed elsewhere. Once healed,
    the relay's new connections get through, the agent registers again (a fresh lease) and stops
    the containers whose tasks moved away."""
    node = _node(state, name)
    netns.set_port(state.switch, node.port, up=not cut)
    return node


def kill_controller(state: LabState, only_leader: bool) -> ControllerState:
    """kill -9 the leader (--leader) or else a follower if there is one, else the only controller."""
    running = [c for c in state.controllers if procs.alive(c.proc)]
    if not running:
        raise NotFound("no controller of the lab is running")
    lead = leader(state)
    if only_leader:
        victims = [c for c in running if c.id == lead]
        if not victims:
            raise Unavailable("no controller leads right now; try again in a moment")
    else:
        victims = [c for c in running if c.id != lead] or running
    procs.kill9(victims[0].proc)
    return victims[0]
