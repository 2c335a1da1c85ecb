"""The agent's node-local API: gRPC over a unix socket, JSON messages, no protoc.

One declarative table (`METHODS`) describes every RPC: its name, keyword arguments with
their types, result type and whether it streams. The server (`serve`) and the client
(`agent.client.AgentClient`) both encode and decode through it, so they cannot drift;
`tests/unit/test_api_roundtrip.py` checks the table against `agent.service.AgentService`.

Wire format: the method path is `/shoal.agent.v1.Agent/<method>`; a request is a JSON
object of the method's keyword arguments; a response (or each streamed message) is the
JSON of the result. Errors: a `ShoalError` becomes its gRPC status plus trailing metadata
naming its class and exit code, so the client re-raises the same class.

To add an RPC: add the method to `AgentService`, implement it in the agent, add one
`unary(...)`/`stream(...)` line below, and add the typed method to `AgentClient` (mypy
fails until the client matches the Protocol).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import socket
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar, cast

import grpc
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from agent.errors import Conflict, InvalidArgument, ShoalError
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

SERVICE = "shoal.agent.v1.Agent"
DEFAULT_SOCKET = Path("/run/shoal/agent.sock")

# Trailing metadata carrying a ShoalError's identity across the wire.
MD_ERROR_CLASS = "shoal-error-class"
MD_EXIT_CODE = "shoal-exit-code"

# Image lists and `inspect` of many containers can exceed gRPC's 4 MiB default.
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
# sockaddr_un.sun_path is 108 bytes including the NUL; longer paths fail obscurely in gRPC.
MAX_SOCKET_PATH = 107

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class Rpc(Generic[R]):
    """One RPC: `R` is the result type (the type of each message for a stream)."""

    name: str
    params: dict[str, Any]
    """Keyword argument name -> type, in the Protocol's order."""
    result: Any
    streaming: bool = False

    @property
    def path(self) -> str:
        return f"/{SERVICE}/{self.name}"

    # Codecs are built on first use: building all of them costs ~tens of ms, which a
    # one-shot CLI call should not pay. The server warms them all in `serve`.
    @cached_property
    def _request_model(self) -> type[BaseModel]:
        fields: dict[str, Any] = {name: (tp, ...) for name, tp in self.params.items()}
        return create_model(
            f"{self.name}_request",
            __config__=ConfigDict(extra="forbid", protected_namespaces=()),
            **fields,
        )

    @cached_property
    def _result_adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.result)

    def warm(self) -> None:
        _ = self._request_model, self._result_adapter

    def encode_request(self, kwargs: dict[str, Any]) -> bytes:
        try:
            return self._request_model(**kwargs).model_dump_json().encode()
        except ValidationError as exc:
            raise _invalid_request(self.name, exc) from None

    def decode_request(self, data: bytes) -> dict[str, Any]:
        try:
            msg = self._request_model.model_validate_json(data)
        except ValidationError as exc:
            raise _invalid_request(self.name, exc) from None
        return {name: getattr(msg, name) for name in self.params}

    def encode_result(self, value: R) -> bytes:
        return self._result_adapter.dump_json(value)

    def decode_result(self, data: bytes) -> R:
        return cast(R, self._result_adapter.validate_json(data))


def _invalid_request(method: str, exc: ValidationError) -> InvalidArgument:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "request"
    return InvalidArgument(f"invalid {method} argument {where}: {first['msg']}")


def unary(name: str, params: dict[str, Any], result: type[R]) -> Rpc[R]:
    return Rpc(name, params, result)


def stream(name: str, params: dict[str, Any], item: type[R]) -> Rpc[R]:
    return Rpc(name, params, item, streaming=True)


# ---- the method table (mirrors agent.service.AgentService) -------------------------------

