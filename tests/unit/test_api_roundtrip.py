"""The agent API transport: a real gRPC server on a unix socket, a fake agent behind it.

The fake only exists to exercise the transport (encoding, streaming, errors); the real
agent is covered by the integration tests.
"""

from __future__ import annotations

import contextlib
import threading
import time
import typing
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import api
from agent.client import AgentClient, _error_class
from agent.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable
from agent.models import (
    Change,
    ContainerCreate,
    ContainerInfo,
    ContainerState,
    ContainerStats,
    ExecChunk,
    ImageInfo,
    LogEntry,
    MountSpec,
    ProcessInfo,
    Resources,
    RestartPolicy,
)
from agent.service import AgentService

NOW = "2026-01-02T03:04:05.123456789Z"


class Boom(Exception):
    """Not a ShoalError: stands for a bug in the agent."""


class TimedOut(ShoalError):
    """A ShoalError subclass from outside agent.errors, with its own exit code."""

    exit_code = 124
    grpc_code = "DEADLINE_EXCEEDED"


class FakeAgent:
    """Just enough of an agent to tell what reached it and to answer in every shape."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.containers: dict[str, ContainerInfo] = {}
        self.stream_closed = threading.Event()

    def last(self) -> tuple[str, dict[str, Any]]:
        return self.calls[-1]

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))

    def _get(self, ref: str) -> ContainerInfo:
        if ref == "boom":
            raise Boom("kaboom\nsecond line")
        for c in self.containers.values():
            if ref in (c.name, c.id) or (len(ref) >= 3 and c.id.startswith(ref)):
                return c
        raise NotFound(f"No such container: {ref}")

    def _set_state(self, c: ContainerInfo, **state: Any) -> ContainerInfo:
        c = c.model_copy(update={"state": c.state.model_copy(update=state)})
        self.containers[c.id] = c
        return c

    # containers
    def container_run(self, req: ContainerCreate, start: bool) -> ContainerInfo:
        self._record("container_run", req=req, start=start)
        if req.image == "missing:1":
            raise NotFound(f"No such image: {req.image}")
        if req.name is not None and any(c.name == req.name for c in self.containers.values()):
            raise Conflict(f'the container name "{req.name}" is already in use')
        cid = f"{len(self.containers) + 1:02d}" + "ab" * 31
        info = ContainerInfo(
            id=cid,
            name=req.name or f"fake_{len(self.containers) + 1}",
            created=NOW,
            image=req.image,
            image_id="sha256:" + "1" * 64,
            config=req,
            args=[*(req.entrypoint or []), *(req.command or ["sh"])],
            env=req.env,
            state=ContainerState(
                status="running" if start else "created", pid=42 if start else 0, started_at=NOW
            ),
            mounts=req.mounts,
            rootfs="/var/lib/shoal/containers/x/rootfs",
            log_path="/var/lib/shoal/containers/x/container.log",
        )
        self.containers[cid] = info
        return info

    def container_start(self, ref: str) -> ContainerInfo:
        self._record("container_start", ref=ref)
        return self._set_state(self._get(ref), status="running")

    def container_stop(self, ref: str, timeout: float | None) -> ContainerInfo:
        self._record("container_stop", ref=ref, timeout=timeout)
        if ref == "slow":
            raise TimedOut(f"container {ref} did not stop within {timeout}s")
        return self._set_state(self._get(ref), status="exited", exit_code=137, finished_at=NOW)

    def container_kill(self, ref: str, signal: str) -> ContainerInfo:
        self._record("container_kill", ref=ref, signal=signal)
        return self._set_state(self._get(ref), status="exited", exit_code=137, finished_at=NOW)

    def container_remove(self, ref: str, force: bool) -> str:
        self._record("container_remove", ref=ref, force=force)
        c = self._get(ref)
        if c.state.status == "running" and not force:
            raise Conflict(f"cannot remove container {c.name}: it is running; stop it first or use --force")
        del self.containers[c.id]
        return c.id

    def container_list(self, all: bool) -> list[ContainerInfo]:
        self._record("container_list", all=all)
        return [c for c in self.containers.values() if all or c.state.status == "running"]

    def container_inspect(self, ref: str) -> ContainerInfo:
        self._record("container_inspect", ref=ref)
        return self._get(ref)

    def container_logs(
        self, ref: str, tail: int | None, since: float | None, follow: bool
    ) -> Iterator[LogEntry]:
        self._record("container_logs", ref=ref, tail=tail, since=since, follow=follow)
        if ref == "forever":  # a follower on a container that never stops
            try:
                i = 0
                while True:
                    i += 1
                    yield LogEntry(time=NOW, stream="stdout", line=f"tick {i}\n")
                    time.sleep(0.02)
            finally:
                self.stream_closed.set()
        if ref == "breaks":  # fails after some output
            yield LogEntry(time=NOW, stream="stdout", line="partial\n")
            raise Boom("disk on fire")
        c = self._get(ref)
        entries = [
            LogEntry(time=NOW, stream="stdout", line="hello\n"),
            LogEntry(time=NOW, stream="stderr", line="oops\n"),
            LogEntry(time=NOW, stream="stdout", line="bye\n"),
        ]
        yield from entries[-tail:] if tail else entries
        if follow and c.state.status == "running":
            code = int(c.config.labels.get("exit", "0"))
            self._set_state(c, status="exited", exit_code=code, finished_at=NOW)

    def container_exec(
        self, ref: str, args: list[str], env: list[str], workdir: str | None, user: str | None
    ) -> Iterator[ExecChunk]:
        self._record("container_exec", ref=ref, args=args, env=env, workdir=workdir, user=user)
        self._get(ref)
        yield ExecChunk(stream="stdout", data=" ".join(args) + "\n")
        yield ExecChunk(stream="stderr", data=",".join(env) + "\n")
        code = int(args[1]) if args[0] == "exit" else 0
        yield ExecChunk(stream="exit", exit_code=code)

    def container_stats(self, ref: str) -> ContainerStats:
        self._record("container_stats", ref=ref)
        c = self._get(ref)
        return ContainerStats(
            id=c.id,
            name=c.name,
            cpu_seconds=1.25,
            memory_working_set_bytes=3 << 20,
            memory_limit_bytes=None,
            pids=2,
        )

    def container_top(self, ref: str) -> list[ProcessInfo]:
        self._record("container_top", ref=ref)
        self._get(ref)
        return [ProcessInfo(pid=4242, user="root", command="sleep 300")]

    def container_diff(self, ref: str) -> list[Change]:
        self._record("container_diff", ref=ref)
        self._get(ref)
        return [Change(kind="A", path="/newfile"), Change(kind="D", path="/etc/group")]

    def container_commit(self, ref: str, repo_tag: str | None) -> ImageInfo:
        self._record("container_commit", ref=ref, repo_tag=repo_tag)
        self._get(ref)
        return _image(repo_tag or "")

    # images
    def image_pull(self, ref: str) -> ImageInfo:
        self._record("image_pull", ref=ref)
        if ref.startswith("127.0.0.1:1/"):
            raise Unavailable("registry 127.0.0.1:1 is unreachable: connection refused")
        return _image(ref)

    def image_push(self, ref: str) -> ImageInfo:
        self._record("image_push", ref=ref)
        return _image(ref)

    def image_import(self, source: str, ref: str | None) -> ImageInfo:
        self._record("image_import", source=source, ref=ref)
        return _image(ref or "")

    def image_save(self, refs: list[str], path: str) -> None:
        self._record("image_save", refs=refs, path=path)

    def image_load(self, path: str) -> list[ImageInfo]:
        self._record("image_load", path=path)
        return [_image("loaded:1"), _image("")]

    def image_tag(self, source: str, target: str) -> ImageInfo:
        self._record("image_tag", source=source, target=target)
        return _image(target)

    def image_list(self) -> list[ImageInfo]:
        self._record("image_list")
        return [_image("registry:5000/library/busybox:latest"), _image("")]

    def image_remove(self, ref: str, force: bool) -> list[str]:
        self._record("image_remove", ref=ref, force=force)
        if ref == "used:1":
            raise Conflict(f"image {ref} is in use by a container")
        return [f"Untagged: {ref}", "Deleted: sha256:" + "2" * 64]


def _image(tag: str) -> ImageInfo:
    return ImageInfo(
        id="sha256:" + "2" * 64,
        repo_tags=[tag] if tag else [],
        repo_digests=[f"{tag.rsplit(':', 1)[0]}@sha256:" + "3" * 64] if tag else [],
        size=4_260_000,
        created=NOW,
        layers=["sha256:" + "4" * 64],
        dangling=not tag,
    )


def _fake_is_an_agent(fake: FakeAgent) -> AgentService:
    return fake  # mypy: the fake implements the whole Protocol


class Served:
    def __init__(self, fake: FakeAgent, socket: Path, server: Any) -> None:
        self.fake, self.socket, self.server = fake, socket, server

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"


@contextlib.contextmanager
def serve_fake(directory: Path) -> Iterator[Served]:
    """A FakeAgent behind the real server; the CLI tests use it too."""
    fake = FakeAgent()
    socket = directory / "run" / "agent.sock"
    server = api.serve(fake, socket, max_workers=4)
    try:
        yield Served(fake, socket, server)
    finally:
        server.stop(grace=None).wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve_fake(tmp_path) as s:
        yield s


@pytest.fixture
def client(served: Served) -> Iterator[AgentClient]:
    with AgentClient(served.socket) as c:
        yield c


# ---- tests -------------------------------------------------------------------------------


def test_method_table_matches_the_service_protocol() -> None:
    protocol = {
        name
        for name in dir(AgentService)
        if not name.startswith("_") and callable(getattr(AgentService, name))
    }
    assert set(api.METHODS) == protocol
    for name, rpc in api.METHODS.items():
        hints = typing.get_type_hints(getattr(AgentService, name))
        returns = hints.pop("return")
        assert rpc.params == hints, name
        expected = Iterator[rpc.result] if rpc.streaming else rpc.result  # type: ignore[name-defined]
        assert returns == expected, name


def test_values_round_trip(served: Served, client: AgentClient) -> None:
    req = ContainerCreate(
        image="busybox",
        name="web",
        command=["sh", "-c", "echo 'hi there'; exit 3"],
        entrypoint=[],
        env=["A=1", "B=ünïcode"],
        mounts=[MountSpec(type="bind", source="/srv", target="/data", read_only=True)],
        restart=RestartPolicy(name="on-failure", max_retries=5),
        resources=Resources(memory_bytes=512 << 20, nano_cpus=1_500_000_000, pids_limit=64),
        stop_timeout=2.5,
        labels={"k": "v"},
        cap_add=["NET_ADMIN"],
    )
    info = client.container_run(req, start=False)
    assert served.fake.last() == ("container_run", {"req": req, "start": False})
    assert isinstance(info, ContainerInfo) and info.config == req and info.state.status == "created"
    assert client.container_inspect("web") == served.fake.containers[info.id]

    assert client.container_stop("web", None).state.exit_code == 137
    assert served.fake.last() == ("container_stop", {"ref": "web", "timeout": None})
    client.container_stop("web", 1.5)
    assert served.fake.last()[1]["timeout"] == 1.5
    assert client.container_list(all=False) == []
    assert [c.id for c in client.container_list(all=True)] == [info.id]
    assert client.container_top("web") == [ProcessInfo(pid=4242, user="root", command="sleep 300")]
    assert [c.kind for c in client.container_diff("web")] == ["A", "D"]
    assert client.container_stats("web").memory_limit_bytes is None
    assert client.container_remove("web", True) == info.id

    client.image_save(["a:1", "b:2"], "/tmp/x.tar")
    assert served.fake.last() == ("image_save", {"refs": ["a:1", "b:2"], "path": "/tmp/x.tar"})
    assert client.image_import("/tmp/rootfs", None).repo_tags == []
    assert [i.dangling for i in client.image_list()] == [False, True]
    assert client.image_remove("x:1", False)[0] == "Untagged: x:1"


def test_streams_arrive_in_order(served: Served, client: AgentClient) -> None:
    client.container_run(ContainerCreate(image="busybox", name="c"), start=True)
    entries = list(client.container_logs("c", tail=None, since=None, follow=False))
    assert [(e.stream, e.line) for e in entries] == [
        ("stdout", "hello\n"),
        ("stderr", "oops\n"),
        ("stdout", "bye\n"),
    ]
    assert [e.line for e in client.container_logs("c", tail=1, since=12.5, follow=False)] == ["bye\n"]
    assert served.fake.last() == (
        "container_logs",
        {"ref": "c", "tail": 1, "since": 12.5, "follow": False},
    )
    chunks = list(client.container_exec("c", ["exit", "7"], ["X=1"], "/tmp", None))
    assert chunks == [
        ExecChunk(stream="stdout", data="exit 7\n"),
        ExecChunk(stream="stderr", data="X=1\n"),
        ExecChunk(stream="exit", exit_code=7),
    ]


def test_shoal_errors_come_back_as_the_same_class(client: AgentClient) -> None:
    with pytest.raises(NotFound) as not_found:
        client.container_inspect("nope")
    assert type(not_found.value) is NotFound and str(not_found.value) == "No such container: nope"

    client.container_run(ContainerCreate(image="busybox", name="taken"), start=True)
    with pytest.raises(Conflict) as conflict:
        client.container_run(ContainerCreate(image="busybox", name="taken"), start=True)
    assert str(conflict.value) == 'the container name "taken" is already in use'

    with pytest.raises(Unavailable, match="unreachable"):
        client.image_pull("127.0.0.1:1/busybox:latest")
    # in a stream, before and after the first message
    with pytest.raises(NotFound):
        list(client.container_logs("nope", tail=None, since=None, follow=False))
    with pytest.raises(NotFound):
        list(client.container_exec("nope", ["true"], [], None, None))


def test_any_shoal_error_subclass_keeps_its_class_and_exit_code(client: AgentClient) -> None:
    with pytest.raises(TimedOut) as err:
        client.container_stop("slow", 2)
    assert type(err.value) is TimedOut and err.value.exit_code == 124
    # a class this process never imported: a stand-in under the status's base class
    stand_in = _error_class("agent.runtime.somewhere.Gone", "NOT_FOUND", "124")
    assert issubclass(stand_in, NotFound) and stand_in.__name__ == "Gone" and stand_in.exit_code == 124


def test_bad_request_is_invalid_argument(client: AgentClient) -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        client.container_stop("x", "soon")  # type: ignore[arg-type]


def test_unknown_error_is_one_line_internal(client: AgentClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR", logger="agent.api"):
        with pytest.raises(ShoalError) as err:
            client.container_inspect("boom")
    assert type(err.value) is ShoalError and err.value.exit_code == 1
    message = str(err.value)
    assert "\n" not in message and "Boom: kaboom second line" in message and "Traceback" not in message
    # the traceback is in the agent's log only
    assert any(r.exc_info and r.exc_info[0] is Boom for r in caplog.records)

    got = []
    with pytest.raises(ShoalError, match="disk on fire"):
        for entry in client.container_logs("breaks", tail=None, since=None, follow=True):
            got.append(entry.line)
    assert got == ["partial\n"]


def test_stream_stops_when_the_client_goes_away(served: Served, client: AgentClient) -> None:
    stream = typing.cast(
        Generator[LogEntry], client.container_logs("forever", tail=None, since=None, follow=True)
    )
    assert next(stream).line == "tick 1\n"
    assert next(stream).line == "tick 2\n"
    stream.close()  # cancels the call
    assert served.fake.stream_closed.wait(5), "the agent kept following after the client left"


def test_client_reuses_one_channel(served: Served, client: AgentClient) -> None:
    for _ in range(20):
        client.container_list(all=True)
    assert len(client._calls) == 1


def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    socket = tmp_path / "agent.sock"
    with AgentClient(socket) as c, pytest.raises(Unavailable) as err:
        c.container_list(all=True)
    assert str(err.value) == f"cannot reach the agent at unix://{socket}: is `shoal agent` running?"


def test_serve_replaces_a_stale_socket_but_not_a_live_one(served: Served, tmp_path: Path) -> None:
    with pytest.raises(Conflict, match="already serving"):
        api.serve(FakeAgent(), served.socket)
    import socket as sockets

    stale = tmp_path / "stale.sock"
    s = sockets.socket(sockets.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on, as after a crash
    server = api.serve(FakeAgent(), stale)
    try:
        assert stale.stat().st_mode & 0o777 == 0o660
        with AgentClient(stale) as c:
            assert c.container_list(all=True) == []
    finally:
        server.stop(grace=None).wait()
