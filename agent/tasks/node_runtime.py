"""TaskRuntime over the node's real container runtime (`agent.node.Node`: runc, images, restarts)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.errors import NotFound
from agent.models import ContainerCreate, ContainerInfo, MountSpec, Resources
from agent.node import Node
from agent.tasks.runtime import TASK_ID, TaskContainer, container_name, restart_policy, task_labels
from controller.api.types import Assignment

log = logging.getLogger(__name__)


def container_request(assignment: Assignment) -> ContainerCreate:
    """What the node is asked to run for a task: the spec's image, process, mounts and limits."""
    spec = assignment.spec
    limits = spec.resources.limits
    return ContainerCreate(
        image=spec.image,
        name=container_name(assignment),
        command=spec.command,
        entrypoint=spec.entrypoint,
        env=list(spec.env),
        working_dir=spec.working_dir,
        user=spec.user,
        mounts=[
            MountSpec(type=m.type, source=m.source, target=m.target, read_only=m.read_only)
            for m in spec.mounts
        ],
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_grace_period,
        labels=task_labels(assignment),
        restart=restart_policy(spec.restart_policy),
        resources=Resources(
            memory_bytes=limits.memory_bytes or None,
            nano_cpus=limits.nano_cpus or None,
            pids_limit=limits.pids or None,
        ),
        # Host-mode published ports; they need the node's bridge network (the default when it has one).
        publish=[f"{p.published}:{p.target}/{p.protocol}" for p in spec.ports],
        healthcheck=spec.healthcheck,
    )


def task_container(info: ContainerInfo) -> TaskContainer | None:
    task_id = info.config.labels.get(TASK_ID)
    if not task_id:
        return None
    s = info.state
    return TaskContainer(
        task_id=task_id,
        container_id=info.id,
        status="exited" if s.status == "dead" else s.status,
        exit_code=s.exit_code,
        restart_count=s.restart_count,
        oom_killed=s.oom_killed,
        manually_stopped=s.manually_stopped,
        error=s.error,
        created=info.created,
        address=info.ip_address,
        health=info.health.status if info.health is not None else "",
    )


class NodeRuntime:
    def __init__(self, node: Node, stop_timeout: float | None = None) -> None:
        """stop_timeout: seconds between the stop signal and SIGKILL (None: the agent's setting)."""
        self._node = node
        self._stop_timeout = stop_timeout

    def list(self) -> list[TaskContainer]:
        found = (task_container(info) for info in self._node.container_list(all=True))
        return [c for c in found if c is not None]

    def run(self, assignment: Assignment) -> TaskContainer:
        # container_run pulls a missing image and validates the request (InvalidArgument).
        info = self._node.container_run(container_request(assignment), start=True)
        tc = task_container(info)
        assert tc is not None  # we set the label ourselves
        return tc

    def stop(self, container_id: str) -> None:
        try:
            self._node.container_stop(container_id, self._stop_timeout)
        except NotFound:
            pass

    def stop_unhealthy(self, container_id: str) -> None:
        try:
            self._node.container_stop_unhealthy(container_id, self._stop_timeout)
        except NotFound:
            pass

    def remove(self, container_id: str) -> None:
        try:
            info = self._node.container_inspect(container_id)
            if info.state.status in ("running", "restarting"):
                self._node.container_stop(container_id, self._stop_timeout)  # graceful first
            self._node.container_remove(container_id, force=True)
        except NotFound:
            pass

    def subscribe(self, callback: Callable[[str], None]) -> None:
        def on_change(container_id: str) -> None:
            try:
                info = self._node.container_inspect(container_id)
            except NotFound:
                return  # removed meanwhile: whoever removed it re-plans anyway
            task_id = info.config.labels.get(TASK_ID)
            if task_id:
                callback(task_id)

        self._node.add_listener(on_change)