CONTAINER_RUN = unary("container_run", {"req": ContainerCreate, "start": bool}, ContainerInfo)
CONTAINER_START = unary("container_start", {"ref": str}, ContainerInfo)
CONTAINER_STOP = unary("container_stop", {"ref": str, "timeout": float | None}, ContainerInfo)
CONTAINER_KILL = unary("container_kill", {"ref": str, "signal": str}, ContainerInfo)
CONTAINER_REMOVE = unary("container_remove", {"ref": str, "force": bool}, str)
CONTAINER_LIST = unary("container_list", {"all": bool}, list[ContainerInfo])
CONTAINER_INSPECT = unary("container_inspect", {"ref": str}, ContainerInfo)
CONTAINER_LOGS = stream(
    "container_logs",
    {"ref": str, "tail": int | None, "since": float | None, "follow": bool},
    LogEntry,
)
CONTAINER_EXEC = stream(
    "container_exec",
    {"ref": str, "args": list[str], "env": list[str], "workdir": str | None, "user": str | None},
    ExecChunk,
)
CONTAINER_STATS = unary("container_stats", {"ref": str}, ContainerStats)
CONTAINER_TOP = unary("container_top", {"ref": str}, list[ProcessInfo])
CONTAINER_DIFF = unary("container_diff", {"ref": str}, list[Change])
CONTAINER_COMMIT = unary("container_commit", {"ref": str, "repo_tag": str | None}, ImageInfo)

IMAGE_PULL = unary("image_pull", {"ref": str}, ImageInfo)
IMAGE_PUSH = unary("image_push", {"ref": str}, ImageInfo)
IMAGE_IMPORT = unary("image_import", {"source": str, "ref": str | None}, ImageInfo)
IMAGE_SAVE = unary("image_save", {"refs": list[str], "path": str}, type(None))
IMAGE_LOAD = unary("image_load", {"path": str}, list[ImageInfo])
IMAGE_TAG = unary("image_tag", {"source": str, "target": str}, ImageInfo)
IMAGE_LIST = unary("image_list", {}, list[ImageInfo])
IMAGE_REMOVE = unary("image_remove", {"ref": str, "force": bool}, list[str])

METHODS: dict[str, Rpc[Any]] = {
    rpc.name: rpc
    for rpc in (
        CONTAINER_RUN,
        CONTAINER_START,
        CONTAINER_STOP,
        CONTAINER_KILL,
        CONTAINER_REMOVE,
        CONTAINER_LIST,
        CONTAINER_INSPECT,
        CONTAINER_LOGS,
        CONTAINER_EXEC,
        CONTAINER_STATS,
        CONTAINER_TOP,
        CONTAINER_DIFF,
        CONTAINER_COMMIT,
        IMAGE_PULL,
        IMAGE_PUSH,
        IMAGE_IMPORT,
        IMAGE_SAVE,
        IMAGE_LOAD,
        IMAGE_TAG,
        IMAGE_LIST,
        IMAGE_REMOVE,
    )
}


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise InvalidArgument(
            f"invalid socket path {str(path)!r}: unix socket paths are limited to {MAX_SOCKET_PATH} bytes"
        )


# ---- server ------------------------------------------------------------------------------


def serve(impl: AgentService, socket_path: Path, max_workers: int = 16) -> grpc.Server:
    """Start serving `impl` on a unix socket; returns the started `grpc.Server`.

    Each unary call and each open stream (e.g. `logs -f`) holds one of `max_workers`
    threads for its duration.
    """
    socket_path = Path(socket_path).absolute()
    check_socket_path(socket_path)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(socket_path)

    handlers: dict[str, Any] = {}
    for rpc in METHODS.values():
        rpc.warm()  # first calls should be as fast as the rest
        if rpc.streaming:
            handlers[rpc.name] = grpc.unary_stream_rpc_method_handler(_stream_behavior(impl, rpc))
        else:
            handlers[rpc.name] = grpc.unary_unary_rpc_method_handler(_unary_behavior(impl, rpc))

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="shoal-api"),
        options=CHANNEL_OPTIONS,
    )
    # Both registrations, as protoc-generated code does: the registered form is the
    # fast path for clients that use `_registered_method=True`.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    server.add_insecure_port(f"unix:{socket_path}")
    # The socket is the agent's whole authority (it can start privileged containers):
    # owner and group only. Set before start(), so no client connects earlier.
    os.chmod(socket_path, 0o660)
    server.start()
    log.info("agent API listening on unix://%s", socket_path)
    return server


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead agent, but never steal a live agent's socket."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise Conflict(f"cannot listen on {path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
    else:
        raise Conflict(f"cannot listen on {path}: another agent is already serving it")
    finally:
        probe.close()
    path.unlink(missing_ok=True)


