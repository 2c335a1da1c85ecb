"""`make demo` (deploy/demo.py: a 3-host lab and the Compose stack deploy/demo/compose.yml), then
`shoal lab partition`, which cuts a host's control plane as well as its data plane: its agent and
netplugin reach etcd only through the lab's relay over the host's underlay link
(deploy/lab/relay.py). So a partitioned node turns not ready, its task moves, the other hosts drop
its routes; healed, it is ready again and the service is back to exactly its replica count. One lab
serves both (a lab costs seconds on these machines)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.api.types import Task
from controller.client import ControlClient
from deploy.lab import procs
from deploy.lab.netns import names_in_use
from deploy.lab.state import LabState, load_state
from netplugin.env import read_subnet_env
from tests.support.agent import wait_for
from tests.support.labcli import SHOAL, LabCli, lab_cli


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabCli]:
    with lab_cli(tmp_path) as cli:
        yield cli


def shoal(lab: LabCli, *args: str) -> str:
    result = subprocess.run([SHOAL, *args], capture_output=True, text=True, env=lab.env, timeout=120)
    assert result.returncode == 0, f"shoal {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout


def ready(lab: LabCli) -> dict[str, bool]:
    return {n["id"]: n["ready"] for n in json.loads(shoal(lab, "node", "ls", "-o", "json"))}


def has_route(netns: str, subnet: str) -> bool:
    out = subprocess.run(["ip", "-n", netns, "route", "show", subnet], capture_output=True, text=True)
    return out.stdout.strip() != ""


def running(client: ControlClient) -> list[Task]:
    return [t for t in client.list_tasks("demo_web") if t.desired_state == "running" and t.state == "running"]


def demo(lab: LabCli, *args: str) -> str:
    env = lab.env | {"SHOAL_LAB_DIR": str(lab.state_dir), "SHOAL_LAB_RUN_DIR": str(lab.run_dir)}
    argv = [sys.executable, "-m", "deploy.demo", *args]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"deploy.demo {args} exited {result.returncode}: {result.stderr}"
    return result.stdout


def test_demo_stack_then_partition_and_heal(lab: LabCli) -> None:
    # The demo: web (3 replicas) and a client fetching every replica across hosts, whose WEB comes
    # from a second deploy once the web tasks run (only the client is updated).
    out = demo(lab)
    assert "Creating service demo_web" in out and "Updating service demo_client" in out
    assert "Updating service demo_web" not in out
    hellos = {line.strip() for line in out.splitlines() if line.strip().startswith("hello from")}
    assert len(hellos) == 3, out  # one page per replica, fetched from the client's host
    again = demo(lab)  # idempotent: the lab and the stack stay as they are
    assert "lab was already up" in again and "Creating" not in again and "Updating" not in again

    state = load_state(lab.state_dir)
    assert isinstance(state, LabState)
    n1, n2, n3 = state.nodes
    # Each host's daemons use their own relay port, never etcd directly.
    assert len({n.relay_port for n in state.nodes}) == 3 and state.etcd.endpoint not in (n1.etcd, n3.etcd)
    assert n3.netplugin is not None and ["--etcd", n3.etcd] == n3.netplugin.argv[2:4] == n3.agent_argv[2:4]
    info = lab.status()
    assert info["relay"]["pid"] and info["relay"]["control"] == "10.250.0.254"
    assert [n["etcd"] for n in info["nodes"]] == [n.etcd for n in state.nodes]
    # ... and that path crosses the host's underlay link: its etcd connections leave from eth0.
    conns = subprocess.run(
        ["ip", "netns", "exec", n3.netns, "ss", "-tnH", "state", "established"],
        capture_output=True,
        text=True,
    ).stdout
    assert f"{n3.address}:" in conns and "10.250.0.254:" in conns
    env3 = read_subnet_env(Path(n3.dir) / "subnet.env")
    assert env3 is not None
    subnet3 = str(env3.subnet)

    with ControlClient(state.controllers[0].listen) as client:
        (old,) = [t for t in running(client) if t.node_id == "node3"]
        assert {t.node_id for t in running(client)} == {"node1", "node2", "node3"}
        assert has_route(n1.netns, subnet3) and has_route(n2.netns, subnet3)

        assert "control plane" in lab("partition", "node3").stdout
        wait_for(
            lambda: ready(lab) == {"node1": True, "node2": True, "node3": False},
            timeout=15,
            what="node3 not ready",
        )

        def moved() -> bool:
            tasks = running(client)
            return len(tasks) == 3 and {t.node_id for t in tasks} <= {"node1", "node2"}

        wait_for(moved, timeout=30, what="node3's task running on node1/node2")
        (replacement,) = [t for t in running(client) if t.slot == old.slot]
        assert replacement.id != old.id and replacement.node_id in ("node1", "node2")
        wait_for(
            lambda: not has_route(n1.netns, subnet3) and not has_route(n2.netns, subnet3),
            timeout=20,
            what="node1 and node2 dropping node3's route",
        )

        lab("heal", "node3")
        wait_for(lambda: ready(lab)["node3"], timeout=20, what="node3 ready again")

        def converged() -> bool:
            tasks = {t.id: t for t in client.list_tasks("demo_web")}
            return len(running(client)) == 3 and tasks[old.id].state == "shutdown"

        wait_for(converged, timeout=30, what="exactly 3 running tasks, node3's old one shut down")
        # node3's netplugin took the same subnet again (its containers' addresses stay valid).
        wait_for(lambda: has_route(n1.netns, subnet3), timeout=20, what="node3's subnet back on node1")

    assert "lab removed" in demo(lab, "down")  # make demo-down
    assert names_in_use(lab.prefix) == [] and not procs.alive(state.relay.proc)
    assert load_state(lab.state_dir) is None
