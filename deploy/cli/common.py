"""What every CLI command shares: the agent connection, error reporting and input helpers.

Startup stays light: grpc, pydantic and `agent.models` are imported only when a command
needs them, so usage errors and `--help` do not pay for them.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

from agent.errors import InvalidArgument, ShoalError, invalid

if TYPE_CHECKING:
    from agent.client import AgentClient

DEFAULT_HOST = "unix:///run/shoal/agent.sock"
HOST_ENV = "SHOAL_AGENT_HOST"
DEBUG_ENV = "SHOAL_DEBUG"
"""Set to 1 to get a traceback for unexpected errors instead of the one-line report."""

MetricsAddressOpt = Annotated[
    str,
    typer.Option(
        "--metrics-address",
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free port; "
        "default: no metrics listener).",
    ),
]
"""`--metrics-address` of every daemon (`shoal controller|agent|netplugin`)."""

_HOST_KEY = "shoal.host"
_CLIENT_KEY = "shoal.client"

T = TypeVar("T")


# ---- errors ------------------------------------------------------------------------------


def report(err: ShoalError) -> None:
    """The one shape of user-facing failure: a single line on stderr."""
    message = " ".join(str(err).split()) or type(err).__name__
    typer.echo(f"Error: {message}", err=True)


def fail(err: ShoalError) -> NoReturn:
    report(err)
    raise typer.Exit(err.exit_code)


def _from_validation_error(exc: Exception) -> InvalidArgument:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        return InvalidArgument(f"invalid {where}: {first.get('msg', exc)}")
    return InvalidArgument(str(exc))


class ShoalGroup(TyperGroup):
    """The root command: turns every error raised below it into "Error: ..." and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ShoalError as err:
            fail(err)
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt, EOFError):
            raise  # click's own handling: exit codes, usage errors (2), Ctrl-C (130)
        except BrokenPipeError:
            raise  # typer exits quietly when stdout is closed (`shoal ps | head -1`)
        except Exception as exc:
            if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
                fail(_from_validation_error(exc))
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            one_line = " ".join(f"{type(exc).__name__}: {exc}".split())
            typer.echo(f"Error: unexpected failure: {one_line} (set {DEBUG_ENV}=1 for details)", err=True)
            raise typer.Exit(1) from None


def each(refs: Iterable[str], action: Callable[[str], None]) -> None:
    """Apply `action` to every ref like docker: report each failure, go on, then exit non-zero."""
    first: ShoalError | None = None
    for ref in refs:
        try:
            action(ref)
        except ShoalError as err:
            report(err)
            first = first or err
    if first is not None:
        raise typer.Exit(first.exit_code)


# ---- the agent connection ----------------------------------------------------------------


def set_host(ctx: typer.Context, host: str) -> None:
    ctx.meta[_HOST_KEY] = host


def socket_from_host(host: str) -> Path:
    """`unix:///run/shoal/agent.sock`, `unix:/path` or a plain absolute path."""
    path = host
    if host.startswith("unix://"):
        path = host[len("unix://") :]
    elif host.startswith("unix:"):
        path = host[len("unix:") :]
    elif "://" in host:
        raise invalid("--host", host, "only unix:// sockets are supported")
    if not path.startswith("/"):
        raise invalid("--host", host, "expected unix:///absolute/path/to/agent.sock")
    return Path(path)


def client(ctx: typer.Context) -> AgentClient:
    """The process's one client (created on first use, so bad flags never touch grpc)."""
    cached: AgentClient | None = ctx.meta.get(_CLIENT_KEY)
    if cached is None:
        # gRPC's C core logs connection failures to stderr itself; the CLI reports them.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        from agent.client import AgentClient

        cached = ctx.meta[_CLIENT_KEY] = AgentClient(socket_from_host(ctx.meta.get(_HOST_KEY, DEFAULT_HOST)))
        ctx.call_on_close(cached.close)
    return cached


# ---- input helpers -----------------------------------------------------------------------


def absolute(path: str) -> str:
    """The agent shares this machine but not our working directory."""
    return os.path.abspath(os.path.expanduser(path))


_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: a Go duration (`10m`, `1h30m`), an RFC 3339 time or a unix timestamp."""
    text = text.strip()
    if _DURATION_RE.match(text):
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART_RE.findall(text))
        return (time.time() if now is None else now) - seconds
    if re.match(r"^\d+(\.\d+)?$", text):
        return float(text)
    parsed = parse_time(text)
    if parsed is None:
        raise invalid("--since", text, "expected a duration like 10m, an RFC 3339 time or a unix timestamp")
    return parsed.timestamp()


def parse_time(text: str) -> datetime | None:
    """RFC 3339 as the agent writes it (nanoseconds, Z); naive times are local, as in docker."""
    if not text:
        return None
    # Python's parser stops at microseconds: drop the extra digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.astimezone()


def parse_tail(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise invalid("--tail", text, "expected a number of lines or all")
    return int(text)


def check_workdir(field: str, workdir: str | None) -> None:
    if workdir is not None and not workdir.startswith("/"):
        raise invalid(field, workdir, "the working directory must be an absolute path")


def write(stream: str, text: str) -> None:
    """Write container output as it comes: flushed, so `logs -f | grep` sees lines at once."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()
