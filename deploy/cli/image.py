"""`shoal image ...`: pull, push, import, save, load, tag, ls, rm.

Paths are made absolute here: the agent runs on this machine but not in our directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from agent.errors import invalid
from deploy.cli.common import absolute, client, each
from deploy.cli.container import Output, OutputOpt

if TYPE_CHECKING:
    from agent.models import ImageInfo

app = typer.Typer(help="Manage images.", no_args_is_help=True)


def _repository(ref: str) -> str:
    """`host:5000/a/b:tag` or `a/b@sha256:..` -> `host:5000/a/b`."""
    name = ref.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


@app.command("pull")
def pull(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="REF", help="Image reference.")]
) -> None:
    """Download an image from its registry; prints the image id."""
    typer.echo(client(ctx).image_pull(ref).id)


@app.command("push")
def push(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(metavar="REF", help="Image reference.")]
) -> None:
    """Upload an image to its registry; prints REF: digest: DIGEST (as docker)."""
    info = client(ctx).image_push(ref)
    repo = _repository(ref)
    digests = [d for d in info.repo_digests if _repository(d).endswith(repo)] or info.repo_digests
    digest = digests[0].split("@", 1)[1] if digests and "@" in digests[0] else info.id
    typer.echo(f"{ref}: digest: {digest} size: {info.size}")


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(metavar="SOURCE", help="A root filesystem: a directory or a (gzip) tar.")
    ],
    ref: Annotated[str | None, typer.Argument(metavar="REF", help="Name for the image.")] = None,
) -> None:
    """Make a single-layer image from a filesystem; prints the image id."""
    if source == "-":
        raise invalid("SOURCE", source, "reading from stdin is not supported: give a file path")
    typer.echo(client(ctx).image_import(absolute(source), ref).id)


@app.command("save")
def save(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(metavar="REF", help="Images to save.")],
    output: Annotated[str, typer.Option("-o", "--output", metavar="FILE", help="Tar archive to write.")],
) -> None:
    """Write images to a tar archive (docker save format)."""
    client(ctx).image_save(refs, absolute(output))


@app.command("load")
def load(
    ctx: typer.Context,
    input: Annotated[str, typer.Option("-i", "--input", metavar="FILE", help="Tar archive to read.")],
) -> None:
    """Load images from a tar archive."""
    for info in client(ctx).image_load(absolute(input)):
        if info.repo_tags:
            for tag in info.repo_tags:
                typer.echo(f"Loaded image: {tag}")
        else:
            typer.echo(f"Loaded image ID: {info.id}")


@app.command("tag")
def tag(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Existing image.")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="New name.")],
) -> None:
    """Give an image another name."""
    client(ctx).image_tag(source, target)


def _dangling_filter(filters: list[str] | None) -> bool | None:
    wanted: bool | None = None
    for item in filters or []:
        key, _, value = item.partition("=")
        if key != "dangling" or value.lower() not in ("true", "false", "1", "0"):
            raise invalid("--filter", item, "the supported filter is dangling=true|false")
        wanted = value.lower() in ("true", "1")
    return wanted


@app.command("ls")
def ls(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only ids.")] = False,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Full ids.")] = False,
    filter: Annotated[
        list[str] | None, typer.Option("-f", "--filter", metavar="FILTER", help="dangling=true|false")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """List images."""
    from deploy.cli.output import images_table, print_json, short_id

    dangling = _dangling_filter(filter)
    images: list[ImageInfo] = [
        i for i in client(ctx).image_list() if dangling is None or i.dangling == dangling
    ]
    if quiet:
        seen: set[str] = set()
        for image in sorted(images, key=lambda i: i.created, reverse=True):
            if image.id not in seen:
                seen.add(image.id)
                typer.echo(image.id if no_trunc else short_id(image.id))
    elif output is Output.json:
        print_json(images)
    else:
        images_table(images, no_trunc)


@app.command("rm")
def rm(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(metavar="REF", help="Images (names or ids).")],
    force: Annotated[
        bool, typer.Option("-f", "--force", help="Remove even if several names point at it.")
    ] = False,
) -> None:
    """Remove images: prints Untagged:/Deleted: lines."""
    agent = client(ctx)

    def one(ref: str) -> None:
        for line in agent.image_remove(ref, force):
            typer.echo(line)

    each(refs, one)
