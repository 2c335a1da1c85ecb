"""`shoal controller`: a control-plane daemon, in the foreground (run it under systemd or a supervisor).

Every controller serves the API; the one holding the etcd election key also orchestrates.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from deploy.cli.common import MetricsAddressOpt


def controller(
    etcd: Annotated[
        str,
        typer.Option("--etcd", metavar="HOST:PORT[,...]", help="etcd client endpoints (http:// accepted)."),
    ] = "127.0.0.1:2379",
    listen: Annotated[
        str,
        typer.Option(
            "--listen", metavar="HOST:PORT|unix:/PATH", help="Where the API listens (port 0 picks one)."
        ),
    ] = "127.0.0.1:4240",
    controller_id: Annotated[
        str | None,
        typer.Option(
            "--id", metavar="NAME", help="This controller's name in the election (default hostname-pid)."
        ),
    ] = None,
    leader_ttl: Annotated[
        float,
        typer.Option(
            "--leader-ttl", metavar="SECONDS", help="Leader lease TTL: failover takes about this long."
        ),
    ] = 2.0,
    node_grace: Annotated[
        float,
        typer.Option(
            "--node-grace", metavar="SECONDS", help="How long a node may be down before its tasks move."
        ),
    ] = 5.0,
    max_lost_nodes: Annotated[
        int,
        typer.Option("--max-lost-nodes", metavar="N", help="Lost nodes whose tasks may move at once."),
    ] = 1,
    history: Annotated[int, typer.Option("--history", metavar="N", help="Ended tasks kept per slot.")] = 5,
    metrics_address: MetricsAddressOpt = "",
) -> None:
    """Run a controller in the foreground until SIGTERM or Ctrl-C (then it resigns as leader).

    --host does not apply here.
    """
    from controller.config import ControllerConfig, default_id

    config = ControllerConfig(
        etcd_endpoints=tuple(e.strip() for e in etcd.split(",") if e.strip()),
        listen=listen,
        controller_id=default_id() if controller_id is None else controller_id,
        leader_ttl=leader_ttl,
        node_down_grace=node_grace,
        max_lost_nodes_per_pass=max_lost_nodes,
        task_history_limit=history,
        metrics_address=metrics_address,
    )
    # Imported here: the daemon pulls in grpc, etcd and the scheduler, which no client command needs.
    daemon = importlib.import_module("controller.daemon")
    daemon.run(config)
