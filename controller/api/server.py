"""The controller's gRPC API: shoal.v1.Control over `Control`, on TCP or a unix socket.

Typed without generated service stubs (`_pb2_grpc.py` is untyped): each method is one row of
`_methods`, registered as a generic handler with its messages' own (de)serialisers, so the
wire is plain protobuf that any gRPC client can speak. Errors map as in the agent's API: a
ShoalError becomes its gRPC status with its one-line message (plus trailing metadata naming
its class, which tells the client the error came from us and not from the transport); any
other exception is a bug: INTERNAL with one line, the traceback only in the server's log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import Message

from agent.api import one_line
from agent.errors import ShoalError, Unavailable
from controller.api.control import Control
from controller.api.convert import from_message, to_message
from controller.api.proto import CHANNEL_OPTIONS, MD_ERROR_CLASS, MD_EXIT_CODE, MD_WATCHING, SERVICE
from controller.api.proto import shoal_pb2 as pb
from controller.api.types import ServiceSpec
from controller.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class ApiServer:
    server: Any  # grpc.Server
    address: str
    """Where clients connect: `host:port` with the port actually bound, or `unix:/path`."""

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; calls still running after `grace` seconds are cancelled (event streams too)."""
        self.server.stop(grace).wait()


def serve(store: Store, address: str, max_workers: int = 16, *, control: Control | None = None) -> ApiServer:
    """Serve the API for `store` on `address` (`host:port`, port 0 picks one; or `unix:/path`).

    Each call holds one of `max_workers` threads while it runs; an event stream holds one for
    as long as its client follows it. `control` replaces the default `Control(store)` (tests
    pass one with a fixed clock).
    """
    handlers = _Handlers(control or Control(store)).table()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="shoal-control-api"),
        # Without SO_REUSEPORT off, a second server on a taken port "binds" and shares it.
        options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)],
    )
    # Both registrations, as protoc-generated code does: the registered form is the fast path
    # for clients that create their calls with `_registered_method=True`.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise Unavailable(f"cannot listen on {address}: {one_line(str(exc))}") from None
    if not port:
        raise Unavailable(f"cannot listen on {address}: the address is invalid or in use")
    server.start()
    bound = address if address.startswith("unix:") else f"{address.rpartition(':')[0]}:{port}"
    log.info("controller API listening on %s", bound)
    return ApiServer(server, bound)


# ---- errors ----------------------------------------------------------------------------------


def _abort(context: Any, method: str, exc: BaseException) -> NoReturn:
    if isinstance(exc, ShoalError):
        cls = type(exc)
        context.set_trailing_metadata(
            ((MD_ERROR_CLASS, f"{cls.__module__}.{cls.__qualname__}"), (MD_EXIT_CODE, str(exc.exit_code)))
        )
        code = getattr(grpc.StatusCode, cls.grpc_code, grpc.StatusCode.UNKNOWN)
        context.abort(code, one_line(str(exc)))
    log.error("%s failed", method, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, one_line(f"{method}: {type(exc).__name__}: {exc}"))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _unary(method: str, fn: Callable[[Any], Message], request: type[Message], response: type[Message]) -> Any:
    def behavior(req: Message, context: Any) -> Message:
        try:
            return fn(req)
        except Exception as exc:
            _abort(context, method, exc)

    return grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=request.FromString, response_serializer=response.SerializeToString
    )


# ---- the methods -----------------------------------------------------------------------------


