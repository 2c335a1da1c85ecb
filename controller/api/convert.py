"""pydantic model <-> protobuf message, generically through their shared JSON shape.

shoal.proto mirrors the models field for field, so one pair of functions covers every type:
JSON in via `ParseDict`, JSON out via `MessageToDict` (int64 arrive as strings; pydantic's lax
mode takes them). Fields without presence (plain scalars, lists, maps) are always printed, so a
0 the user sent is checked as 0; `optional` and message fields are printed only when set, so an
unset one takes the model's default.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import BaseModel

from agent.errors import InvalidArgument
from controller.api.validation import parse_model

M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", bound=Message)


def to_message(model: BaseModel, message: P) -> P:
    """Fill `message` (a fresh message of the mirrored type) from `model`; returns it."""
    try:
        return json_format.ParseDict(model.model_dump(mode="json"), message)
    except json_format.ParseError as exc:
        # e.g. a number too big for int64: the model allows it, the wire cannot carry it.
        raise InvalidArgument(f"invalid {type(model).__name__}: {' '.join(str(exc).split())}") from None


def to_dict(message: Message) -> dict[str, object]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def from_message(kind: type[M], message: Message, prefix: str = "") -> M:
    """The model `kind` from its mirrored message; InvalidArgument naming the field if it is not one.
    `prefix` names where the message sits in the request, for the error message."""
    return parse_model(kind, to_dict(message), prefix)
