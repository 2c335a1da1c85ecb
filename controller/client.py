"""A typed client for the controller's API (shoal.v1.Control): pydantic models in and out.

The same methods as `controller.api.control.Control`, so code can talk to a controller over
gRPC or to a `Control` in-process alike. Errors come back as the ShoalError classes the server
raised (by gRPC status); a controller that cannot be reached is `Unavailable` naming the target.
Keep one client per process: its channel is reused by every call.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from agent.errors import Conflict, IntegrityError, InvalidArgument, NotFound, ShoalError, Unavailable
from controller.api.convert import from_message, to_message
from controller.api.proto import CHANNEL_OPTIONS, MD_ERROR_CLASS, path
from controller.api.proto import shoal_pb2 as pb
from controller.api.types import NodeInfo, Service, ServiceSpec, Task
from controller.api.views import ClusterEvent, EventsCompacted, ServiceSummary

P = TypeVar("P", bound=Message)

_BY_CODE: dict[grpc.StatusCode, type[ShoalError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.OUT_OF_RANGE: EventsCompacted,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
}
# An http_proxy in the environment must not capture calls to a controller.
_OPTIONS: list[tuple[str, Any]] = [*CHANNEL_OPTIONS, ("grpc.enable_http_proxy", 0)]


class ControlClient:
    def __init__(self, target: str, timeout: float = 10.0) -> None:
        """target: `host:port` or `unix:/path`; timeout bounds each call (not event streams)."""
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target, options=_OPTIONS)
        self._calls: dict[str, Any] = {}
        self._streams: weakref.WeakSet[EventSubscription] = weakref.WeakSet()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the channel; open event streams end (their iteration stops)."""
        for stream in list(self._streams):
            stream.close()
        self._channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- services ------------------------------------------------------------------------

    def create_service(self, spec: ServiceSpec) -> Service:
        request = pb.CreateServiceRequest(spec=to_message(spec, pb.ServiceSpec()))
        return from_message(Service, self._unary("CreateService", request, pb.Service))

    def update_service(self, name: str, spec: ServiceSpec, version: int | None = None) -> Service:
        """With `version`, refused (Conflict) unless the service is still at that version."""
        request = pb.UpdateServiceRequest(name=name, spec=to_message(spec, pb.ServiceSpec()), version=version)
        return from_message(Service, self._unary("UpdateService", request, pb.Service))

    def rollback_service(self, name: str) -> Service:
        """Back to the spec before the last change (Conflict if there is none)."""
        request = pb.RollbackServiceRequest(name=name)
        return from_message(Service, self._unary("RollbackService", request, pb.Service))

    def remove_service(self, name: str) -> None:
        self._unary("RemoveService", pb.RemoveServiceRequest(name=name), pb.RemoveServiceResponse)

    def list_services(self) -> list[ServiceSummary]:
        response = self._unary("ListServices", pb.ListServicesRequest(), pb.ListServicesResponse)
        return [from_message(ServiceSummary, s) for s in response.services]

    def inspect_service(self, name: str) -> Service:
        return from_message(
            Service, self._unary("InspectService", pb.InspectServiceRequest(name=name), pb.Service)
        )

    # ---- tasks and nodes -----------------------------------------------------------------

    def list_tasks(self, service: str | None = None, node: str | None = None) -> list[Task]:
        request = pb.ListTasksRequest(service=service, node=node)
        return [from_message(Task, t) for t in self._unary("ListTasks", request, pb.ListTasksResponse).tasks]

    def list_nodes(self) -> list[NodeInfo]:
        response = self._unary("ListNodes", pb.ListNodesRequest(), pb.ListNodesResponse)
        return [from_message(NodeInfo, n) for n in response.nodes]

    def inspect_node(self, ref: str) -> NodeInfo:
        return from_message(NodeInfo, self._unary("InspectNode", pb.InspectNodeRequest(ref=ref), pb.NodeInfo))

    def update_node(
        self,
        ref: str,
        availability: str | None = None,
        label_add: Mapping[str, str] | None = None,
        label_rm: Sequence[str] | None = None,
    ) -> NodeInfo:
        request = pb.UpdateNodeRequest(
            ref=ref, availability=availability, label_add=dict(label_add or {}), label_rm=list(label_rm or [])
        )
        return from_message(NodeInfo, self._unary("UpdateNode", request, pb.NodeInfo))

    def remove_node(self, ref: str, force: bool = False) -> None:
        """Refused (Conflict) for a ready node unless `force`."""
        self._unary("RemoveNode", pb.RemoveNodeRequest(ref=ref, force=force), pb.RemoveNodeResponse)

    # ---- events --------------------------------------------------------------------------

    def events(self, since_revision: int = 0) -> EventSubscription:
        """Follow cluster events from store revision `since_revision` (0: from now on) until
        the returned iterator's `close()` (or this client's). EventsCompacted, from here or from
        the first next(), if that history is gone: list again, then follow from now."""
        make = self._callable("Events", pb.EventsRequest, pb.ClusterEvent, stream=True)
        call = make(pb.EventsRequest(since_revision=since_revision))
        # Wait until the server's watch is in place (it sends its initial metadata then), so no
        # change made after this returns is missed; a refused or failed call is raised here.
        call.initial_metadata()
        if call.done() and call.code() != grpc.StatusCode.OK:
            raise self.error("Events", call)
        stream = EventSubscription(self, call)
        self._streams.add(stream)
        return stream

    # ---- transport -----------------------------------------------------------------------

    def _callable(self, method: str, request: type[Message], response: type[Message], stream: bool) -> Any:
        with self._lock:
            call = self._calls.get(method)
            if call is None:
                make = self._channel.unary_stream if stream else self._channel.unary_unary
                call = self._calls[method] = make(
                    path(method),
                    request_serializer=request.SerializeToString,
                    response_deserializer=response.FromString,
                    _registered_method=True,
                )
            return call

    def _unary(self, method: str, request: Message, response: type[P]) -> P:
        call = self._callable(method, type(request), response, stream=False)
        try:
            result: P = call(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self.error(method, exc) from None
        return result

    def error(self, method: str, exc: grpc.RpcError) -> ShoalError:
        """The ShoalError for a failed call."""
        code = exc.code()
        details = " ".join(str(exc.details() or "").split())
        if any(key == MD_ERROR_CLASS for key, _ in exc.trailing_metadata() or ()):
            return _BY_CODE.get(code, ShoalError)(details or code.name.lower())
        # Not raised by the controller's handlers: the transport or the server around them.
        if code == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"controller at {self.target} is not reachable: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Unavailable(
                f"controller at {self.target} is not reachable: no answer within {self.timeout}s"
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return ShoalError(f"the controller at {self.target} does not support {method}: is it older?")
        if code == grpc.StatusCode.INTERNAL:
            return ShoalError(f"controller internal error: {details} (see the controller's log)")
        if code == grpc.StatusCode.CANCELLED:
            return ShoalError(f"{method} was cancelled")
        return _BY_CODE.get(code, ShoalError)(details or code.name.lower())


class EventSubscription:
    """An open event stream: iterate it on one thread, `close()` it from any thread."""

    def __init__(self, client: ControlClient, call: Any) -> None:
        self._client = client
        self._call = call
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[ClusterEvent]:
        return self

    def __next__(self) -> ClusterEvent:
        try:
            message = next(self._call)
        except grpc.RpcError as exc:
            if self._closed.is_set():
                raise StopIteration from None
            raise self._client.error("Events", exc) from None
        return from_message(ClusterEvent, message)

    def close(self) -> None:
        self._closed.set()
        self._call.cancel()

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