class _Handlers:
    """Message in -> Control call -> message out, one method per RPC."""

    def __init__(self, control: Control) -> None:
        self.control = control

    def table(self) -> dict[str, Any]:
        rows: list[tuple[str, Callable[[Any], Message], type[Message], type[Message]]] = [
            ("CreateService", self.create_service, pb.CreateServiceRequest, pb.Service),
            ("UpdateService", self.update_service, pb.UpdateServiceRequest, pb.Service),
            ("RemoveService", self.remove_service, pb.RemoveServiceRequest, pb.RemoveServiceResponse),
            ("ListServices", self.list_services, pb.ListServicesRequest, pb.ListServicesResponse),
            ("InspectService", self.inspect_service, pb.InspectServiceRequest, pb.Service),
            ("ListTasks", self.list_tasks, pb.ListTasksRequest, pb.ListTasksResponse),
            ("ListNodes", self.list_nodes, pb.ListNodesRequest, pb.ListNodesResponse),
            ("InspectNode", self.inspect_node, pb.InspectNodeRequest, pb.NodeInfo),
            ("UpdateNode", self.update_node, pb.UpdateNodeRequest, pb.NodeInfo),
            ("RollbackService", self.rollback_service, pb.RollbackServiceRequest, pb.Service),
            ("RemoveNode", self.remove_node, pb.RemoveNodeRequest, pb.RemoveNodeResponse),
        ]
        table = {name: _unary(name, fn, req, resp) for name, fn, req, resp in rows}
        table["Events"] = grpc.unary_stream_rpc_method_handler(
            self.events,
            request_deserializer=pb.EventsRequest.FromString,
            response_serializer=pb.ClusterEvent.SerializeToString,
        )
        return table

    def create_service(self, req: pb.CreateServiceRequest) -> pb.Service:
        spec = from_message(ServiceSpec, req.spec)
        return to_message(self.control.create_service(spec), pb.Service())

    def update_service(self, req: pb.UpdateServiceRequest) -> pb.Service:
        spec = from_message(ServiceSpec, req.spec)
        version = req.version if req.HasField("version") else None
        return to_message(self.control.update_service(req.name, spec, version), pb.Service())

    def rollback_service(self, req: pb.RollbackServiceRequest) -> pb.Service:
        return to_message(self.control.rollback_service(req.name), pb.Service())

    def remove_service(self, req: pb.RemoveServiceRequest) -> pb.RemoveServiceResponse:
        self.control.remove_service(req.name)
        return pb.RemoveServiceResponse()

    def list_services(self, req: pb.ListServicesRequest) -> pb.ListServicesResponse:
        summaries = self.control.list_services()
        return pb.ListServicesResponse(services=[to_message(s, pb.ServiceSummary()) for s in summaries])

    def inspect_service(self, req: pb.InspectServiceRequest) -> pb.Service:
        return to_message(self.control.inspect_service(req.name), pb.Service())

    def list_tasks(self, req: pb.ListTasksRequest) -> pb.ListTasksResponse:
        service = req.service if req.HasField("service") else None
        node = req.node if req.HasField("node") else None
        tasks = self.control.list_tasks(service, node)
        return pb.ListTasksResponse(tasks=[to_message(t, pb.Task()) for t in tasks])

    def list_nodes(self, req: pb.ListNodesRequest) -> pb.ListNodesResponse:
        return pb.ListNodesResponse(nodes=[to_message(n, pb.NodeInfo()) for n in self.control.list_nodes()])

    def inspect_node(self, req: pb.InspectNodeRequest) -> pb.NodeInfo:
        return to_message(self.control.inspect_node(req.ref), pb.NodeInfo())

    def update_node(self, req: pb.UpdateNodeRequest) -> pb.NodeInfo:
        availability = req.availability if req.HasField("availability") else None
        node = self.control.update_node(req.ref, availability, dict(req.label_add), list(req.label_rm))
        return to_message(node, pb.NodeInfo())

    def remove_node(self, req: pb.RemoveNodeRequest) -> pb.RemoveNodeResponse:
        self.control.remove_node(req.ref, req.force)
        return pb.RemoveNodeResponse()

    def events(self, req: pb.EventsRequest, context: Any) -> Iterator[pb.ClusterEvent]:
        try:
            stream = self.control.events(req.since_revision)
        except Exception as exc:
            _abort(context, "Events", exc)
        # Runs when the call ends for any reason (client gone, server stopping): closing the
        # watch wakes this thread out of its blocking wait, so it returns at once.
        context.add_callback(stream.close)
        # Tells the client the watch is in place: "from now on" means from when events() returned.
        context.send_initial_metadata(((MD_WATCHING, "1"),))
        try:
            for event in stream:
                yield to_message(event, pb.ClusterEvent())
        except Exception as exc:
            _abort(context, "Events", exc)
        finally:
            stream.close()
