"""`shoal lab`, driven as a user would: up a 2-node lab, run a service across both hosts, inject
every fault, and check `lab down` leaves no namespace, process, mount, runc state or cgroup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.client import AgentClient
from controller.api.types import ServiceSpec
from controller.client import ControlClient
from deploy.lab import procs
from deploy.lab.cleanup import leftover_cgroups
from deploy.lab.netns import names_in_use
from deploy.lab.state import Proc, load_state
from tests.support.agent import wait_for
from tests.support.labcli import LabCli, lab_cli

SERVE = "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabCli]:
    with lab_cli(tmp_path) as cli:
        yield cli


def fetch(netns: str, url: str) -> str:
    """GET from inside a lab host's namespace (the host's view of the overlay)."""
    code = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=2).read().decode())"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", code, url]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=20)
    return result.stdout.strip() if result.returncode == 0 else ""


def test_lab_up_faults_and_exact_down(lab: LabCli) -> None:
    assert "lab is up" in lab("up", "--nodes", "2", "--controllers", "2").stdout
    assert "already up" in lab("up", "--nodes", "2", "--controllers", "2").stdout  # twice is safe

    info = lab.status()
    nodes = {n["name"]: n for n in info["nodes"]}
    assert sorted(nodes) == ["node1", "node2"]
    assert nodes["node1"]["netns"] == f"{lab.prefix}-n1" and nodes["node2"]["address"] == "10.250.0.2"
    assert all(n["agent_pid"] and n["ready"] for n in nodes.values())
    assert all(n["metrics_url"].startswith("http://127.0.0.1:") for n in nodes.values())
    assert [c["leader"] for c in info["controllers"]].count(True) == 1
    assert all(c["pid"] for c in info["controllers"])
    assert info["etcd"]["pid"] and info["etcd"]["endpoints"][0].startswith("127.0.0.1:")
    context = json.loads(Path(lab.env["SHOAL_CONTEXT"]).read_text())
    assert context["controller"] == info["controllers"][0]["address"]
    assert context["lab"] == str(lab.state_dir)

    # A 2-replica httpd spread over both hosts, reached across hosts through the overlay.
    client = ControlClient(context["controller"])
    command = ["sh", "-c", SERVE]
    client.create_service(ServiceSpec(name="web", image="busybox", replicas=2, command=command))

    def running() -> bool:
        tasks = client.list_tasks("web")
        return len(tasks) == 2 and all(t.state == "running" for t in tasks)

    wait_for(running, timeout=30, what="both web tasks running")
    on_node2 = next(t for t in client.list_tasks("web") if t.node_id == "node2")
    assert {t.node_id for t in client.list_tasks("web")} == {"node1", "node2"}
    agent2 = AgentClient(Path(nodes["node2"]["agent_api"].removeprefix("unix://")))
    ip = agent2.container_inspect(on_node2.container_id).ip_address
    agent2.close()
    url = f"http://{ip}/"
    wait_for(lambda: fetch(nodes["node1"]["netns"], url).startswith("hello from"), timeout=20, what=url)

    # stop-node: the agent dies, the node goes down, its container keeps serving; start-node: back.
    lab("stop-node", "node2")
    assert next(n for n in lab.status()["nodes"] if n["name"] == "node2")["agent_pid"] is None
    wait_for(lambda: not lab.ready("node2"), timeout=15, what="node2 down")
    assert fetch(nodes["node1"]["netns"], url).startswith("hello from")
    lab("start-node", "node2")
    wait_for(lambda: lab.ready("node2"), timeout=15, what="node2 ready")

    # partition cuts node2's underlay link (cross-host traffic stops); heal restores it.
    lab("partition", "node2")
    assert fetch(nodes["node1"]["netns"], url) == ""
    lab("heal", "node2")
    wait_for(lambda: fetch(nodes["node1"]["netns"], url).startswith("hello from"), timeout=20, what="healed")

    # kill-controller --leader: the other controller takes over.
    killed = lab("kill-controller", "--leader").stdout.split(":")[0]
    wait_for(
        lambda: any(c["leader"] and c["id"] != killed for c in lab.status()["controllers"]),
        timeout=15,
        what="a new leader",
    )
    client.close()

    # down: nothing with the prefix or a recorded pid remains.
    state = load_state(lab.state_dir)
    assert state is not None
    shims = []
    for node in state.nodes:
        for record in Path(node.dir, "state", "containers").glob("*/container.json"):
            data = json.loads(record.read_text())
            shims.append((data["shim_pid"], data["shim_start_ticks"]))
    assert len(shims) == 2
    assert lab("down").stdout.strip() == "lab removed"
    assert names_in_use(lab.prefix) == []
    recorded = [state.etcd.proc, state.registry.proc, *(c.proc for c in state.controllers)]
    recorded += [p for n in state.nodes for p in (n.agent, n.netplugin)]
    # alive(): the pid still names the process it recorded, and it is not a zombie awaiting init.
    assert not [p for p in recorded if procs.alive(p)]
    assert not [pid for pid, ticks in shims if procs.alive(Proc(pid=pid, start_ticks=ticks, argv=[], log=""))]
    mounts = Path("/proc/self/mounts").read_text()
    assert str(lab.state_dir) not in mounts and str(lab.run_dir) not in mounts
    assert not lab.run_dir.exists()  # runc state lived there
    assert not lab.state_dir.exists()
    assert not [c for n in state.nodes for c in leftover_cgroups(n.cgroup_parent)]
    assert not Path(lab.env["SHOAL_CONTEXT"]).exists()
    assert lab("down").stdout.strip().startswith("no lab in")


def test_a_half_built_lab_is_removed_and_bad_flags_are_refused(lab: LabCli) -> None:
    # A run dir too long for a unix socket path: everything up to the first agent starts, then fails.
    lab.run_dir = lab.run_dir / ("x" * 100)
    result = lab("up", "--nodes", "2", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("Error: agent of node1")
    assert names_in_use(lab.prefix) == [] and not lab.state_dir.exists()

    bad = lab("up", "--nodes", "0", check=False)
    assert bad.returncode == 3 and "--nodes" in bad.stderr
    assert lab("status", check=False).returncode == 4
