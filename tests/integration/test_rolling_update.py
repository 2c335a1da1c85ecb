"""Rolling updates end to end: real etcd, a real `shoal controller` process and a hollow fleet (the
real agent code over the fake runtime, whose `invalid/...` images cannot be pulled), driven through
the API and the real CLI."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime

import pytest
from typer.testing import CliRunner, Result

from controller.api.types import Service, ServiceSpec, Task, UpdateConfig
from controller.client import ControlClient
from deploy.cli.main import app
from tests.support.agent import wait_for
from tests.support.cluster import ControllerProcess, HollowFleet
from tests.support.etcd import EtcdServer

NODES = 4
BAD_IMAGE = "invalid/no-such-image"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    base = tmp_path_factory.mktemp("rolling")
    with EtcdServer(base / "etcd") as etcd, ControllerProcess(base, etcd.endpoint) as controller:
        with HollowFleet(base, etcd.endpoint, NODES, "uroll", ["--ttl", "5"]):
            yield controller


@pytest.fixture
def api(cluster: ControllerProcess) -> Iterator[ControlClient]:
    with cluster.client() as client:
        yield client
        for summary in client.list_services():
            client.remove_service(summary.service.spec.name)
        wait_for(lambda: not client.list_tasks(), timeout=30, what="tasks removed")


def shoal(cluster: ControllerProcess, *args: str) -> Result:
    result = CliRunner().invoke(app, [args[0], "--controller", cluster.target, *args[1:]])
    assert "Traceback" not in result.output
    return result


def create(
    api: ControlClient, name: str, update: UpdateConfig, rollback: UpdateConfig | None = None
) -> Service:
    spec = ServiceSpec(
        name=name,
        image="busybox",
        replicas=4,
        update_config=update,
        rollback_config=rollback or UpdateConfig(),
    )
    service = api.create_service(spec)
    wait_for(lambda: running(api, name) == 4, timeout=20, what=f"{name}: 4 tasks running")
    return service


def running(api: ControlClient, name: str) -> int:
    return sum(t.state == "running" and t.desired_state == "running" for t in api.list_tasks(name))


def state(api: ControlClient, name: str) -> str | None:
    status = api.inspect_service(name).update_status
    return status.state if status else None


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_parallelism_one_with_a_delay_never_has_two_slots_in_flight(api: ControlClient) -> None:
    delay = 0.3
    create(api, "one", UpdateConfig(parallelism=1, delay=delay, monitor=0.2))
    updated = api.update_service(
        "one", api.inspect_service("one").spec.model_copy(update={"image": "busybox:2"})
    )
    wait_for(lambda: state(api, "one") == "completed", timeout=30, what="update completed")
    tasks = api.list_tasks("one")
    new = sorted((t for t in tasks if t.spec_version == updated.task_version), key=lambda t: t.created_at)
    assert len(new) == 4 and all(t.state == "running" for t in new)
    assert sorted(t.slot for t in new) == [1, 2, 3, 4]
    # From the recorded history: each slot's replacement was created (its old task told to stop
    # in the same write) only after the previous one reported running, and `delay` later.
    for before, after in itertools.pairwise(new):
        assert at(after.created_at) >= at(before.updated_at) + delay, (before, after)
    old = [t for t in tasks if t.spec_version != updated.task_version]
    assert len(old) == 4 and all(t.desired_state == "shutdown" and t.state == "shutdown" for t in old)


def test_an_image_that_cannot_be_pulled_rolls_back(cluster: ControllerProcess, api: ControlClient) -> None:
    before = create(
        api,
        "back",
        UpdateConfig(parallelism=1, failure_action="rollback", monitor=1.0),
        UpdateConfig(parallelism=0, monitor=0.2),
    )
    original = {t.id for t in api.list_tasks("back")}
    result = shoal(cluster, "service", "update", "back", "--image", BAD_IMAGE, "--timeout", "30")
    # The CLI follows the rollback and exits 1 once it is done.
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "service rolled back: rollback completed (update rolled back due to failure" in result.stderr
    assert state(api, "back") == "rollback_completed"
    service = api.inspect_service("back")
    bad_version = service.previous_task_version
    assert service.spec.image == "busybox" and service.task_version == before.task_version
    assert service.update_status is not None and "rolled back due to failure" in service.update_status.message
    tasks = api.list_tasks("back")
    tried = [t for t in tasks if t.spec_version == bad_version]
    assert len({t.slot for t in tried}) == 1 and all(t.state == "rejected" for t in tried)
    live = {t.id for t in tasks if t.desired_state == "running" and t.state == "running"}
    assert len(live) == 4 and len(live & original) == 3  # only the failed slot was touched


def test_a_paused_update_makes_the_cli_exit_1(cluster: ControllerProcess, api: ControlClient) -> None:
    create(api, "halt", UpdateConfig(parallelism=1, failure_action="pause"))
    result = shoal(cluster, "service", "update", "halt", "--image", BAD_IMAGE, "--timeout", "30")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "update paused: update paused due to failure or early termination of task" in result.stderr
    [inspected] = json.loads(shoal(cluster, "service", "inspect", "halt").stdout)
    assert inspected["update_status"]["state"] == "paused"
    tasks: list[Task] = api.list_tasks("halt")
    version = api.inspect_service("halt").task_version
    assert len({t.slot for t in tasks if t.spec_version == version}) == 1
    assert running(api, "halt") == 3  # the other slots keep the old image
    # Flags set the policy; a good image resumes and completes the update, and the CLI waits for it.
    flags = ["--image", "busybox:2", "--update-parallelism", "0", "--update-monitor", "200ms"]
    done = shoal(cluster, "service", "update", "halt", *flags, "--timeout", "30")
    assert done.exit_code == 0, (done.stdout, done.stderr)
    assert state(api, "halt") == "completed" and running(api, "halt") == 4
    assert api.inspect_service("halt").spec.update_config.parallelism == 0


def test_a_command_that_exits_at_once_pauses_the_update(api: ControlClient) -> None:
    before = create(api, "crash", UpdateConfig(parallelism=2, failure_action="pause", monitor=2.0))
    # The fake runtime's script: every container exits 1 at once (restarted in place, "always").
    crashing = {"shoal.fake.exit-after": "0", "shoal.fake.exit-code": "1"}
    bad = api.update_service("crash", before.spec.model_copy(update={"labels": crashing}))
    wait_for(lambda: state(api, "crash") == "paused", timeout=30, what="update paused")
    # A task that reported running moves the update on, as Swarm's; its failure within the
    # monitor period pauses it (how many slots were started by then depends on timing).
    tried = {t.id: t for t in api.list_tasks("crash") if t.spec_version == bad.task_version}
    status = api.inspect_service("crash").update_status
    assert status is not None
    culprit = status.message.rsplit(" ", 1)[-1]
    assert culprit in tried and tried[culprit].restarts > 0


def test_start_first_stops_each_old_task_only_after_its_replacement_runs(api: ControlClient) -> None:
    create(api, "first", UpdateConfig(parallelism=1, order="start-first", monitor=0.2))
    updated = api.update_service(
        "first", api.inspect_service("first").spec.model_copy(update={"env": ["V=2"]})
    )
    wait_for(lambda: state(api, "first") == "completed", timeout=30, what="update completed")
    tasks = api.list_tasks("first")
    for slot in (1, 2, 3, 4):
        [new] = [t for t in tasks if t.slot == slot and t.spec_version == updated.task_version]
        [old] = [t for t in tasks if t.slot == slot and t.spec_version != updated.task_version]
        assert new.state == "running" and old.state == "shutdown"
        # The old one's shutdown was reported after the new one's running (both agent timestamps).
        assert at(old.updated_at) >= at(new.updated_at), (old, new)
