"""Reaching a task's container on whatever node runs it: `shoal logs TASK`, `shoal exec TASK -- CMD`
and `shoal service logs SERVICE [-f]`, through the node agent's API (NodeInfo.agent_api)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from agent.errors import NotFound, ShoalError, Unavailable, invalid
from deploy.cli.cluster import ControllerOpt, control, set_controller
from deploy.cli.common import parse_tail, socket_from_host, write

if TYPE_CHECKING:
    from agent.client import AgentClient
    from controller.api.types import Task
    from controller.client import ControlClient


def container_ref(task: Task) -> str:
    """The container's id once the agent reported it, else its name (`<service>.<slot|node>.<id>`)."""
    return task.container_id or f"{task.service_name}.{task.slot or task.node_id}.{task.id}"


def find_task(client: ControlClient, ref: str) -> Task:
    """By id or unique id prefix (as docker's)."""
    if not ref:
        raise invalid("TASK", ref, "a task id is required")
    matches = [t for t in client.list_tasks() if t.id == ref or t.id.startswith(ref)]
    exact = [t for t in matches if t.id == ref]
    if exact:
        return exact[0]
    if not matches:
        raise NotFound(f"task {ref} not found")
    if len(matches) > 1:
        raise invalid("TASK", ref, "the prefix matches several tasks; give more of the id")
    return matches[0]


def agent_for(client: ControlClient, task: Task) -> AgentClient:
    from agent.client import AgentClient

    if not task.node_id:
        raise Unavailable(f"task {task.id} is not on a node yet ({task.state}: {task.message or 'pending'})")
    node = client.inspect_node(task.node_id)
    if not node.agent_api:
        raise Unavailable(f"node {node.hostname} did not register its agent's API; is its agent older?")
    return AgentClient(socket_from_host(node.agent_api))


def task_logs(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(metavar="TASK", help="Task id (or unique prefix).")],
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep streaming.")] = False,
    tail: Annotated[str, typer.Option("--tail", metavar="N", help="Lines from the end, or all.")] = "all",
    controller: ControllerOpt = None,
) -> None:
    """Print a task's container output, wherever it runs."""
    set_controller(ctx, controller)
    client = control(ctx)
    found = find_task(client, task)
    lines = parse_tail(tail)
    with agent_for(client, found) as agent:
        for entry in agent.container_logs(container_ref(found), tail=lines, since=None, follow=follow):
            write(entry.stream, entry.line)


def task_exec(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(metavar="TASK", help="Task id (or unique prefix).")],
    command: Annotated[list[str], typer.Argument(metavar="COMMAND", help="Command and arguments.")],
    env: Annotated[list[str] | None, typer.Option("-e", "--env", metavar="KEY=VALUE", help="Env.")] = None,
    workdir: Annotated[str | None, typer.Option("-w", "--workdir", metavar="DIR", help="Directory.")] = None,
    controller: ControllerOpt = None,
) -> None:
    """Run a command in a task's container, wherever it runs; exits with the command's code."""
    set_controller(ctx, controller)
    client = control(ctx)
    found = find_task(client, task)
    with agent_for(client, found) as agent:
        for chunk in agent.container_exec(container_ref(found), command, env or [], workdir, None):
            if chunk.stream == "exit":
                raise typer.Exit(chunk.exit_code or 0)
            write(chunk.stream, chunk.data)


def service_logs(client: ControlClient, service: str, follow: bool, tail: str) -> None:
    """Every task's logs that still has a container, prefixed `name.slot.id@node |`, merged as
    they come (one reader thread per task)."""
    lines = parse_tail(tail)
    tasks = [t for t in client.list_tasks(service) if t.node_id and t.state not in ("new", "pending")]
    nodes = {n.id: n for n in client.list_nodes()}
    out: queue.Queue[tuple[str, str] | ShoalError | None] = queue.Queue(maxsize=1000)

    def read(task: Task) -> None:
        node = nodes.get(task.node_id)
        prefix = (
            f"{task.service_name}.{task.slot or task.node_id}.{task.id}@{node.hostname if node else '?'} | "
        )
        try:
            with agent_for(client, task) as agent:
                for entry in agent.container_logs(container_ref(task), tail=lines, since=None, follow=follow):
                    out.put((entry.stream, prefix + entry.line))
        except NotFound:
            pass  # its container is gone (removed with its task's history)
        except ShoalError as err:
            out.put(err)
        finally:
            out.put(None)

    for t in tasks:
        threading.Thread(target=read, args=(t,), daemon=True).start()
    first: ShoalError | None = None
    for item in _until_done(out, len(tasks)):
        if isinstance(item, ShoalError):
            first = first or item
        else:
            write(*item)
    if first is not None:
        raise first


def _until_done(
    out: queue.Queue[tuple[str, str] | ShoalError | None], readers: int
) -> Iterator[tuple[str, str] | ShoalError]:
    while readers:
        item = out.get()
        if item is None:
            readers -= 1
        else:
            yield item
