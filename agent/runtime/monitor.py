"""Start a container through its shim (shim.py) and read what the shim records.

The shim is a separate stdlib-only process so containers survive agent restarts; the
agent keeps only the shim's pid (watch it with a pidfd) and the exit file path.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.errors import NotFound, Unavailable

SHIM_PATH = Path(__file__).with_name("shim.py")
READY_TIMEOUT = 30.0

# Popen objects of shims we started: holding them keeps subprocess from reaping the shim
# behind our back (it reaps dropped Popen objects on the next Popen call).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ShimConfig:
    id: str
    bundle: Path
    """Directory holding config.json."""
    runc: str
    runc_root: Path
    log_path: Path
    log_max_size: int
    log_max_files: int
    exit_file: Path
    memory_cgroup: str
    """The container's v1 memory cgroup directory (for the OOM counter), or ""."""
    pid_file: Path

    def to_json(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ShimStarted:
    shim_pid: int
    container_pid: int


@dataclass(frozen=True)
class ExitRecord:
    exit_code: int
    oom_killed: bool
    started_at: str
    finished_at: str
    error: str


def _read_ready(fd: int, deadline: float) -> bytes:
    """Read up to the first newline or EOF (the shim closes its end after one line)."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def _shim_log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


@dataclass(frozen=True)
class _Spawned:
    proc: subprocess.Popen[bytes]
    ready_r: int
    """Read end of the readiness pipe."""
    cmd_w: int | None
    """Write end of a warm shim's stdin, where its config path is sent."""


def _spawn(python: str, cfg_arg: str, stderr_path: Path, warm: bool) -> _Spawned:
    r, w = os.pipe()
    cmd_r, cmd_w = os.pipe() if warm else (None, None)
    try:
        with stderr_path.open("ab") as err:
            proc = subprocess.Popen(
                [python, "-I", "-S", str(SHIM_PATH), cfg_arg, str(w)],
                stdin=cmd_r if cmd_r is not None else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                pass_fds=(w,),
            )
    except OSError as e:
        for fd in (r, cmd_w):
            if fd is not None:
                os.close(fd)
        raise Unavailable(f"shim: cannot start {python}: {e.strerror}") from None
    finally:
        os.close(w)
        if cmd_r is not None:
            os.close(cmd_r)
    if cmd_w is not None:
        os.set_inheritable(cmd_w, False)
    return _Spawned(proc, r, cmd_w)


class ShimPool:
    """Shims started ahead of time, waiting for a container.

    A fresh shim costs an interpreter start and its imports (≈ 20-30 ms here), which would
    otherwise sit on every container start. Idle shims exit when the agent goes away
    (their stdin reaches EOF), so the pool never outlives its agent.
    """

    def __init__(self, log_path: Path, size: int = 2, python: str = sys.executable) -> None:
        self._log_path = log_path
        self._size = size
        self._python = python
        self._idle: list[_Spawned] = []
        self._lock = threading.Lock()
        self._closed = False
        self._refill()

    def take(self) -> _Spawned | None:
        """A warm shim, or None when none is ready; a replacement starts in the background."""
        with self._lock:
            while self._idle:
                spawned = self._idle.pop(0)
                if spawned.proc.poll() is None:
                    break
                _close(spawned)
            else:
                spawned = None
        threading.Thread(target=self._refill, name="shim-pool", daemon=True).start()
        return spawned

    def _refill(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._idle) >= self._size:
                    return
            spawned = _spawn(self._python, "-", self._log_path, warm=True)
            with self._lock:
                self._idle.append(spawned)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for spawned in idle:
            _close(spawned)  # EOF on its stdin: the idle shim exits
            spawned.proc.wait()


def _close(spawned: _Spawned) -> None:
    for fd in (spawned.ready_r, spawned.cmd_w):
        if fd is not None:
            os.close(fd)


def start_shim(
    cfg: ShimConfig, container_dir: Path, python: str = sys.executable, pool: ShimPool | None = None
) -> ShimStarted:
    """Write shim.json, hand it to a warm shim (or start one), wait until runc started the container."""
    cfg_path = container_dir / "shim.json"
    tmp = cfg_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg.to_json()))
    tmp.replace(cfg_path)
    shim_log = container_dir / "shim.log"  # the shim's own crashes; normally empty
    spawned = pool.take() if pool else None
    if spawned is not None and spawned.cmd_w is not None:
        os.write(spawned.cmd_w, f"{cfg_path}\n".encode())
        os.close(spawned.cmd_w)
    else:
        spawned = _spawn(python, str(cfg_path), shim_log, warm=False)
    proc, r = spawned.proc, spawned.ready_r
    try:
        line = _read_ready(r, time.monotonic() + READY_TIMEOUT)
    except TimeoutError:
        proc.kill()
        proc.wait()
        raise Unavailable(f"runc: container {cfg.id} did not start within {READY_TIMEOUT:.0f}s") from None
    finally:
        os.close(r)
    try:
        msg = json.loads(line)
    except ValueError:
        proc.wait()
        detail = _shim_log_tail(shim_log) or f"exited with {proc.returncode}"
        raise Unavailable(f"shim: {detail}") from None
    if "error" in msg:
        proc.wait()
        raise Unavailable(f"runc: {msg['error']}")
    _children[proc.pid] = proc
    return ShimStarted(shim_pid=proc.pid, container_pid=int(msg["pid"]))


def reap_shim(pid: int) -> int | None:
    """Collect an exited shim started by this process (so it leaves no zombie).

    Returns the shim's exit status, or None while it runs or if it is not our child
    (an agent restarted since: init reaps it then).
    """
    proc = _children.get(pid)
    if proc is None or proc.poll() is None:
        return None
    del _children[pid]
    return proc.returncode


def pidfd_open(pid: int) -> int:
    """A pidfd that becomes readable when `pid` exits (poll it with select/asyncio)."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise NotFound(f"shim pid {pid} not found: it has exited") from None


def read_exit(exit_file: Path) -> ExitRecord | None:
    """The shim's exit record, or None while the container runs (or if the shim died)."""
    try:
        data = json.loads(exit_file.read_text())
        return ExitRecord(
            exit_code=int(data["exit_code"]),
            oom_killed=bool(data["oom_killed"]),
            started_at=str(data.get("started_at", "")),
            finished_at=str(data.get("finished_at", "")),
            error=str(data.get("error", "")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Unavailable(f"exit file {exit_file}: unreadable: {e}") from None


def process_start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks since boot): with the pid it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; split after the command name, which may itself contain spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_same_process(pid: int, start_ticks: int) -> bool:
    """True while the process `pid` that started at `start_ticks` still exists (pid reuse safe)."""
    return pid > 0 and start_ticks > 0 and process_start_ticks(pid) == start_ticks
