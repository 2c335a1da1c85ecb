"""The cluster verbs end to end: `shoal service|node|stack ...` through the real CLI against real
etcd, a real `shoal controller` process and hollow agents (the real agent code, fake runtime)."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from controller.api.types import ServiceSpec
from controller.client import ControlClient
from deploy.cli.main import app
from tests.support.agent import AgentProcess, wait_for
from tests.support.cluster import SHOAL, ControllerProcess, HollowFleet
from tests.support.etcd import EtcdServer
from tests.support.registry import Registry

NODES = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    base = tmp_path_factory.mktemp("cli-cluster")
    with EtcdServer(base / "etcd") as etcd, ControllerProcess(base, etcd.endpoint) as controller:
        fleet = HollowFleet(base, etcd.endpoint, NODES, "jcli", ["--label", "zone=a", "--ttl", "5"])
        with fleet:
            yield controller


@pytest.fixture
def api(cluster: ControllerProcess) -> Iterator[ControlClient]:
    with cluster.client() as client:
        yield client
        for summary in client.list_services():  # each test starts from no services
            client.remove_service(summary.service.spec.name)
        wait_for(lambda: not client.list_tasks(), timeout=30)


def shoal(cluster: ControllerProcess, *args: str) -> Result:
    result = CliRunner().invoke(app, [args[0], "--controller", cluster.target, *args[1:]])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_nodes_are_listed_and_updated(cluster: ControllerProcess, api: ControlClient) -> None:
    nodes = json.loads(ok(shoal(cluster, "node", "ls", "-o", "json")).stdout)
    assert sorted(n["id"] for n in nodes) == ["jcli1", "jcli2", "jcli3"]
    assert all(n["ready"] and n["labels"] == {"zone": "a"} for n in nodes)
    table = ok(shoal(cluster, "node", "ls")).stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "HOSTNAME", "STATUS"] and len(table) == 1 + NODES
    ok(shoal(cluster, "node", "update", "jcli3", "--availability", "pause", "--label-add", "disk=ssd"))
    [node] = json.loads(ok(shoal(cluster, "node", "inspect", "jcli3")).stdout)
    assert node["availability"] == "pause" and node["labels"] == {"zone": "a", "disk": "ssd"}
    ok(shoal(cluster, "node", "update", "jcli3", "--availability", "active", "--label-rm", "disk"))
    assert "availability: active" in ok(shoal(cluster, "node", "inspect", "jcli3", "-o", "yaml")).stdout
    bad = shoal(cluster, "node", "update", "jcli3", "--availability", "gone")
    assert bad.exit_code == 3 and "--availability" in error_line(bad)
    assert shoal(cluster, "node", "inspect", "nope").exit_code == 4


def test_service_create_scale_update_ps_rm(cluster: ControllerProcess, api: ControlClient) -> None:
    created = ok(
        shoal(cluster, "service", "create", "--name", "web", "--replicas", "3", "busybox", "sleep", "9")
    )
    assert "web: overall progress: 3 out of 3 tasks" in created.stderr and "converged" in created.stderr
    service_id = created.stdout.strip()
    assert api.inspect_service("web").spec.command == ["sleep", "9"]

    ok(shoal(cluster, "service", "scale", "web=5"))
    tasks = json.loads(ok(shoal(cluster, "service", "ps", "web", "-o", "json")).stdout)
    assert sum(t["state"] == "running" and t["desired_state"] == "running" for t in tasks) == 5

    ok(shoal(cluster, "service", "update", "web", "--env-add", "COLOR=blue", "--limit-memory", "64m"))
    spec = api.inspect_service("web").spec
    assert spec.env == ["COLOR=blue"] and spec.resources.limits.memory_bytes == 64 << 20
    tasks = json.loads(ok(shoal(cluster, "service", "ps", "web", "-o", "json")).stdout)
    assert sum(t["desired_state"] == "running" and t["state"] == "running" for t in tasks) == 5
    assert any(t["desired_state"] == "shutdown" for t in tasks), "the replaced tasks stay as history"
    table = ok(shoal(cluster, "service", "ps", "web")).stdout
    assert "\\_ web.1" in table and "Running" in table

    mount = "type=volume,source=cache,target=/cache"
    ok(
        shoal(
            cluster, "service", "update", "web", "--mount-add", mount, "--user", "1000", "--workdir", "/cache"
        )
    )
    spec = api.inspect_service("web").spec
    assert [(m.type, m.source, m.target) for m in spec.mounts] == [("volume", "cache", "/cache")]
    assert (spec.user, spec.working_dir) == ("1000", "/cache")
    ok(shoal(cluster, "service", "update", "web", "--mount-rm", "/cache", "--user", "", "--workdir", ""))
    spec = api.inspect_service("web").spec
    assert (spec.mounts, spec.user, spec.working_dir) == ([], None, None)

    listed = ok(shoal(cluster, "service", "ls")).stdout.splitlines()
    assert listed[1].split()[:4] == [service_id, "web", "replicated", "5/5"]
    assert ok(shoal(cluster, "service", "ls", "-q")).stdout.split() == [service_id]
    assert "name: web" in ok(shoal(cluster, "service", "inspect", "web", "-o", "yaml")).stdout

    ok(shoal(cluster, "service", "rm", "web"))
    assert ok(shoal(cluster, "service", "ls", "-q")).stdout.strip() == ""
    assert shoal(cluster, "service", "inspect", "web").exit_code == 4


def test_global_and_job_services_wait_for_their_own_kind_of_done(
    cluster: ControllerProcess, api: ControlClient
) -> None:
    made = ok(shoal(cluster, "service", "create", "--name", "agentd", "--mode", "global", "busybox"))
    assert f"overall progress: {NODES} out of {NODES} tasks" in made.stderr
    job = ["--label", "shoal.fake.exit-after=0.05", "--label", "shoal.fake.exit-code=0"]
    done = ok(
        shoal(
            cluster,
            "service",
            "create",
            "--name",
            "batch",
            "--mode",
            "replicated-job",
            "--replicas",
            "4",
            *job,
            "--max-concurrent",
            "2",
            "--timeout",
            "30",
            "busybox",
        )
    )
    assert "overall progress: 4 out of 4 tasks" in done.stderr
    assert "(4/4 completed)" in ok(shoal(cluster, "service", "ls")).stdout


def test_failures_timeouts_and_bad_input(cluster: ControllerProcess, api: ControlClient) -> None:
    failed = shoal(
        cluster, "service", "create", "--name", "broken", "--restart-condition", "none", "invalid/nothing"
    )
    assert failed.exit_code == 1 and "broken failed to converge" in error_line(failed)

    stuck = shoal(
        cluster,
        "service",
        "create",
        "--name",
        "nowhere",
        "--constraint",
        "node.labels.zone==b",
        "--timeout",
        "1",
        "busybox",
    )
    assert stuck.exit_code == 124 and "did not converge" in error_line(stuck)
    table = ok(shoal(cluster, "service", "ps", "nowhere")).stdout
    assert "Pending" in table and "zone" in table, "ps shows why the task is pending"

    detached = ok(shoal(cluster, "service", "create", "--name", "quick", "-d", "busybox"))
    assert detached.stderr == ""

    before = sorted(s.service.spec.name for s in api.list_services())
    for args, field in [
        (["--name", "x", "--publish", "80:abc", "busybox"], "--publish"),
        (["--name", "x", "--reserve-memory", "lots", "busybox"], "--reserve-memory"),
        (["--name", "x", "--mode", "daemon", "busybox"], "--mode"),
        (["--name", "x", "--restart-delay", "soon", "busybox"], "--restart-delay"),
        (["busybox"], "--name"),
    ]:
        bad = shoal(cluster, "service", "create", *args)
        assert bad.exit_code == 3 and field in error_line(bad), (args, bad.stderr)
    assert sorted(s.service.spec.name for s in api.list_services()) == before, "nothing was created"
    assert shoal(cluster, "service", "scale", "quick=many").exit_code == 3
    assert shoal(cluster, "service", "scale", "missing=2").exit_code == 4


STACK = """
volumes:
  content:
