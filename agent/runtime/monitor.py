"""Start a container through its shim (shim.py) and read what the shim records.

The shim is a separate stdlib-only process so containers survive agent restarts; the
agent keeps only the shim's pid and start time (watch it with a pidfd) and the exit file path.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.errors import Unavailable

SHIM_PATH = Path(__file__).with_name("shim.py")
READY_TIMEOUT = 30.0


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


class ShimZygote:
    """A warm `shim.py --zygote` that forks a monitor per container.

    A fresh monitor process costs an interpreter start and its imports (~25 ms of CPU here),
    which would sit on every container start and compete with runc for the CPU. The zygote
    exits when the agent goes away (EOF on its socket); the monitors it forked do not.
    """

    def __init__(self, log_path: Path, python: str = sys.executable) -> None:
        self._log_path = log_path
        self._python = python
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self._log_path.open("ab") as err:
            self._proc = subprocess.Popen(
                [self._python, "-I", "-S", str(SHIM_PATH), "--zygote", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
            )
        theirs.close()
        self._sock = ours
        return ours

    def request(self, cfg_path: Path, ready_w: int) -> None:
        """Ask for a monitor of `cfg_path` that reports on `ready_w`."""
        with self._lock:
            try:
                socket.send_fds(self._ensure(), [str(cfg_path).encode()], [ready_w])
            except OSError:  # the zygote died since the last request: one more try
                socket.send_fds(self._ensure(), [str(cfg_path).encode()], [ready_w])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # EOF: the zygote exits
            self._sock = None
        if self._proc is not None:
            self._proc.wait()
            self._proc = None


def start_shim(cfg: ShimConfig, container_dir: Path, zygote: ShimZygote) -> ShimStarted:
    """Write shim.json, have `zygote` hand it to a monitor and wait until runc started the container."""
    cfg_path = container_dir / "shim.json"
    tmp = cfg_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg.to_json()))
    tmp.replace(cfg_path)
    shim_log = container_dir / "shim.log"  # the shim's own crashes; normally empty
    r, w = os.pipe()
    try:
        zygote.request(cfg_path, w)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    try:
        line = _read_ready(r, time.monotonic() + READY_TIMEOUT)
    except TimeoutError:
        raise Unavailable(f"runc: container {cfg.id} did not start within {READY_TIMEOUT:.0f}s") from None
    finally:
        os.close(r)
    try:
        msg = json.loads(line)
    except ValueError:
        detail = _shim_log_tail(shim_log) or "the monitor exited before reporting"
        raise Unavailable(f"shim: {detail}") from None
    if "error" in msg:
        raise Unavailable(f"runc: {msg['error']}")
    return ShimStarted(shim_pid=int(msg["shim"]), container_pid=int(msg["pid"]))


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
