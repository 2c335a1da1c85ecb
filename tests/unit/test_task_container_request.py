"""What the agent asks its node to run for a task (node_runtime.container_request), and the fake
runtime's task addresses."""

from __future__ import annotations

from agent.models import MountSpec, validate_create
from agent.tasks.fake_runtime import FakeRuntime, fake_address
from agent.tasks.node_runtime import container_request
from controller.api.types import Assignment, Mount, ServiceSpec, Task


def _assignment(spec: ServiceSpec, tid: str = "t1") -> Assignment:
    task = Task(id=tid, service_id="sid", service_name=spec.name, spec_version=1, slot=1, node_id="n1")
    return Assignment(task=task, spec=spec)


def test_mounts_user_workdir_and_stop_settings_reach_the_container() -> None:
    spec = ServiceSpec(
        name="db",
        image="busybox",
        mounts=[
            Mount(type="volume", source="data", target="/data"),
            Mount(type="bind", source="/srv/conf", target="/conf", read_only=True),
        ],
        user="1000:1000",
        working_dir="/data",
        stop_signal="SIGINT",
        stop_grace_period=2.5,
    )
    req = container_request(_assignment(spec))
    validate_create(req)
    assert req.mounts == [
        MountSpec(type="volume", source="data", target="/data"),
        MountSpec(type="bind", source="/srv/conf", target="/conf", read_only=True),
    ]
    assert (req.user, req.working_dir, req.stop_signal, req.stop_timeout) == (
        "1000:1000",
        "/data",
        "SIGINT",
        2.5,
    )


def test_unset_settings_leave_the_images_defaults() -> None:
    req = container_request(_assignment(ServiceSpec(name="web", image="busybox")))
    assert (req.mounts, req.user, req.working_dir, req.stop_signal, req.stop_timeout) == (
        [],
        None,
        None,
        None,
        None,
    )


def test_fake_runtime_gives_each_task_a_stable_private_address() -> None:
    runtime = FakeRuntime()
    try:
        c = runtime.run(_assignment(ServiceSpec(name="web", image="busybox"), "task-a"))
        assert c.address == fake_address("task-a") and c.address.startswith("10.")
        assert fake_address("task-a") != fake_address("task-b")
    finally:
        runtime.close()
