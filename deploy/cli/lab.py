"""`shoal lab up|down|status|stop-node|start-node|partition|heal|kill-controller`: a multi-host
cluster on this machine, hosts being network namespaces (see deploy/lab)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deploy.cli.common import absolute

if TYPE_CHECKING:
    from deploy.lab.state import LabState

app = typer.Typer(
    help="A local multi-host cluster: hosts are network namespaces on an underlay bridge.",
    no_args_is_help=True,
)

StateDirOpt = Annotated[
    str,
    typer.Option(
        "--state-dir", envvar="SHOAL_LAB_DIR", metavar="DIR", help="Where the lab keeps its state and logs."
    ),
]
RunDirOpt = Annotated[
    str | None,
    typer.Option(
        "--run-dir",
        envvar="SHOAL_LAB_RUN_DIR",
        metavar="DIR",
        help="Sockets and runc state (default /run/shoal-lab).",
    ),
]


class Output(StrEnum):
    table = "table"
    json = "json"


def _info(text: str) -> None:
    typer.echo(text, err=True)


def _state(state_dir: str) -> LabState:
    from deploy.lab.lab import require

    return require(Path(absolute(state_dir)))


@app.command()
def up(
    nodes: Annotated[int, typer.Option("--nodes", metavar="N", help="How many hosts (agents).")] = 3,
    backend: Annotated[
        str, typer.Option("--backend", metavar="vxlan|host-gw", help="Overlay backend.")
    ] = "vxlan",
    controllers: Annotated[int, typer.Option("--controllers", metavar="N", help="How many controllers.")] = 1,
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix",
            envvar="SHOAL_LAB_PREFIX",
            metavar="NAME",
            help="Names of namespaces and cgroups start so.",
        ),
    ] = "shoal",
    state_dir: StateDirOpt = "/var/lib/shoal-lab",
    run_dir: RunDirOpt = None,
    with_prometheus: Annotated[
        bool,
        typer.Option(
            "--with-prometheus",
            help="Also run Prometheus (scraping every daemon each second, with Shoal's alert rules).",
        ),
    ] = False,
) -> None:
    """Build the lab and wait until every node is ready; then save the client context.

    Safe to run twice: a healthy lab is left alone, a broken one is removed and built again.
    --with-prometheus on a running lab adds its Prometheus.
    """
    from deploy.context import Context, save_context
    from deploy.lab import lab, procs

    state, created = lab.up(
        Path(absolute(state_dir)),
        Path(absolute(run_dir)) if run_dir else lab.DEFAULT_RUN_DIR,
        prefix,
        nodes=nodes,
        backend=backend,
        controllers=controllers,
        log=_info,
        with_prometheus=with_prometheus,
    )
    save_context(
        Context(
            controller=state.controllers[0].listen,
            etcd=state.etcd.endpoint,
            registry=state.registry.host,
            lab=state.state_dir,
        )
    )
    verb = "is up" if created else "was already up"
    typer.echo(f"lab {verb}: {len(state.nodes)} node(s), controller {state.controllers[0].listen}")
    if procs.alive(state.prometheus.proc):
        typer.echo(f"prometheus: {state.prometheus.url}")


@app.command()
def down(state_dir: StateDirOpt = "/var/lib/shoal-lab") -> None:
    """Remove everything the lab made: containers, agents, netplugins, controllers, Prometheus, the
    etcd relay, registry, etcd, namespaces and its state; fails naming anything that could not be
    removed."""
    from deploy.context import load_context, remove_context
    from deploy.lab import lab

    path = Path(absolute(state_dir))
    state = lab.down(path)
    if state is None:
        typer.echo(f"no lab in {path}")
        return
    ctx = load_context()
    if ctx is not None and ctx.lab == state.state_dir:
        remove_context()
    typer.echo("lab removed")


@app.command()
def status(
    output: Annotated[
        Output, typer.Option("-o", "--output", metavar="FORMAT", help="table or json.")
    ] = Output.table,
    state_dir: StateDirOpt = "/var/lib/shoal-lab",
) -> None:
    """What runs: each node, each controller, etcd, the registry, the etcd relay and Prometheus
    (-o json adds each node's etcd endpoint via the relay and every daemon's metrics URL)."""
    from deploy.cli.output import print_table
    from deploy.lab import lab

    info = lab.status(_state(state_dir))
    if output is Output.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return

    def pid(value: Any) -> str:
        return str(value) if value else "(stopped)"

    rows = [
        [n["name"], n["netns"], n["address"], pid(n["agent_pid"]), "ready" if n["ready"] else "down"]
        for n in info["nodes"]
    ]
    rows += [
        [c["id"], "", c["address"], pid(c["pid"]), "leader" if c["leader"] else ""]
        for c in info["controllers"]
    ]
    rows.append(["etcd", "", info["etcd"]["endpoints"][0], pid(info["etcd"]["pid"]), ""])
    rows.append(["registry", "", info["registry"]["address"], pid(info["registry"]["pid"]), ""])
    if info["relay"]["control"]:
        rows.append(["etcd-relay", "", info["relay"]["control"], pid(info["relay"]["pid"]), ""])
    if info["prometheus"]["url"]:
        rows.append(["prometheus", "", info["prometheus"]["url"], pid(info["prometheus"]["pid"]), ""])
    print_table(["NAME", "NETNS", "ADDRESS", "PID", "STATUS"], rows)


NodeArg = Annotated[str, typer.Argument(metavar="NODE", help="A node name, like node1.")]


@app.command("stop-node")
def stop_node(node: NodeArg, state_dir: StateDirOpt = "/var/lib/shoal-lab") -> None:
    """kill -9 the node's agent; its containers keep running."""
    from deploy.lab import lab

    lab.stop_node(_state(state_dir), node)
    typer.echo(f"{node}: agent killed")


@app.command("start-node")
def start_node(node: NodeArg, state_dir: StateDirOpt = "/var/lib/shoal-lab") -> None:
    """Start the node's agent again (it adopts the containers still running)."""
    from deploy.lab import lab

    lab.start_node(_state(state_dir), node)
    typer.echo(f"{node}: agent running")


@app.command()
def partition(node: NodeArg, state_dir: StateDirOpt = "/var/lib/shoal-lab") -> None:
    """Cut the node's underlay link: its data plane AND its control plane.

    Its containers can no longer reach other hosts' containers, and its agent and netplugin lose
    etcd (they reach it only through that link): within a few seconds the node is not ready, its
    subnet's routes leave the other hosts, and after the controller's node-down grace its tasks are
    placed on other nodes. Its containers keep running until it is healed.
    """
    from deploy.lab import lab

    lab.partition(_state(state_dir), node, cut=True)
    typer.echo(f"{node}: underlay link down (data and control plane)")


@app.command()
def heal(node: NodeArg, state_dir: StateDirOpt = "/var/lib/shoal-lab") -> None:
    """Restore the node's underlay link: it reaches etcd again, registers (ready again), retakes its
    subnet, and its agent stops the containers of tasks that moved away meanwhile."""
    from deploy.lab import lab

    lab.partition(_state(state_dir), node, cut=False)
    typer.echo(f"{node}: underlay link up")


@app.command("kill-controller")
def kill_controller(
    leader: Annotated[
        bool, typer.Option("--leader", help="Kill the leader (default: a follower if any).")
    ] = False,
    state_dir: StateDirOpt = "/var/lib/shoal-lab",
) -> None:
    """kill -9 one controller."""
    from deploy.lab import lab

    ctl = lab.kill_controller(_state(state_dir), leader)
    typer.echo(f"{ctl.id}: killed")