def _abort(context: Any, rpc: Rpc[Any], exc: BaseException) -> NoReturn:
    """Turn an exception from the implementation into a gRPC status; never returns."""
    if isinstance(exc, ShoalError):
        cls = type(exc)
        context.set_trailing_metadata(
            (
                (MD_ERROR_CLASS, f"{cls.__module__}.{cls.__qualname__}"),
                (MD_EXIT_CODE, str(exc.exit_code)),
            )
        )
        code = getattr(grpc.StatusCode, cls.grpc_code, grpc.StatusCode.UNKNOWN)
        context.abort(code, one_line(str(exc)))
    # A bug, not a user error: the traceback stays in the agent's log.
    log.error("%s failed", rpc.name, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, one_line(f"{rpc.name}: {type(exc).__name__}: {exc}"))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def _unary_behavior(impl: AgentService, rpc: Rpc[Any]) -> Callable[[bytes, Any], bytes]:
    method = getattr(impl, rpc.name)

    def behavior(request: bytes, context: Any) -> bytes:
        try:
            return rpc.encode_result(method(**rpc.decode_request(request)))
        except Exception as exc:
            _abort(context, rpc, exc)

    return behavior


_END = object()
_POLL = 0.25  # seconds between checks that the client is still there


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _stream_behavior(impl: AgentService, rpc: Rpc[Any]) -> Callable[[bytes, Any], Iterator[bytes]]:
    method = getattr(impl, rpc.name)

    def behavior(request: bytes, context: Any) -> Iterator[bytes]:
        try:
            items = method(**rpc.decode_request(request))
        except Exception as exc:
            _abort(context, rpc, exc)
        # The implementation's iterator may block for a long time (`logs -f` on a quiet
        # container), so it runs on its own thread: this gRPC worker can notice the
        # client leaving and return at once, and the producer closes the iterator (which
        # lets a generator clean up, e.g. kill an exec) as soon as it yields again.
        out: queue.Queue[object] = queue.Queue(maxsize=64)
        stop = threading.Event()
        context.add_callback(stop.set)  # runs when the RPC ends for any reason
        threading.Thread(
            target=_produce,
            args=(items, rpc, out, stop),
            name=f"shoal-api-{rpc.name}",
            daemon=True,
        ).start()
        try:
            while True:
                try:
                    msg = out.get(timeout=_POLL)
                except queue.Empty:
                    if stop.is_set() or not context.is_active():
                        return
                    continue
                if msg is _END:
                    return
                if isinstance(msg, _Failed):
                    _abort(context, rpc, msg.exc)
                yield cast(bytes, msg)
        finally:
            stop.set()

    return behavior


def _produce(items: Iterable[Any], rpc: Rpc[Any], out: queue.Queue[object], stop: threading.Event) -> None:
    def put(msg: object) -> bool:
        # Bounded queue = backpressure on a slow client; give up once the call is over.
        while not stop.is_set():
            try:
                out.put(msg, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    iterator: Iterator[Any] = iter(())
    try:
        iterator = iter(items)
        for item in iterator:
            if stop.is_set() or not put(rpc.encode_result(item)):
                return
        put(_END)
    except Exception as exc:
        put(_Failed(exc))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing the %s stream failed", rpc.name)
