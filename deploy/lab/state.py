"""state.json: everything a lab made, so `lab down` removes exactly that and later commands find it."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

STATE_FILE = "state.json"


class Proc(BaseModel):
    """A process the lab started: the pid with its /proc start ticks names it for good."""

    pid: int
    start_ticks: int
    argv: list[str]
    log: str


class EtcdState(BaseModel):
    endpoint: str = ""
    data_dir: str = ""
    proc: Proc | None = None


class RegistryState(BaseModel):
    host: str = ""
    proc: Proc | None = None


class RelayState(BaseModel):
    """The etcd relay (deploy/lab/relay.py): hosts' daemons reach etcd through their underlay link."""

    control: str = ""
    """The switch bridge's address where the relay's underlay listener sits (in the switch netns)."""
    proc: Proc | None = None


class PrometheusState(BaseModel):
    """`shoal lab up --with-prometheus`: Debian's prometheus scraping every lab daemon."""

    url: str = ""
    config: str = ""
    proc: Proc | None = None


class ControllerState(BaseModel):
    id: str
    listen: str
    proc: Proc | None = None
    metrics_url: str = ""


class NodeState(BaseModel):
    name: str
    index: int
    netns: str
    port: str
    """Its veth end in the switch netns (partition sets it down)."""
    address: str
    dir: str
    run_dir: str
    cgroup_parent: str
    netplugin: Proc | None = None
    agent: Proc | None = None
    agent_argv: list[str] = Field(default_factory=list)
    relay_port: int = 0
    """The loopback port of its etcd relay: its agent and netplugin use 127.0.0.1:<relay_port>."""
    metrics_url: str = ""
    """Its agent's /metrics."""
    netplugin_metrics_url: str = ""

    @property
    def etcd(self) -> str:
        """The etcd endpoint of its agent and netplugin: its relay port (through its underlay link)."""
        return f"127.0.0.1:{self.relay_port}"

    @property
    def socket(self) -> str:
        return str(Path(self.run_dir) / "agent.sock")


class LabState(BaseModel):
    prefix: str
    state_dir: str
    run_dir: str
    backend: str
    underlay: str
    network: str
    switch: str
    namespaces: list[str] = Field(default_factory=list)
    """Every netns the lab created, in creation order."""
    etcd: EtcdState = EtcdState()
    registry: RegistryState = RegistryState()
    relay: RelayState = RelayState()
    prometheus: PrometheusState = PrometheusState()
    controllers: list[ControllerState] = Field(default_factory=list)
    nodes: list[NodeState] = Field(default_factory=list)
    complete: bool = False

    def node(self, name: str) -> NodeState | None:
        return next((n for n in self.nodes if n.name == name), None)


def load_state(state_dir: Path) -> LabState | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    return LabState.model_validate_json(path.read_text())


def save_state(state: LabState) -> None:
    """Atomically: a crash never leaves half a state file (that would leak what it lists)."""
    path = Path(state.state_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(STATE_FILE + ".tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
