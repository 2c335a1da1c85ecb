"""Controller settings, checked once at construction (errors name the `shoal controller` flag)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field

from agent.errors import invalid
from controller.reconcile import ReconcileSettings

_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")


def default_id() -> str:
    """hostname-pid: unique among controllers sharing a machine (tests, the local lab)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def check_host_port(flag: str, value: str, allow_zero: bool = False) -> None:
    match = _HOST_PORT.match(value)
    low = 0 if allow_zero else 1
    if match is None or not low <= int(match["port"]) <= 65535:
        raise invalid(flag, value, f"expected HOST:PORT with a port {low}-65535")


def check_listen(value: str) -> None:
    if value.startswith("unix:"):
        path = value.removeprefix("unix:").removeprefix("//")
        if not path.startswith("/"):
            raise invalid("--listen", value, "expected unix:/absolute/path or HOST:PORT")
        return
    check_host_port("--listen", value, allow_zero=True)


@dataclass(frozen=True)
class ControllerConfig:
    etcd_endpoints: tuple[str, ...] = ("127.0.0.1:2379",)
    """etcd client endpoints, host:port (http:// accepted); several fail over."""
    listen: str = "127.0.0.1:4240"
    """Where the gRPC API listens: HOST:PORT (port 0 picks one) or unix:/path."""
    controller_id: str = field(default_factory=default_id)
    """The name this controller campaigns under; LEADER holds it while it leads."""
    leader_ttl: float = 2.0
    """Seconds the leader's lease lives without a keepalive: a dead leader's successor is
    elected about this long after it stops (etcd's minimum is 1 s)."""
    node_down_grace: float = 5.0
    max_lost_nodes_per_pass: int = 1
    task_history_limit: int = 5
    metrics_address: str = ""
    """Where /metrics is served: HOST:PORT (port 0 picks one); empty: no metrics listener."""

    def __post_init__(self) -> None:
        if not self.etcd_endpoints:
            raise invalid("--etcd", "", "at least one endpoint is required")
        for endpoint in self.etcd_endpoints:
            check_host_port("--etcd", endpoint.removeprefix("http://"))
        check_listen(self.listen)
        if not self.controller_id or "/" in self.controller_id or not self.controller_id.isprintable():
            raise invalid("--id", self.controller_id, "must be non-empty printable text without '/'")
        if not self.leader_ttl >= 1:
            raise invalid("--leader-ttl", self.leader_ttl, "must be at least 1 second (etcd's minimum TTL)")
        if not self.node_down_grace >= 0:
            raise invalid("--node-grace", self.node_down_grace, "must be zero or more seconds")
        if self.max_lost_nodes_per_pass < 1:
            raise invalid("--max-lost-nodes", self.max_lost_nodes_per_pass, "must be at least 1")
        if self.task_history_limit < 0:
            raise invalid("--history", self.task_history_limit, "must be zero or more")
        if self.metrics_address:
            check_host_port("--metrics-address", self.metrics_address, allow_zero=True)

    def reconcile_settings(self) -> ReconcileSettings:
        return ReconcileSettings(
            node_down_grace=self.node_down_grace,
            max_lost_nodes_per_pass=self.max_lost_nodes_per_pass,
            task_history_limit=self.task_history_limit,
        )
