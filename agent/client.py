"""A warm client for the agent's API: one channel, typed methods, the agent's errors re-raised.

`AgentClient` satisfies `agent.service.AgentService`, so code can use a local `Node` or a
remote agent interchangeably. Keep one instance per process: the channel (and its unix
socket connection) is reused by every call, which keeps a call's latency to the agent's
own work plus a fraction of a millisecond.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from agent import api
from agent.errors import Conflict, IntegrityError, InvalidArgument, NotFound, ShoalError, Unavailable
from agent.models import (
    Change,
    ContainerCreate,
    ContainerInfo,
    ContainerStats,
    ExecChunk,
    ImageInfo,
    LogEntry,
    ProcessInfo,
)
from agent.service import AgentService

R = TypeVar("R")

# Used when the agent sent no class (a transport-level failure) or one this process has
# not imported: the base is picked by status so `except NotFound` keeps working.
_BY_STATUS: dict[str, type[ShoalError]] = {
    cls.grpc_code: cls for cls in (InvalidArgument, NotFound, Conflict, Unavailable, IntegrityError)
}
_remote_classes: dict[tuple[str, str, int], type[ShoalError]] = {}


class AgentClient:
    def __init__(self, socket_path: Path = api.DEFAULT_SOCKET) -> None:
        self.socket_path = Path(socket_path).absolute()
        api.check_socket_path(self.socket_path)
        self.target = f"unix://{self.socket_path}"
        self._channel = grpc.insecure_channel(self.target, options=api.CHANNEL_OPTIONS)
        self._calls: dict[str, Any] = {}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ---------------------------------------------------------------------

    def _callable(self, rpc: api.Rpc[Any]) -> Any:
        call = self._calls.get(rpc.name)
        if call is None:
            # Registered methods skip the server's per-call method lookup by name.
            make = self._channel.unary_stream if rpc.streaming else self._channel.unary_unary
            call = self._calls[rpc.name] = make(rpc.path, _registered_method=True)
        return call

    def _unary(self, rpc: api.Rpc[R], **kwargs: Any) -> R:
        request = rpc.encode_request(kwargs)
        try:
            data = self._callable(rpc)(request)
        except grpc.RpcError as exc:
            raise self._error(rpc, exc) from None
        return rpc.decode_result(data)

    def _stream(self, rpc: api.Rpc[R], **kwargs: Any) -> Iterator[R]:
        request = rpc.encode_request(kwargs)
        responses = self._callable(rpc)(request)
        try:
            for data in responses:
                yield rpc.decode_result(data)
        except grpc.RpcError as exc:
            raise self._error(rpc, exc) from None
        finally:
            # The consumer stopped early (closed the generator, Ctrl-C): tell the agent,
            # which then stops following logs or kills the exec.
            responses.cancel()

    def _error(self, rpc: api.Rpc[Any], exc: grpc.RpcError) -> ShoalError:
        code = exc.code()
        details = exc.details() or ""
        metadata = dict(exc.trailing_metadata() or ())
        remote = metadata.get(api.MD_ERROR_CLASS)
        if remote:
            return _error_class(str(remote), code.name, metadata.get(api.MD_EXIT_CODE))(details)
        # No class attached: the failure is in the transport or outside the agent's handlers.
        if code == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"cannot reach the agent at {self.target}: is `shoal agent` running?")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return ShoalError(f"the agent at {self.target} does not support {rpc.name}: is it older?")
        if code == grpc.StatusCode.INTERNAL:
            return ShoalError(f"agent internal error: {details} (see the agent's log)")
        if code == grpc.StatusCode.CANCELLED:
            return ShoalError(f"{rpc.name} was cancelled")
        return _BY_STATUS.get(code.name, ShoalError)(details or code.name.lower())

    # ---- containers --------------------------------------------------------------------

    def container_run(self, req: ContainerCreate, start: bool) -> ContainerInfo:
        return self._unary(api.CONTAINER_RUN, req=req, start=start)

    def container_start(self, ref: str) -> ContainerInfo:
        return self._unary(api.CONTAINER_START, ref=ref)

    def container_stop(self, ref: str, timeout: float | None) -> ContainerInfo:
        return self._unary(api.CONTAINER_STOP, ref=ref, timeout=timeout)

    def container_kill(self, ref: str, signal: str) -> ContainerInfo:
        return self._unary(api.CONTAINER_KILL, ref=ref, signal=signal)

    def container_remove(self, ref: str, force: bool) -> str:
        return self._unary(api.CONTAINER_REMOVE, ref=ref, force=force)

    def container_list(self, all: bool) -> list[ContainerInfo]:
        return self._unary(api.CONTAINER_LIST, all=all)

    def container_inspect(self, ref: str) -> ContainerInfo:
        return self._unary(api.CONTAINER_INSPECT, ref=ref)

    def container_logs(
        self, ref: str, tail: int | None, since: float | None, follow: bool
    ) -> Iterator[LogEntry]:
        return self._stream(api.CONTAINER_LOGS, ref=ref, tail=tail, since=since, follow=follow)

    def container_exec(
        self, ref: str, args: list[str], env: list[str], workdir: str | None, user: str | None
    ) -> Iterator[ExecChunk]:
        return self._stream(api.CONTAINER_EXEC, ref=ref, args=args, env=env, workdir=workdir, user=user)

    def container_stats(self, ref: str) -> ContainerStats:
        return self._unary(api.CONTAINER_STATS, ref=ref)

    def container_top(self, ref: str) -> list[ProcessInfo]:
        return self._unary(api.CONTAINER_TOP, ref=ref)

    def container_diff(self, ref: str) -> list[Change]:
        return self._unary(api.CONTAINER_DIFF, ref=ref)

    def container_commit(self, ref: str, repo_tag: str | None) -> ImageInfo:
        return self._unary(api.CONTAINER_COMMIT, ref=ref, repo_tag=repo_tag)

    # ---- images ------------------------------------------------------------------------

    def image_pull(self, ref: str) -> ImageInfo:
        return self._unary(api.IMAGE_PULL, ref=ref)

    def image_push(self, ref: str) -> ImageInfo:
        return self._unary(api.IMAGE_PUSH, ref=ref)

    def image_import(self, source: str, ref: str | None) -> ImageInfo:
        return self._unary(api.IMAGE_IMPORT, source=source, ref=ref)

    def image_save(self, refs: list[str], path: str) -> None:
        self._unary(api.IMAGE_SAVE, refs=refs, path=path)

    def image_load(self, path: str) -> list[ImageInfo]:
        return self._unary(api.IMAGE_LOAD, path=path)

    def image_tag(self, source: str, target: str) -> ImageInfo:
        return self._unary(api.IMAGE_TAG, source=source, target=target)

    def image_list(self) -> list[ImageInfo]:
        return self._unary(api.IMAGE_LIST)

    def image_remove(self, ref: str, force: bool) -> list[str]:
        return self._unary(api.IMAGE_REMOVE, ref=ref, force=force)


def _error_class(remote: str, status: str, exit_code: str | bytes | None) -> type[ShoalError]:
    """The local class named `remote` (module.qualname), or a stand-in with its exit code.

    Only classes already imported here are used: the agent's metadata never makes the
    client import a module.
    """
    for cls in _subclasses(ShoalError):
        if f"{cls.__module__}.{cls.__qualname__}" == remote:
            return cls
    try:
        code = int(exit_code) if exit_code is not None else ShoalError.exit_code
    except ValueError:
        code = ShoalError.exit_code
    key = (remote, status, code)
    if key not in _remote_classes:
        base = _BY_STATUS.get(status, ShoalError)
        _remote_classes[key] = type(
            remote.rpartition(".")[2],
            (base,),
            {"exit_code": code, "grpc_code": status, "__module__": __name__},
        )
    return _remote_classes[key]


def _subclasses(cls: type[ShoalError]) -> Iterator[type[ShoalError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _check_protocol(client: AgentClient) -> AgentService:
    return client  # mypy: AgentClient must keep satisfying the AgentService Protocol
