"""`shoal`: the command line. Talks to the node's agent over its unix socket.

Exit codes: 0 success, 1 failure, 2 usage error, 3 invalid input, 4 not found,
124 timed out, 130 interrupted; anything else is a container's or exec's own code.
Errors are one line, "Error: <message>", on stderr; never a traceback
(set SHOAL_DEBUG=1 to see one for an unexpected failure).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.main import get_command

from deploy.cli import agent, container, controller, image, netplugin, tasklogs
from deploy.cli import events as events_cli
from deploy.cli import lab as lab_cli
from deploy.cli import node as node_cli
from deploy.cli import service as service_cli
from deploy.cli import stack as stack_cli
from deploy.cli import stats as stats_cli
from deploy.cli.common import DEFAULT_HOST, HOST_ENV, ShoalGroup, set_host

app = typer.Typer(
    name="shoal",
    cls=ShoalGroup,
    help="Shoal: run containers on this node through its agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click output: usage errors are short and scripts can parse them.
    rich_markup_mode=None,
)
app.add_typer(container.app, name="container")
app.add_typer(image.app, name="image")
app.command("agent")(agent.agent)
app.command("controller")(controller.controller)
app.command("netplugin")(netplugin.netplugin)
app.add_typer(netplugin.network_app, name="network")
app.add_typer(service_cli.app, name="service")
app.add_typer(node_cli.app, name="node")
app.add_typer(stack_cli.app, name="stack")
app.command("events")(events_cli.events)
app.command("stats")(stats_cli.stats)
app.command("logs")(tasklogs.task_logs)
app.command("exec", context_settings={"allow_interspersed_args": False})(tasklogs.task_exec)
app.add_typer(lab_cli.app, name="lab")


@app.callback()
def root(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host", "-H", envvar=HOST_ENV, metavar="unix:///PATH", help="The agent's socket: unix:///path."
        ),
    ] = DEFAULT_HOST,
) -> None:
    set_host(ctx, host)


def main() -> None:
    try:
        get_command(app).main(args=sys.argv[1:], prog_name="shoal")
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException as exc:  # the last line of defence: no traceback, ever
        typer.echo(f"Error: unexpected failure: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
