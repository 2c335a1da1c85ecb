"""`shoal node ...`: the cluster's nodes, through the controller's API (like `docker node`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from deploy.cli.cluster import (
    ControllerOpt,
    DataFormat,
    DataOutputOpt,
    Format,
    OutputOpt,
    QuietOpt,
    control,
    set_controller,
)
from deploy.cli.common import ShoalGroup, each

if TYPE_CHECKING:
    from controller.api.types import NodeInfo

app = typer.Typer(
    cls=ShoalGroup, help="Manage the cluster's nodes.", no_args_is_help=True, rich_markup_mode=None
)


@app.callback()
def _group(ctx: typer.Context, controller: ControllerOpt = None) -> None:
    set_controller(ctx, controller)


@app.command("ls")
def ls(ctx: typer.Context, quiet: QuietOpt = False, output: OutputOpt = Format.table) -> None:
    """List nodes."""
    from deploy.cli.output import print_structured

    nodes = sorted(control(ctx).list_nodes(), key=lambda n: (n.hostname, n.id))
    if quiet:
        for n in nodes:
            typer.echo(n.id)
    elif output is Format.table:
        nodes_table(nodes)
    else:
        print_structured(nodes, output.value)


@app.command()
def inspect(
    ctx: typer.Context,
    nodes: Annotated[list[str], typer.Argument(metavar="NODE...", help="Ids or hostnames.")],
    output: DataOutputOpt = DataFormat.json,
) -> None:
    """Show nodes in full (json or yaml), as a list."""
    from deploy.cli.output import print_structured

    client = control(ctx)
    found: list[NodeInfo] = []
    try:
        each(nodes, lambda ref: found.append(client.inspect_node(ref)))
    finally:
        print_structured(found, output.value)


@app.command()
def update(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(metavar="NODE", help="Id or hostname.")],
    availability: Annotated[
        str | None, typer.Option("--availability", metavar="STATE", help="active, pause or drain.")
    ] = None,
    label_add: Annotated[
        list[str] | None, typer.Option("--label-add", metavar="KEY=VALUE", help="Add or change a label.")
    ] = None,
    label_rm: Annotated[
        list[str] | None, typer.Option("--label-rm", metavar="KEY", help="Remove a label.")
    ] = None,
) -> None:
    """Change a node's availability or labels (the admin's: an agent never overwrites them)."""
    from agent.errors import invalid
    from deploy.values import parse_kv

    if availability is not None and availability not in ("active", "pause", "drain"):
        raise invalid("--availability", availability, "expected active, pause or drain")
    labels = dict(parse_kv("--label-add", item) for item in label_add or [])
    updated = control(ctx).update_node(node, availability, labels, label_rm or [])
    typer.echo(updated.id)


@app.command()
def rm(
    ctx: typer.Context,
    nodes: Annotated[list[str], typer.Argument(metavar="NODE...", help="Ids or hostnames.")],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Also remove a ready node (its tasks are replaced).")
    ] = False,
) -> None:
    """Remove nodes from the cluster; their tasks are placed elsewhere. A ready node is refused
    unless --force: drain it and stop its agent first."""
    client = control(ctx)

    def one(ref: str) -> None:
        client.remove_node(ref, force)
        typer.echo(ref)

    each(nodes, one)


def node_status(node: NodeInfo) -> str:
    return "Ready" if node.ready else "Down"


def nodes_table(nodes: list[NodeInfo]) -> None:
    from deploy.cli.output import human_bytes, print_table

    rows = [
        [
            n.id,
            n.hostname,
            node_status(n),
            n.availability.capitalize(),
            n.address,
            f"{n.nano_cpus / 1e9:g}",
            human_bytes(n.memory_bytes),
            ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())),
        ]
        for n in nodes
    ]
    print_table(["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "ADDRESS", "CPUS", "MEMORY", "LABELS"], rows)
