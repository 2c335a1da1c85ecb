"""`shoal service create|update` flag handling and the convergence decision (pure parts)."""

from __future__ import annotations

import pytest

from agent.errors import InvalidArgument
from controller.api.types import NodeInfo, Service, ServiceSpec, Task
from controller.api.views import ClusterEvent
from deploy.cli.converge import progress
from deploy.cli.events import event_line
from deploy.cli.service import task_rows
from deploy.cli.service_flags import SpecFlags, apply_flags, build_spec
from deploy.context import Context, controller_target, load_context, remove_context, save_context
from deploy.values import parse_duration, parse_port


def test_create_flags_build_the_whole_spec() -> None:
    spec = build_spec(
        "web",
        SpecFlags(
            image="busybox",
            command=["sleep", "1"],
            replicas=3,
            env_add=["A=1"],
            label_add=["team=x"],
            constraint_add=["node.labels.zone==a"],
            pref_add=["spread=node.labels.zone"],
            publish_add=["8080:80", "53/udp", "published=9000,target=90"],
            max_replicas_per_node=2,
            reserve_memory="32m",
            reserve_cpu="0.25",
            limit_memory="1g",
            limit_cpu="1.5",
            limit_pids=64,
            restart_condition="on-failure",
            restart_delay="1m30s",
            restart_max_attempts=4,
            restart_window="10s",
        ),
    )
    assert spec.command == ["sleep", "1"] and spec.replicas == 3 and spec.env == ["A=1"]
    assert spec.labels == {"team": "x"}
    assert spec.placement.constraints == ["node.labels.zone==a"] and spec.placement.max_replicas_per_node == 2
    assert [(p.published, p.target, p.protocol) for p in spec.ports] == [
        (8080, 80, "tcp"),
        (53, 53, "udp"),
        (9000, 90, "tcp"),
    ]
    assert spec.resources.reservations.memory_bytes == 32 << 20
    assert spec.resources.limits.nano_cpus == 1_500_000_000 and spec.resources.limits.pids == 64
    assert (spec.restart_policy.delay, spec.restart_policy.window, spec.restart_policy.max_attempts) == (
        90,
        10,
        4,
    )


