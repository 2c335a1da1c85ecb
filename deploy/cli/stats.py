"""`shoal stats [SERVICE...]`: `docker stats` across the cluster.

The controller lists the nodes; each ready node's agent (NodeInfo.agent_api) lists its running
containers and reads their stats. CPU % needs two readings: the CPU time used between them over
the wall time between them (100% = one core busy), so even `--no-stream` takes two samples.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agent.errors import ShoalError
from deploy.cli.cluster import ControllerOpt, control, set_controller

if TYPE_CHECKING:
    from rich.text import Text

    from agent.client import AgentClient
    from agent.models import ContainerInfo, ContainerStats
    from controller.api.types import NodeInfo
    from controller.client import ControlClient

SERVICE_NAME_LABEL = "com.shoal.service.name"
SERVICE_ID_LABEL = "com.shoal.service.id"
TASK_LABEL = "com.shoal.task.id"
INTERVAL = 1.0
"""Seconds between the two readings of a CPU %, and between refreshes when streaming."""
HEADERS = ("CONTAINER ID", "NAME", "NODE", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "NET I/O")


class StatsFormat(StrEnum):
    table = "table"
    json = "json"


@dataclass(frozen=True)
class StatsRow:
    """One container's line; `-o json` prints these fields (a dataclass: importing pydantic
    would slow every CLI command's start)."""

    id: str
    name: str
    node: str
    service: str
    task: str
    cpu_percent: float
    memory_usage_bytes: int
    memory_limit_bytes: int | None
    memory_percent: float | None
    pids: int
    network_rx_bytes: int
    network_tx_bytes: int


@dataclass(frozen=True)
class Sample:
    node: str
    info: ContainerInfo
    stats: ContainerStats
    at: float
    """time.monotonic() when it was read."""


# ---- pure ------------------------------------------------------------------------------------


def cpu_percent(prev_cpu: float, prev_at: float, cpu: float, at: float) -> float:
    """CPU used between two readings over the wall time between them; 0 when there is no
    usable interval or the counter went back (the container restarted in a new cgroup)."""
    elapsed = at - prev_at
    used = cpu - prev_cpu
    if elapsed <= 0 or used < 0:
        return 0.0
    return 100.0 * used / elapsed


def build_rows(previous: Mapping[str, Sample], current: Iterable[Sample]) -> list[StatsRow]:
    """Rows for the current samples, sorted by node then name; CPU % against the previous
    reading of the same container (0 for a container seen for the first time)."""
    rows = []
    for s in current:
        before = previous.get(s.stats.id)
        cpu = (
            cpu_percent(before.stats.cpu_seconds, before.at, s.stats.cpu_seconds, s.at)
            if before is not None
            else 0.0
        )
        limit = s.stats.memory_limit_bytes
        labels = s.info.config.labels
        rows.append(
            StatsRow(
                id=s.stats.id,
                name=s.stats.name,
                node=s.node,
                service=labels.get(SERVICE_NAME_LABEL, ""),
                task=labels.get(TASK_LABEL, ""),
                cpu_percent=round(cpu, 2),
                memory_usage_bytes=s.stats.memory_working_set_bytes,
                memory_limit_bytes=limit,
                memory_percent=round(100.0 * s.stats.memory_working_set_bytes / limit, 2) if limit else None,
                pids=s.stats.pids,
                network_rx_bytes=s.stats.network_rx_bytes,
                network_tx_bytes=s.stats.network_tx_bytes,
            )
        )
    return sorted(rows, key=lambda r: (r.node, r.name))


def table_cells(row: StatsRow) -> list[str]:
    """Docker's columns: binary units for memory, decimal for network (as `docker stats`)."""
    from deploy.cli.output import human_bytes, human_size, short_id

    limit = row.memory_limit_bytes
    return [
        short_id(row.id),
        row.name,
        row.node,
        f"{row.cpu_percent:.2f}%",
        f"{human_bytes(row.memory_usage_bytes)} / {human_bytes(limit) if limit else 'unlimited'}",
        f"{row.memory_percent:.2f}%" if row.memory_percent is not None else "--",
        str(row.pids),
        f"{human_size(row.network_rx_bytes)} / {human_size(row.network_tx_bytes)}",
    ]


def wanted(info: ContainerInfo, services: frozenset[str] | None) -> bool:
    """No filter: every running container (tasks and plain ones); else those of the services
    (matched by name or id label)."""
    if services is None:
        return True
    labels = info.config.labels
    return labels.get(SERVICE_NAME_LABEL) in services or labels.get(SERVICE_ID_LABEL) in services


# ---- reading the nodes -----------------------------------------------------------------------


