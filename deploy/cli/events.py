"""`shoal events`: the cluster's changes as they happen (services, nodes, tasks), like `docker events`.

Streams until Ctrl-C (exit 130, quietly). `--since-revision` resumes after an earlier event's
revision (`-o json` prints it); a revision the store already compacted is an error saying so.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from deploy.cli.cluster import ControllerOpt, control, set_controller

if TYPE_CHECKING:
    from controller.api.views import ClusterEvent


def event_line(event: ClusterEvent) -> str:
    """`TIME TYPE ACTION ID (name=..., node=..., state=..., ...)`, docker's shape."""
    attrs = [
        f"{k}={v}"
        for k, v in (
            ("name", event.name),
            ("node", event.node_id),
            ("state", event.state),
            ("desired", event.desired_state),
            ("ready", "" if event.ready is None else str(event.ready).lower()),
            ("message", event.message),
        )
        if v
    ]
    line = f"{event.time} {event.type} {event.action} {event.id}"
    return f"{line} ({', '.join(attrs)})" if attrs else line


def events(
    ctx: typer.Context,
    since_revision: Annotated[
        int, typer.Option("--since-revision", metavar="REV", help="Start at this store revision (0: now).")
    ] = 0,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
    output: Annotated[
        str | None, typer.Option("-o", "--output", metavar="FORMAT", help="json: same as --json.")
    ] = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", metavar="TYPE", help="Only service, node or task events.")
    ] = None,
    controller: ControllerOpt = None,
) -> None:
    """Follow cluster events until Ctrl-C."""
    from agent.errors import invalid

    if output not in (None, "json"):
        raise invalid("--output", output, "expected json")
    for t in type_ or []:
        if t not in ("service", "node", "task"):
            raise invalid("--type", t, "expected service, node or task")
    set_controller(ctx, controller)
    as_json = json_lines or output == "json"
    try:
        with control(ctx).events(since_revision) as stream:
            for event in stream:
                if type_ and event.type not in type_:
                    continue
                text = json.dumps(event.model_dump(mode="json")) if as_json else event_line(event)
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
