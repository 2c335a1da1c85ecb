"""Detached daemons tracked by pid and /proc start ticks: they outlive the CLI that started them,
and are only ever signalled while that pid still names the same process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from agent.runtime.monitor import is_same_process, process_start_ticks
from deploy.lab.state import Proc


def spawn(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # A new session: Ctrl-C or a closed terminal of `shoal lab up` must not reach the lab.
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    ticks = process_start_ticks(child.pid) or 0
    # The Popen object is dropped on purpose; _reap collects the exit status if we outlive it.
    return Proc(pid=child.pid, start_ticks=ticks, argv=list(argv), log=str(log))


def _reap(pid: int) -> None:
    """Collect our own child's exit status, if it is ours (else its zombie stays 'alive')."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _zombie(pid: int) -> bool:
    """Dead but not yet reaped: our CLI exited, so init reaps it, whenever it gets to it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def alive(proc: Proc | None) -> bool:
    if proc is None:
        return False
    _reap(proc.pid)
    return is_same_process(proc.pid, proc.start_ticks) and not _zombie(proc.pid)


def kill9(proc: Proc | None) -> None:
    if alive(proc):
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        _wait_gone(proc, 10)


def stop(proc: Proc | None, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone."""
    if not alive(proc):
        return
    assert proc is not None
    os.kill(proc.pid, signal.SIGTERM)
    if not _wait_gone(proc, grace):
        os.kill(proc.pid, signal.SIGKILL)
        _wait_gone(proc, 10)


def _wait_gone(proc: Proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(proc):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def log_tail(proc: Proc | None, lines: int = 20) -> str:
    if proc is None:
        return ""
    try:
        return "\n".join(Path(proc.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
