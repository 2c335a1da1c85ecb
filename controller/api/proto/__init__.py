"""The controller API's wire contract: shoal.proto and its generated messages (`make proto`).

Also what both ends share about the service itself, so the client needs no server imports.
"""

from __future__ import annotations

from typing import Any

SERVICE = "shoal.v1.Control"
MAX_MESSAGE = 64 * 1024 * 1024  # a `service ps` of a large cluster can pass gRPC's 4 MiB default
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
# Trailing metadata on a ShoalError's status (as in the agent's API): its class and exit code.
# The client reads its presence as "the controller raised this", not the transport.
MD_ERROR_CLASS = "shoal-error-class"
MD_EXIT_CODE = "shoal-exit-code"
# Initial metadata of an Events stream, sent once the server's watch is in place.
MD_WATCHING = "shoal-watching"


def path(method: str) -> str:
    """The gRPC method path, e.g. `/shoal.v1.Control/ListNodes`."""
    return f"/{SERVICE}/{method}"