class Fleet:
    """One warm client per node's agent, reused across refreshes."""

    def __init__(self, control: ControlClient, services: frozenset[str] | None) -> None:
        self.control = control
        self.services = services
        self._agents: dict[tuple[str, str], AgentClient] = {}
        """By node id and agent API: a node whose agent moved gets a client for the new address."""
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        for agent in self._agents.values():
            agent.close()

    def _agent(self, node: NodeInfo) -> AgentClient:
        from agent.client import AgentClient
        from deploy.cli.common import socket_from_host

        with self._lock:
            key = (node.id, node.agent_api)
            agent = self._agents.get(key)
            if agent is None:
                agent = self._agents[key] = AgentClient(socket_from_host(node.agent_api))
            return agent

    def _read_node(self, node: NodeInfo) -> list[Sample]:
        try:
            agent = self._agent(node)
            samples = []
            for info in agent.container_list(all=False):
                if not wanted(info, self.services):
                    continue
                try:
                    stats = agent.container_stats(info.id)
                except ShoalError:
                    continue  # it stopped between the list and the read
                samples.append(Sample(node.id, info, stats, time.monotonic()))
            return samples
        except ShoalError as err:
            if node.id not in self._warned:  # once per node, not on every refresh
                self._warned.add(node.id)
                typer.echo(f"Warning: node {node.id}: {err}", err=True)
            return []

    def sample(self) -> list[Sample]:
        nodes = [n for n in self.control.list_nodes() if n.ready and n.agent_api]
        if not nodes:
            return []
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(8, len(nodes))) as pool:
            return [s for samples in pool.map(self._read_node, nodes) for s in samples]


# ---- output ----------------------------------------------------------------------------------


NAME_MIN = 20
"""NAME gives way on a narrow terminal (with an ellipsis) down to this; the figures stay whole."""


def live_view(rows: Sequence[StatsRow], terminal_width: int) -> Text:
    """The table for the live view, laid out at least as wide as its figures need; its lines do
    not wrap but are cropped at the terminal's edge (as `top` does), which keeps the repaint
    right (a wrapped line would leave stale lines behind)."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cells = [table_cells(r) for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(HEADERS)]
    fixed = sum(w for h, w in zip(HEADERS, widths, strict=True) if h != "NAME") + 3 * (len(HEADERS) - 1)
    layout = max(terminal_width, fixed + NAME_MIN)
    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    for header, width in zip(HEADERS, widths, strict=True):
        if header == "NAME":
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=layout - fixed)
        else:
            table.add_column(header, no_wrap=True, min_width=width)
    for row_cells in cells:
        table.add_row(*(Text(cell) for cell in row_cells))
    buffer = io.StringIO()
    Console(file=buffer, width=layout, force_terminal=True, color_system="standard").print(table)
    return Text.from_ansi(buffer.getvalue().rstrip("\n"), no_wrap=True, overflow="crop")


def as_json(rows: Sequence[StatsRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def _stream(fleet: Fleet, fmt: StatsFormat, first: list[Sample]) -> None:
    """Refresh every INTERVAL until Ctrl-C: a live table on a terminal; otherwise one snapshot
    after another (tables separated by a blank line, or one JSON array per line)."""
    previous = {s.stats.id: s for s in first}
    live_table = fmt is StatsFormat.table and sys.stdout.isatty()

    def emit_plain(rows: list[StatsRow]) -> None:
        from deploy.cli.output import print_table

        if fmt is StatsFormat.json:
            sys.stdout.write(json.dumps(as_json(rows)) + "\n")
        else:
            print_table(HEADERS, [table_cells(r) for r in rows])
            sys.stdout.write("\n")
        sys.stdout.flush()

    def loop(show: Callable[[list[StatsRow]], None]) -> None:
        nonlocal previous
        while True:
            time.sleep(INTERVAL)
            current = fleet.sample()
            show(build_rows(previous, current))
            previous = {s.stats.id: s for s in current}

    if not live_table:
        loop(emit_plain)
        return
    from rich.live import Live

    with Live(auto_refresh=False) as live:
        loop(lambda rows: live.update(live_view(rows, live.console.width), refresh=True))


def stats(
    ctx: typer.Context,
    services: Annotated[
        list[str] | None,
        typer.Argument(metavar="SERVICE", help="Only these services' tasks (default: every container)."),
    ] = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print one snapshot and exit instead of refreshing.")
    ] = False,
    output: Annotated[
        StatsFormat,
        typer.Option(
            "-o", "--output", metavar="FORMAT", help="table or json (streamed: one array per line)."
        ),
    ] = StatsFormat.table,
    controller: ControllerOpt = None,
) -> None:
    """Live resource usage of the running containers on every ready node, like `docker stats`.

    CPU % is the CPU time used over the last interval per wall second (100% = one core);
    MEM is the working set (usage minus inactive page cache); NET I/O is the container's eth0.
    """
    set_controller(ctx, controller)
    client = control(ctx)
    selected: frozenset[str] | None = None
    if services:
        found = [client.inspect_service(name) for name in services]  # NotFound names the typo
        selected = frozenset(s.spec.name for s in found) | frozenset(s.id for s in found)
    fleet = Fleet(client, selected)
    try:
        first = fleet.sample()
        if not no_stream:
            _stream(fleet, output, first)
            return
        time.sleep(INTERVAL)
        rows = build_rows({s.stats.id: s for s in first}, fleet.sample())
        if output is StatsFormat.json:
            sys.stdout.write(json.dumps(as_json(rows), indent=2) + "\n")
        else:
            from deploy.cli.output import print_table

            print_table(HEADERS, [table_cells(r) for r in rows])
    finally:
        fleet.close()