def test_mount_user_workdir_and_stop_flags() -> None:
    spec = build_spec(
        "db",
        SpecFlags(
            image="busybox",
            mount_add=["type=volume,source=data,target=/data", "type=bind,src=/srv,dst=/srv,readonly"],
            user="1000:1000",
            workdir="/data",
            stop_signal="SIGINT",
            stop_grace_period="1m",
        ),
    )
    assert [(m.type, m.source, m.target, m.read_only) for m in spec.mounts] == [
        ("volume", "data", "/data", False),
        ("bind", "/srv", "/srv", True),
    ]
    assert (spec.user, spec.working_dir, spec.stop_signal, spec.stop_grace_period) == (
        "1000:1000",
        "/data",
        "SIGINT",
        60,
    )
    new = apply_flags(spec, SpecFlags(mount_rm=["/srv"], mount_add=["source=other,target=/data"], user=""))
    assert [(m.source, m.target) for m in new.mounts] == [("other", "/data")] and new.user is None


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("type=tmpfs,target=/t,source=x", "type must be volume or bind"),
        ("source=x", "target= is required"),
        ("target=/x", "source= is required"),
        ("source=x,target=/x,size=1", "unknown key 'size'"),
        ("source=x,target=/x,readonly=maybe", "readonly takes no value"),
    ],
)
def test_bad_mount_flags_name_the_flag(text: str, rule: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^invalid --mount .*{rule}"):
        build_spec("db", SpecFlags(image="busybox", mount_add=[text]))


def test_jobs_take_replicas_as_completions_and_restart_on_failure_only() -> None:
    spec = build_spec("j", SpecFlags(image="busybox", mode="replicated-job", replicas=5, max_concurrent=2))
    assert (spec.total_completions, spec.max_concurrent, spec.replicas) == (5, 2, 1)
    assert spec.restart_policy.condition == "on-failure"


def test_update_flags_add_and_remove() -> None:
    spec = ServiceSpec(
        name="web", image="busybox", env=["A=1", "B=2"], labels={"x": "1"}, ports=[parse_port("p", "80:80")]
    )
    new = apply_flags(
        spec,
        SpecFlags(
            image="busybox:2",
            env_add=["A=3"],
            env_rm=["B"],
            label_rm=["x"],
            label_add=["y=2"],
            publish_rm=["80"],
            publish_add=["81:81/udp"],
        ),
    )
    assert new.image == "busybox:2" and new.env == ["A=3"] and new.labels == {"y": "2"}
    assert [(p.published, p.protocol) for p in new.ports] == [(81, "udp")]
    assert apply_flags(spec, SpecFlags()) == spec, "no flags, no change"


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (SpecFlags(image="b", mode="daemon"), "--mode"),
        (SpecFlags(image="b", reserve_memory="lots"), "--reserve-memory"),
        (SpecFlags(image="b", limit_cpu="many"), "--limit-cpu"),
        (SpecFlags(image="b", restart_delay="soon"), "--restart-delay"),
        (SpecFlags(image="b", restart_condition="always"), "--restart-condition"),
        (SpecFlags(image="b", publish_add=["80:99999"]), "--publish"),
        (SpecFlags(image="b", env_add=["NOVALUE"]), "--env"),
        (SpecFlags(image="b", replicas=-1), "--replicas"),
        (SpecFlags(image=""), "IMAGE"),
    ],
)
def test_bad_flags_name_the_flag(flags: SpecFlags, field: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^invalid {field} "):
        build_spec("web", flags)


def test_durations() -> None:
    assert parse_duration("d", "1h2m3s") == 3723 and parse_duration("d", 2) == 2.0
    assert parse_duration("d", "500ms") == 0.5 and parse_duration("d", "7") == 7


def _service(**spec: object) -> Service:
    return Service(
        id="s1",
        spec=ServiceSpec.model_validate({"name": "web", "image": "busybox"} | spec),
        task_version=2,
        created_at="t",
        updated_at="t",
    )


def _task(i: int, state: str, desired: str = "running", version: int = 2, **kw: object) -> Task:
    return Task.model_validate(
        {
            "id": f"t{i}",
            "service_id": "s1",
            "service_name": "web",
            "spec_version": version,
            "slot": i,
            "node_id": "n1",
            "desired_state": desired,
            "state": state,
            "created_at": f"2026-01-01T00:00:0{i}Z",
        }
        | kw
    )


def test_replicated_convergence_needs_current_tasks_running_and_old_ones_stopped() -> None:
    service = _service(replicas=2)
    assert not progress(service, [_task(1, "running")]).converged
    old = _task(3, "running", desired="shutdown", version=1)
    state = progress(service, [_task(1, "running"), _task(2, "running"), old])
    assert (state.done, state.total, state.converged) == (2, 2, False)
    stopped = old.model_copy(update={"state": "shutdown"})
    assert progress(service, [_task(1, "running"), _task(2, "running"), stopped]).converged
    pending = _task(2, "pending", message="no suitable node (constraint)")
    assert progress(service, [_task(1, "running"), pending]).errors == (
        "web.2: pending: no suitable node (constraint)",
    )
    assert (
        progress(service, [_task(1, "running"), _task(2, "running")]).line()
        == "overall progress: 2 out of 2 tasks"
    )


def test_global_and_job_convergence_and_failure() -> None:
    glob = _service(mode="global")
    assert not progress(glob, [], ready_nodes=3).converged, "no tasks yet: the orchestrator is behind"
    assert progress(glob, [], ready_nodes=0).converged
    assert progress(glob, [_task(0, "running", node_id="n1"), _task(0, "running", node_id="n2")]).converged
    job = _service(mode="replicated-job", total_completions=2)
    assert not progress(job, [_task(1, "complete"), _task(2, "running")]).converged
    assert progress(job, [_task(1, "complete"), _task(2, "complete")]).converged
    once = _service(restart_policy={"condition": "none"})
    failed = progress(once, [_task(1, "rejected", message="pull failed")])
    assert failed.failure == "task t1 rejected: pull failed" and not failed.converged
    assert progress(_service(), [_task(1, "rejected", message="x")]).failure == "", "it will be retried"


def test_ps_rows_show_history_under_the_newest_task_of_a_slot() -> None:
    old = _task(1, "shutdown", desired="shutdown", version=1).model_copy(
        update={"id": "old", "created_at": "1"}
    )
    new = _task(1, "running").model_copy(update={"id": "new", "created_at": "2"})
    rows = task_rows([old, new], {"s1": _service()}, {})
    assert [r[:2] for r in rows] == [["new", "web.1"], ["old", " \\_ web.1"]]


def test_ps_shows_the_image_of_current_and_previous_spec_tasks() -> None:
    service = _service(image="busybox:2").model_copy(
        update={"previous_spec": ServiceSpec(name="web", image="busybox:1"), "previous_task_version": 1}
    )
    tasks = [_task(1, "running", version=2), _task(2, "shutdown", version=1), _task(3, "failed", version=0)]
    assert [r[2] for r in task_rows(tasks, {"s1": service}, {})] == ["busybox:2", "busybox:1", ""]


def test_ps_shows_a_running_tasks_address() -> None:
    running = _task(1, "running").model_copy(update={"address": "10.0.3.2"})
    done = _task(2, "complete").model_copy(update={"address": "10.0.3.3"})
    rows = task_rows([running, done], {"s1": _service()}, {})
    assert [r[4] for r in rows] == ["10.0.3.2", ""]


def test_ps_names_nodes_by_hostname_unless_several_share_it() -> None:
    def node(node_id: str, hostname: str) -> NodeInfo:
        return NodeInfo(id=node_id, hostname=hostname, address="10.0.0.1", nano_cpus=1, memory_bytes=1)

    task = _task(1, "running").model_copy(update={"node_id": "n1"})
    alone = {"n1": node("n1", "alpha"), "n2": node("n2", "beta")}
    assert task_rows([task], {"s1": _service()}, alone)[0][3] == "alpha"
    lab = {"n1": node("n1", "vm"), "n2": node("n2", "vm")}  # several agents on one machine
    assert task_rows([task], {"s1": _service()}, lab)[0][3] == "n1"


def test_event_lines() -> None:
    event = ClusterEvent(
        revision=5, time="T", type="task", action="update", id="t1", name="web.1", state="running"
    )
    assert event_line(event) == "T task update t1 (name=web.1, state=running)"


def test_context_round_trip_and_precedence(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"{tmp_path}/ctx/context.json"
    monkeypatch.setenv("SHOAL_CONTEXT", path)
    monkeypatch.delenv("SHOAL_CONTROLLER", raising=False)
    assert load_context() is None and controller_target(None) == "127.0.0.1:4240"
    save_context(Context(controller="127.0.0.1:1", etcd="127.0.0.1:2", registry="127.0.0.1:3", lab="/l"))
    assert load_context() == Context("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "/l")
    assert controller_target(None) == "127.0.0.1:1"
    monkeypatch.setenv("SHOAL_CONTROLLER", "127.0.0.1:9")
    assert controller_target(None) == "127.0.0.1:9" and controller_target("h:1") == "h:1"
    remove_context()
    remove_context()
    assert load_context() is None
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(InvalidArgument, match="invalid context"):
        load_context()