services:
  web:
    image: busybox
    command: httpd -f -p ${WEB_PORT:-8080}
    environment: {GREETING: hello}
    ports: ["8080:8080", {target: 53, published: 5353, protocol: udp}]
    volumes: ["content:/www:ro"]
    working_dir: /www
    build: ./web
    deploy:
      replicas: REPLICAS
      placement: {constraints: ["node.labels.zone == a"], max_replicas_per_node: 2}
      resources: {limits: {memory: 64m, cpus: "0.5"}, reservations: {memory: 16m}}
  agent:
    image: busybox
    deploy: {mode: global}
"""
JOB = """
  batch:
    image: busybox
    deploy:
      mode: replicated-job
      replicas: 2
      labels: {shoal.fake.exit-after: "0.05", shoal.fake.exit-code: "0"}
"""


def test_stack_deploy_ps_redeploy_rm(cluster: ControllerProcess, api: ControlClient, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(STACK.replace("REPLICAS", "2") + JOB)
    first = ok(shoal(cluster, "stack", "deploy", "-c", str(compose), "--timeout", "60", "shop"))
    assert first.stdout.splitlines() == [
        "Creating service shop_agent",
        "Creating service shop_batch",
        "Creating service shop_web",
    ]
    warnings = [line for line in first.stderr.splitlines() if line.startswith("Warning")]
    [ignored] = [w for w in warnings if "Ignoring" in w]
    assert "services.web.build" in ignored
    [ingress] = [w for w in warnings if "host mode" in w]
    assert "services.web.ports[0], services.web.ports[1] in host mode" in ingress
    web = api.inspect_service("shop_web").spec
    assert web.env == ["GREETING=hello"] and web.command == ["httpd", "-f", "-p", "8080"]
    assert web.resources.limits.memory_bytes == 64 << 20 and len(web.ports) == 2
    assert web.labels == {"com.docker.stack.namespace": "shop"}
    assert [(m.type, m.source, m.target, m.read_only) for m in web.mounts] == [
        ("volume", "shop_content", "/www", True)
    ]
    assert web.working_dir == "/www"

    assert ok(shoal(cluster, "stack", "ls")).stdout.splitlines()[1].split() == ["shop", "3"]
    stacks = json.loads(ok(shoal(cluster, "stack", "ls", "-o", "json")).stdout)
    assert stacks == [{"name": "shop", "services": 3}]
    tasks = json.loads(ok(shoal(cluster, "stack", "ps", "shop", "-o", "json")).stdout)
    running = [t for t in tasks if t["state"] == "running"]
    assert sum(t["service_name"] == "shop_web" for t in running) == 2
    assert sum(t["service_name"] == "shop_agent" for t in running) == NODES
    assert sum(t["service_name"] == "shop_batch" and t["state"] == "complete" for t in tasks) == 2
    # The agents report each task's address (hollow agents: a fake 10.x one) and in-place restarts.
    assert all(t["address"].startswith("10.") and t["restarts"] == 0 for t in running), running
    assert len({t["address"] for t in running}) == len(running)
    assert "shop_web.1" in ok(shoal(cluster, "stack", "ps", "shop")).stdout

    # Redeploy: only web changed, batch is gone from the file.
    compose.write_text(STACK.replace("REPLICAS", "3"))
    agent_version = api.inspect_service("shop_agent").version
    again = ok(shoal(cluster, "stack", "deploy", "-c", str(compose), "--timeout", "60", "shop"))
    assert again.stdout.splitlines() == ["Updating service shop_web", "Removing service shop_batch"]
    assert api.inspect_service("shop_agent").version == agent_version, "an unchanged service is not written"
    assert api.inspect_service("shop_web").spec.replicas == 3
    assert "shop_batch" not in {s.service.spec.name for s in api.list_services()}

    # An invalid file changes nothing.
    compose.write_text(STACK.replace("REPLICAS", "many"))
    bad = shoal(cluster, "stack", "deploy", "-c", str(compose), "shop")
    assert bad.exit_code == 3 and "services.web.deploy.replicas" in error_line(bad)
    assert api.inspect_service("shop_web").spec.replicas == 3

    ok(shoal(cluster, "stack", "rm", "shop"))
    assert not api.list_services()
    assert shoal(cluster, "stack", "ps", "shop").exit_code == 4


def test_logs_and_exec_reach_a_task_on_its_node(tmp_path: Path, registry: Registry) -> None:
    """A real agent (runc): `shoal logs TASK`, `shoal exec TASK -- CMD` and `service logs` go
    through the agent API the node registered (NodeInfo.agent_api)."""
    with EtcdServer(tmp_path / "etcd") as etcd, ControllerProcess(tmp_path, etcd.endpoint) as controller:
        base = tmp_path / "node"
        base.mkdir()
        args = ["--etcd", etcd.endpoint, "--node-id", "jreal1", "--node-ttl", "3", "--stop-timeout", "1"]
        with AgentProcess(base, registry.host, args) as agent:
            with controller.client() as api:
                wait_for(lambda: any(n.ready for n in api.list_nodes()), what="the node is ready")
                assert api.inspect_node("jreal1").agent_api == f"unix://{agent.socket}"
            script = "echo hello from $HOSTNAME-task; exec sleep 600"
            ok(
                shoal(
                    controller,
                    "service",
                    "create",
                    "--name",
                    "talk",
                    "--timeout",
                    "60",
                    "--mount",
                    "type=volume,source=talkdata,target=/data",
                    "--user",
                    "1000:1000",
                    "--workdir",
                    "/data",
                    "--stop-signal",
                    "SIGINT",
                    "--stop-grace-period",
                    "1s",
                    "busybox",
                    "sh",
                    "-c",
                    script,
                )
            )
            [task] = json.loads(ok(shoal(controller, "service", "ps", "talk", "-o", "json")).stdout)
            wait_for(
                lambda: "hello from" in shoal(controller, "logs", task["id"]).stdout,
                what="the task's first line",
            )
            assert "hello from" in ok(shoal(controller, "logs", task["id"][:8])).stdout, (
                "a unique prefix will do"
            )
            assert f"talk.1.{task['id']}@" in ok(shoal(controller, "service", "logs", "talk")).stdout
            ran = shoal(controller, "exec", task["id"], "sh", "-c", "echo inside; exit 7")
            assert ran.exit_code == 7 and ran.stdout == "inside\n"
            # The spec's volume, user and working directory reached the container on its node.
            probe = ok(
                shoal(
                    controller,
                    "exec",
                    task["id"],
                    "sh",
                    "-c",
                    "id -u; id -g; pwd; grep ' /data ' /proc/mounts",
                )
            )
            uid, gid, cwd, mount = probe.stdout.splitlines()
            assert (uid, gid, cwd, mount.split()[1]) == ("1000", "1000", "/data", "/data"), probe.stdout
            assert (agent.state_dir / "volumes" / "talkdata" / "_data").is_dir(), "the agent made the volume"
            [info] = agent.client().container_list(all=True)
            assert (info.config.stop_signal, info.config.stop_timeout) == ("SIGINT", 1)
            assert shoal(controller, "exec", "nosuchtask", "true").exit_code == 4
            ok(shoal(controller, "service", "rm", "talk"))
            wait_for(lambda: not agent.client().container_list(all=True), what="the container is removed")


def test_events_stream_until_ctrl_c(cluster: ControllerProcess, api: ControlClient) -> None:
    proc = subprocess.Popen(
        [SHOAL, "events", "--controller", cluster.target, "--type", "service"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # The stream is up once a change made now shows; keep making them until one does.
        wait_for(
            lambda: (
                api.create_service(ServiceSpec(name=f"ev{uuid.uuid4().hex[:6]}", image="busybox")) is not None
                and select.select([proc.stdout], [], [], 0.5)[0] != []
            ),
            what="the first event",
        )
        line = proc.stdout.readline()
        assert " service create " in line and "(name=ev" in line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert proc.stderr is not None and proc.stderr.read() == "", "Ctrl-C exits quietly"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_service_rollback_swaps_back_and_waits(cluster: ControllerProcess, api: ControlClient) -> None:
    ok(
        shoal(
            cluster,
            "service",
            "create",
            "--name",
            "rb",
            "--replicas",
            "2",
            "-e",
            "V=1",
            "busybox",
            "sleep",
            "9",
        )
    )
    refused = shoal(cluster, "service", "rollback", "rb")
    assert refused.exit_code == 1
    assert error_line(refused) == "Error: service rb has no previous spec to roll back to"
    ok(shoal(cluster, "service", "update", "rb", "--env-add", "V=2"))
    rolled = ok(shoal(cluster, "service", "rollback", "rb"))
    assert "rb: overall progress: 2 out of 2 tasks" in rolled.stderr and "converged" in rolled.stderr
    service = api.inspect_service("rb")
    assert service.spec.env == ["V=1"] and service.previous_spec is not None
    # The V=1 spec's task version comes back with it (tasks still running it would be kept).
    assert service.previous_spec.env == ["V=2"] and service.task_version == 1
    tasks = api.list_tasks("rb")
    assert sorted(t.spec_version for t in tasks if t.state == "running") == [1, 1]


def test_node_rm_refuses_a_ready_node_unless_forced(
    cluster: ControllerProcess, api: ControlClient, tmp_path: Path
) -> None:
    with HollowFleet(tmp_path, cluster.etcd, 1, "jrm", ["--ttl", "5"]) as fleet:
        [extra] = fleet.node_ids
        try:
            ok(shoal(cluster, "service", "create", "--name", "spread", "--replicas", "4", "busybox"))
            assert extra in {t.node_id for t in api.list_tasks("spread")}
            refused = shoal(cluster, "node", "rm", extra)
            assert refused.exit_code == 1
            assert error_line(refused) == (
                f"Error: node {extra} is ready: drain it and stop its agent first, or use --force"
            )
            assert ok(shoal(cluster, "node", "rm", "--force", extra)).stdout.strip() == extra
            assert extra not in {n.id for n in api.list_nodes()}

            def replaced() -> bool:
                running = [t for t in api.list_tasks("spread") if t.desired_state == "running"]
                return len(running) == 4 and all(t.state == "running" and t.node_id != extra for t in running)

            wait_for(replaced, timeout=30, what="the removed node's task replaced on the others")
        finally:
            if extra in {n.id for n in api.list_nodes()}:
                api.remove_node(extra, force=True)
