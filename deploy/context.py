"""The client context: where the cluster commands find the controller (kubectl/docker style).

JSON at `$SHOAL_CONTEXT` if set, else `~/.shoal/context.json`:
`{"controller": "127.0.0.1:PORT", "etcd": "127.0.0.1:PORT", "registry": "127.0.0.1:PORT", "lab": DIR}`.
`shoal lab up` writes it; `--controller HOST:PORT` or `SHOAL_CONTROLLER` override it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.errors import invalid

CONTEXT_ENV = "SHOAL_CONTEXT"
CONTROLLER_ENV = "SHOAL_CONTROLLER"
DEFAULT_CONTROLLER = "127.0.0.1:4240"
"""`shoal controller`'s default --listen."""


@dataclass(frozen=True)
class Context:
    controller: str
    etcd: str = ""
    registry: str = ""
    lab: str = ""


def context_path() -> Path:
    configured = os.environ.get(CONTEXT_ENV)
    return Path(configured) if configured else Path.home() / ".shoal" / "context.json"


def load_context() -> Context | None:
    """The saved context; None when there is none. A damaged file is an error naming it."""
    path = context_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("controller"), str):
            raise ValueError("no controller")
        return Context(**{k: str(data.get(k, "")) for k in ("controller", "etcd", "registry", "lab")})
    except (ValueError, TypeError):
        raise invalid(
            "context", str(path), 'expected JSON like {"controller": "127.0.0.1:4240", ...}'
        ) from None


def save_context(ctx: Context) -> None:
    """Write atomically (a reader never sees half a file), readable by its owner only."""
    path = context_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(ctx), indent=2) + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def remove_context() -> None:
    context_path().unlink(missing_ok=True)


def controller_target(flag: str | None) -> str:
    """The controller to talk to: the flag, then SHOAL_CONTROLLER, then the context, then the default."""
    if flag:
        return flag
    env = os.environ.get(CONTROLLER_ENV)
    if env:
        return env
    ctx = load_context()
    return ctx.controller if ctx is not None else DEFAULT_CONTROLLER
