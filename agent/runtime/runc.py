"""A thin driver for the runc CLI: one subprocess per call, errors mapped to Unavailable."""

from __future__ import annotations

import builtins
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from agent.errors import Unavailable

_GONE = ("container does not exist", "container not running", "process already finished")
TIMEOUT = 30.0


def runc_error(stderr: bytes | str) -> str:
    """runc (with --log-format json) logs {"level","msg"} lines: keep the last error's msg."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    msg = ""
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                msg = line.strip()
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            msg = str(entry.get("msg", ""))
    return " ".join(msg.split()) or "failed with no message"


class Runc:
    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), "--log-format", "json", *args]

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                self.command(*args), capture_output=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT
            )
        except FileNotFoundError:
            raise Unavailable(f"runc: binary {self.binary!r} not found") from None
        except subprocess.TimeoutExpired:
            raise Unavailable(f"runc: {args[0]} did not finish within {TIMEOUT:.0f}s") from None

    def _check(self, *args: str) -> bytes:
        proc = self._run(*args)
        if proc.returncode != 0:
            raise Unavailable(f"runc {args[0]}: {runc_error(proc.stderr)}")
        return proc.stdout

    def state(self, container_id: str) -> dict[str, Any] | None:
        """runc's state (status: created|running|paused|stopped), or None when unknown."""
        proc = self._run("state", container_id)
        if proc.returncode != 0:
            if "does not exist" in runc_error(proc.stderr):
                return None
            raise Unavailable(f"runc state: {runc_error(proc.stderr)}")
        state: dict[str, Any] = json.loads(proc.stdout)
        return state

    def list(self) -> list[dict[str, Any]]:
        out = json.loads(self._check("list", "--format", "json") or b"null")
        return list(out or [])  # runc prints `null` when there are none

    def kill(self, container_id: str, signal: int | str, all: bool = False) -> bool:
        """Signal the container's init (or every process). False when it is not running."""
        args = ["kill", *(["--all"] if all else []), container_id, str(signal)]
        proc = self._run(*args)
        if proc.returncode == 0:
            return True
        msg = runc_error(proc.stderr)
        if any(g in msg for g in _GONE):
            return False
        raise Unavailable(f"runc kill: {msg}")

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove the container's runc state and cgroup (force: killing it first).
        Idempotent: a container runc does not know is not an error."""
        proc = self._run("delete", *(["--force"] if force else []), container_id)
        if proc.returncode != 0:
            msg = runc_error(proc.stderr)
            if "does not exist" not in msg:
                raise Unavailable(f"runc delete: {msg}")

    def ps(self, container_id: str) -> builtins.list[int]:
        """Host pids of the container's processes."""
        return [int(p) for p in json.loads(self._check("ps", "--format", "json", container_id) or b"[]")]

    def exec_popen(
        self,
        container_id: str,
        args: Sequence[str],
        env: Mapping[str, str] | Sequence[str] = (),
        cwd: str | None = None,
        user: str | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
        pid_file: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `args` in the running container (no tty). The exit code of `runc exec` is the
        command's; runc's own failures exit 255 with its message on stderr. `pid_file`: where runc
        writes the process's host pid (killing `runc exec` itself does not kill the process)."""
        if not args:
            raise Unavailable("runc exec: a command is required")
        items = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env)
        cmd = ["exec"]
        for item in items:
            cmd += ["--env", item]
        if cwd:
            cmd += ["--cwd", cwd]
        if user:
            cmd += ["--user", user]
        if pid_file is not None:
            cmd += ["--pid-file", str(pid_file)]
        # No "--": runc stops parsing its flags at the container id and would run "--".
        cmd += [container_id, *args]
        try:
            return subprocess.Popen(self.command(*cmd), stdin=stdin, stdout=stdout, stderr=stderr)
        except FileNotFoundError:
            raise Unavailable(f"runc: binary {self.binary!r} not found") from None
