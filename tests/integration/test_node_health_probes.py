"""Health probes inside a real Node (runc, busybox): the probe process's lifetime and failures
of the probe machinery itself, which only an in-process node can arrange."""

from __future__ import annotations

import errno
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import IO

import pytest

import agent.node
from agent.models import ContainerCreate, HealthCheck
from agent.node import Node, Probe
from tests.support.agent import in_process_node, wait_for
from tests.support.registry import Registry

WAIT = 20.0


@pytest.fixture
def node(tmp_path: Path, registry: Registry) -> Iterator[Node]:
    with in_process_node(tmp_path, registry.host) as n:
        yield n


def run(n: Node, check: HealthCheck, command: list[str] | None = None) -> str:
    req = ContainerCreate(image="busybox", command=command or ["sleep", "300"], healthcheck=check)
    return n.container_run(req, start=True).id


def test_a_probe_that_cannot_start_is_a_failure_and_probing_goes_on(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = [0]

    def out_of_fds() -> IO[bytes]:
        if refused[0] < 2:
            refused[0] += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return tempfile.TemporaryFile()

    monkeypatch.setattr(agent.node, "tempfile", SimpleNamespace(TemporaryFile=out_of_fds))  # the node's only
    cid = run(node, HealthCheck(test=["CMD", "true"], interval=0.2, retries=3))

    def healthy() -> bool:
        h = node.container_inspect(cid).health
        return h is not None and h.status == "healthy"

    wait_for(healthy, timeout=WAIT, what="probing to go on after probes that could not start")
    h = node.container_inspect(cid).health
    assert h is not None
    assert [e.exit_code != 0 and "Too many open files" in e.output for e in h.log[:2]] == [True, True]
    node.container_remove(cid, force=True)


def test_killing_a_finished_probe_signals_nothing(node: Node) -> None:
    cid = run(node, HealthCheck(test=["NONE"]))
    c = node._containers[cid]
    # A pid the finished probe's process had, now someone else's.
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        (c.dir / "probe.pid").write_text(str(bystander.pid))
        finished = subprocess.Popen(["true"])
        finished.wait()
        with tempfile.TemporaryFile() as output:
            with c.cond:
                node._kill_probe(c, Probe(c.health_generation, finished, output, ""))
    finally:
        bystander.terminate()
    # A SIGKILL sent before (even if not yet delivered) would have decided how it ends.
    assert bystander.wait() == -signal.SIGTERM
    node.container_remove(cid, force=True)


def test_close_reaps_a_probe_in_flight(node: Node) -> None:
    cid = run(node, HealthCheck(test=["CMD", "sleep", "300"], interval=0.1, timeout=300))
    c = node._containers[cid]
    wait_for(lambda: c.probe is not None, timeout=WAIT, what="a probe in flight")
    probe = c.probe
    assert probe is not None
    node.close()
    assert probe.proc.returncode is not None and probe.output.closed


def test_stop_unhealthy_returns_before_the_container_stops(node: Node) -> None:
    # sh as pid 1 without a trap ignores SIGTERM: only the SIGKILL after the grace period ends it.
    cid = run(
        node, HealthCheck(test=["CMD", "false"], interval=0.2, retries=1), ["sh", "-c", "sleep 300 & wait"]
    )

    def unhealthy() -> bool:
        h = node.container_inspect(cid).health
        return h is not None and h.status == "unhealthy"

    wait_for(unhealthy, timeout=WAIT, what="the container to turn unhealthy")
    info = node.container_stop_unhealthy(cid, timeout=300)
    assert info.state.status == "running"  # a synchronous stop would have waited out the grace
    assert node.container_stop_unhealthy(cid, timeout=300).state.status == "running"  # under way: a no-op
    node.container_remove(cid, force=True)
